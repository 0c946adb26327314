"""A hostile or failing peer ends only its own connection; the controller keeps serving.

Issue 11's rows D1 (a frame nested deeper than msgspec decodes) and D2 (many peers whose
sockets break at once, while the controller writes to them). Each test runs a controller
on a Unix socket in a temp dir, a node offering ``echo`` and a client, on asyncio and trio,
attacks with raw sockets, then checks that the client's calls all still succeed.
"""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import anyio
import msgspec
import pytest

from daffi import Global
from daffi._frames import NESTING_LIMIT, decode_frame, encode_frame
from daffi._protocol import PROTOCOL_VERSION, Call, Error, Hello
from daffi.decorators import alias, fetcher
from daffi.exceptions import ProtocolError
from daffi.registry import CallbackRegistry

from ._raw import RawPeer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@alias("echo")
@fetcher
async def echo(x):
    pass


def deep_frame(depth: int) -> bytes:
    """A call whose payload is ``depth`` msgpack arrays, one inside the other (a frame of
    about ``depth`` bytes: the decoder recurses once per level to find the payload's end)."""
    payload = msgspec.Raw(b"\x91" * depth + b"\x90")
    return bytes(encode_frame(Call(1, "echo", payload, "deep", None, None)))


def test_a_frame_nested_too_deep_is_a_protocol_error_naming_the_peer() -> None:
    with pytest.raises(ProtocolError, match=r"'intruder' sent a frame nested deeper"):
        decode_frame(deep_frame(50 * NESTING_LIMIT), "'intruder'")


async def calls_succeed(client: Global, count: int = 20) -> None:
    with client.as_current():
        for i in range(count):
            assert await echo(i) == i


def raw_connect(sock_dir: str) -> socket.socket:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(Path(sock_dir) / "daffi.sock"))
    return raw


async def test_a_deeply_nested_frame_closes_only_its_connection(sock_dir: str) -> None:
    registry = CallbackRegistry()
    registry.add(lambda x: x, "echo")
    with anyio.fail_after(40):
        async with (
            Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir),
            Global("server", registry=registry, unix_sock_path=sock_dir),
            Global("client", registry=CallbackRegistry(), unix_sock_path=sock_dir) as client,
        ):
            await client.wait_function_async("echo", timeout=5)
            await calls_succeed(client)
            for before_handshake in (True, False):
                raw = await anyio.to_thread.run_sync(raw_connect, sock_dir)
                if not before_handshake:
                    hello = Hello(PROTOCOL_VERSION, "deep", ("msgpack",), ())
                    raw.sendall(bytes(encode_frame(hello)))
                raw.sendall(deep_frame(50 * NESTING_LIMIT))
                raw.settimeout(5)
                # The controller closes it: reading ends (after a Welcome, if it had one).
                while await anyio.to_thread.run_sync(raw.recv, 65536):
                    pass
                raw.close()
                await calls_succeed(client)


@pytest.mark.parametrize("round_", range(3))
async def test_many_peers_breaking_at_once_end_only_their_connections(
    sock_dir: str, round_: int
) -> None:
    registry = CallbackRegistry()
    registry.add(lambda x: x, "echo")
    left: set[str] = set()
    all_left = anyio.Event()

    async def on_node_disconnect(g: Global, name: str) -> None:
        if name.startswith("doomed"):
            left.add(name)
        if len(left) == 50:
            all_left.set()

    with anyio.fail_after(50):
        async with (
            Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir),
            Global("server", registry=registry, unix_sock_path=sock_dir),
            Global(
                "client",
                registry=CallbackRegistry(),
                unix_sock_path=sock_dir,
                on_node_disconnect=on_node_disconnect,
            ) as client,
        ):
            await client.wait_function_async("echo", timeout=5)
            peers = []
            for i in range(50):
                raw = await anyio.to_thread.run_sync(raw_connect, sock_dir)
                hello = Hello(PROTOCOL_VERSION, f"doomed-{i}", ("msgpack",), ())
                raw.sendall(bytes(encode_frame(hello)))
                peers.append(raw)
            await client.wait_process_async("doomed-49", timeout=10)
            # They stop reading, so the controller's next writes to them fail (EPIPE),
            # while their connections still look open to its readers...
            for raw in peers:
                raw.shutdown(socket.SHUT_RD)
            # ... and a node joining makes it write to all of them at once.
            async with Global("late", registry=CallbackRegistry(), unix_sock_path=sock_dir):
                await calls_succeed(client, 50)
                with anyio.fail_after(10):
                    await all_left.wait()
            assert left == {f"doomed-{i}" for i in range(50)}
            await calls_succeed(client)
            for raw in peers:
                raw.close()


