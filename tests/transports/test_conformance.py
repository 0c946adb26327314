"""One behaviour contract, checked for every built-in transport on asyncio and trio."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio
import anyio.abc
import pytest

from daffi.transports import Address, get_transport

from ._helpers import echo, leaves, receive_all, receive_exactly, serving

pytestmark = pytest.mark.anyio

TRANSPORTS = ["tcp", "unix", "memory"]


@pytest.fixture(params=TRANSPORTS)
def address(request: pytest.FixtureRequest, socket_dir: Path, memory_name: str) -> Address:
    """An address to listen on for the transport under test."""
    scheme = str(request.param)
    if scheme == "tcp":
        return Address(scheme="tcp", host="127.0.0.1", port=0)
    if scheme == "unix":
        return Address(scheme="unix", path=str(socket_dir / "daffi.sock"))
    return Address(scheme="memory", path=memory_name)


@pytest.fixture(params=TRANSPORTS)
def nowhere(request: pytest.FixtureRequest, socket_dir: Path, memory_name: str) -> Address:
    """An address of the transport under test that nothing listens on."""
    scheme = str(request.param)
    if scheme == "tcp":
        # A port that was free a moment ago: bound, then released.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return Address(scheme="tcp", host="127.0.0.1", port=port)
    if scheme == "unix":
        return Address(scheme="unix", path=str(socket_dir / "nobody.sock"))
    return Address(scheme="memory", path=memory_name)


async def test_echo_round_trip(address: Address) -> None:
    with anyio.fail_after(10):
        async with serving(address, echo) as listening:
            stream = await get_transport(address.scheme).connect(listening.address)
            async with stream:
                await stream.send(b"hello daffi")
                assert await receive_exactly(stream, 11) == b"hello daffi"
                await stream.send(b"again")
                assert await receive_exactly(stream, 5) == b"again"


async def test_large_payload_arrives_complete(address: Address) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    with anyio.fail_after(30):
        async with serving(address, echo) as listening:
            stream = await get_transport(address.scheme).connect(listening.address)
            async with stream, anyio.create_task_group() as tg:

                async def send_then_eof() -> None:
                    await stream.send(payload)
                    await stream.send_eof()

                tg.start_soon(send_then_eof)
                # The echo server closes after EOF, so this also checks half-close.
                assert await receive_all(stream) == payload


async def test_concurrent_connections_each_echo(address: Address) -> None:
    transport = get_transport(address.scheme)
    results: dict[int, bytes] = {}
    with anyio.fail_after(15):
        async with serving(address, echo) as listening:

            async def client(index: int) -> None:
                message = f"client {index} ".encode() * (index + 1)
                async with await transport.connect(listening.address) as stream:
                    await stream.send(message)
                    results[index] = await receive_exactly(stream, len(message))

            async with anyio.create_task_group() as tg:
                for index in range(20):
                    tg.start_soon(client, index)
    assert results == {i: f"client {i} ".encode() * (i + 1) for i in range(20)}


async def test_peer_close_ends_the_stream(address: Address) -> None:
    server_saw_eof = anyio.Event()

    async def close_after_greeting(stream: anyio.abc.ByteStream) -> None:
        await stream.send(b"bye")
        await stream.aclose()

    async def wait_for_eof(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            server_saw_eof.set()

    transport = get_transport(address.scheme)
    with anyio.fail_after(10):
        async with (
            serving(address, close_after_greeting) as listening,
            await transport.connect(listening.address) as stream,
        ):
            assert await receive_exactly(stream, 3) == b"bye"
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
        async with serving(address, wait_for_eof) as listening:
            stream = await transport.connect(listening.address)
            await stream.aclose()
            await server_saw_eof.wait()


async def test_closed_listener_stops_accepting(address: Address) -> None:
    transport = get_transport(address.scheme)
    with anyio.fail_after(10):
        listening = await transport.listen(address)
        await listening.aclose()
        await listening.aclose()  # closing twice is harmless
        if address.scheme == "unix":
            assert listening.address.path is not None
            assert not await anyio.Path(listening.address.path).exists()
        with pytest.raises(OSError):  # noqa: PT011 - the subclass differs per transport
            await transport.connect(listening.address)


async def test_closing_ends_serve_with_closed_resource_error(address: Address) -> None:
    """Like anyio's socket listeners, serve() raises ClosedResourceError on close."""
    transport = get_transport(address.scheme)
    with anyio.fail_after(10):
        listening = await transport.listen(address)
        stopped_with: list[BaseException] = []
        started = anyio.Event()

        async def run_serve() -> None:
            started.set()
            try:
                await listening.listener.serve(echo)
            except Exception as exc:
                stopped_with.extend(leaves(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_serve)
            await started.wait()
            # Prove serve() is accepting before closing it.
            async with await transport.connect(listening.address) as stream:
                await stream.send(b"ping")
                assert await receive_exactly(stream, 4) == b"ping"
            await listening.aclose()
    assert stopped_with
    assert all(isinstance(exc, anyio.ClosedResourceError) for exc in stopped_with)


async def test_connect_to_nothing_fails_promptly(nowhere: Address) -> None:
    with anyio.fail_after(5), pytest.raises(OSError, match="cannot connect to") as info:
        await get_transport(nowhere.scheme).connect(nowhere)
    assert str(nowhere) in str(info.value)


async def test_listening_address_round_trips_and_connects(address: Address) -> None:
    with anyio.fail_after(10):
        async with serving(address, echo) as listening:
            bound = listening.address
            assert bound.scheme == address.scheme
            if bound.scheme == "tcp":
                assert bound.port != 0
            parsed = Address.parse(str(bound))
            assert parsed == bound
            async with await get_transport(parsed.scheme).connect(parsed) as stream:
                await stream.send(b"round trip")
                assert await receive_exactly(stream, 10) == b"round trip"


async def test_listening_is_an_async_context_manager(address: Address) -> None:
    transport = get_transport(address.scheme)
    with anyio.fail_after(10):
        async with await transport.listen(address) as listening:
            bound = listening.address
        with pytest.raises(OSError):  # noqa: PT011 - the subclass differs per transport
            await transport.connect(bound)


async def test_wrong_scheme_is_rejected(address: Address) -> None:
    other = "memory" if address.scheme != "memory" else "tcp"
    with anyio.fail_after(5), pytest.raises(ValueError, match="handles"):
        await get_transport(other).listen(address)