async def test_a_frame_that_never_completes_closes_its_connection(sock_dir: str) -> None:
    """Issue 11, D6: every byte reset the idle timer, so a frame trickled forever kept its
    connection (and its buffer) open."""
    registry = CallbackRegistry()
    registry.add(lambda x: x, "echo")
    with anyio.fail_after(30):
        async with (
            Global(
                "ctrl",
                init_controller=True,
                init_node=False,
                unix_sock_path=sock_dir,
                frame_timeout=0.5,
            ),
            Global("server", registry=registry, unix_sock_path=sock_dir),
            Global("client", registry=CallbackRegistry(), unix_sock_path=sock_dir) as client,
        ):
            await client.wait_function_async("echo", timeout=5)
            raw = await anyio.to_thread.run_sync(raw_connect, sock_dir)
            raw.sendall(bytes(encode_frame(Hello(PROTOCOL_VERSION, "slow", ("msgpack",), ()))))
            await client.wait_process_async("slow", timeout=5)
            raw.setblocking(False)
            raw.sendall((1 << 20).to_bytes(4, "big") + b"\x00")  # 1 MiB announced
            started = anyio.current_time()
            closed = False
            while not closed:
                await anyio.sleep(0.05)
                try:
                    raw.send(b"\x00")  # a byte at a time: never silent, never complete
                except OSError:
                    closed = True  # the controller closed it
                await calls_succeed(client, 2)
            assert anyio.current_time() - started < 3
            raw.close()
            await calls_succeed(client)


def traced_mib() -> float:
    return tracemalloc.get_traced_memory()[0] / 2**20


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


async def test_memory_of_large_frames_goes_back_once_they_are_done(
    sock_dir: str, traced: None
) -> None:
    """Issue 11, D6: the controller kept the last frame of every connection until the next
    one arrived, and a closed connection's partial frame until the garbage collector found
    the connection's reference cycles (eight partial 60 MiB frames: +490 MB, kept)."""
    big = msgspec.Raw(msgspec.msgpack.encode(bytes(16 * 2**20)))
    with anyio.fail_after(40):
        async with Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir):
            before = traced_mib()
            # Whole frames: a 16 MiB call each to a callback nobody offers (refused at once),
            # from connections that then stay open and idle.
            peers = [await RawPeer.join(sock_dir, f"big-{i}") for i in range(8)]
            for i, peer in enumerate(peers):
                await peer.send(Call(1, "nobody", big, f"big-{i}"))
                assert (await peer.receive_until(Error)).id == 1
            assert traced_mib() - before < 20
            # Partial frames: 15 of an announced 16 MiB each, then the connections close.
            partial = [await RawPeer.join(sock_dir, f"partial-{i}") for i in range(8)]
            for peer in partial:
                await peer.stream.send((16 * 2**20).to_bytes(4, "big") + bytes(15 * 2**20))
            for _ in range(200):
                if traced_mib() - before > 100:
                    break  # the controller holds them
                await anyio.sleep(0.02)
            assert traced_mib() - before > 100
            for peer in partial:
                await peer.aclose()
            for _ in range(200):
                if traced_mib() - before < 20:
                    break
                await anyio.sleep(0.02)
            assert traced_mib() - before < 20
            for peer in peers:
                await peer.aclose()
