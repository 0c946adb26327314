"""A controller bounds what one process may register, refuses more and says why.

Issue 11, row D5: five 10 MB ``Register`` frames (500,000 callbacks) took the controller from
29 to 305 MB and every other node to about 445 MB, and slowed every call for 18 s. Now a
registration is checked (``max_callbacks``, ``max_registration_size``) before it is decoded
or sent to anyone; a refused one leaves the node's earlier offer in place.
"""

from __future__ import annotations

import logging

import anyio
import msgspec
import pytest

from daffi import Global
from daffi._protocol import CallbackInfo, Ping, Pong, Register, Reject, encode_callbacks
from daffi.decorators import alias, fetcher
from daffi.exceptions import InitializationError
from daffi.registry import CallbackRegistry

from ._raw import RawPeer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@alias("cb0")
@fetcher
async def cb0(x):
    pass


def registry_of(count: int, prefix: str = "cb") -> CallbackRegistry:
    registry = CallbackRegistry()
    for i in range(count):
        registry.add(lambda x: x, f"{prefix}{i}")
    return registry


async def test_a_node_offering_too_many_callbacks_is_refused_and_told_why(address: str) -> None:
    with anyio.fail_after(20):
        async with Global(
            "ctrl", init_controller=True, init_node=False, address=address, max_callbacks=10
        ):
            refused = Global("greedy", address=address, registry=registry_of(11))
            with pytest.raises(
                InitializationError,
                match=r"controller 'ctrl' refused process 'greedy': it offers 11 callbacks, over "
                r"the limit of 10 per process \(max_callbacks\)",
            ):
                async with refused:
                    pass
            async with (
                Global("server", address=address, registry=registry_of(10)),
                Global("client", address=address, registry=CallbackRegistry()) as client,
            ):
                await client.wait_function_async("cb9", timeout=5)
                with client.as_current():
                    assert await cb0(7) == 7


async def test_a_registration_too_large_is_refused_and_told_why(address: str) -> None:
    with anyio.fail_after(20):
        async with Global(
            "ctrl",
            init_controller=True,
            init_node=False,
            address=address,
            max_registration_size=1000,
        ):
            refused = Global("verbose", address=address, registry=registry_of(30, "x" * 40))
            with pytest.raises(
                InitializationError,
                match=r"it offers callbacks in a registration of \d+ bytes, over the limit of "
                r"1000 bytes \(max_registration_size\)",
            ):
                async with refused:
                    pass


async def test_a_node_over_its_own_limits_fails_at_once_with_what_to_do(address: str) -> None:
    """A node checks what it offers against its own limits (the same defaults as a
    controller's) before sending it: a registration a controller would close the connection
    over, unread, fails at once instead of as a connection that never completes."""
    with anyio.fail_after(20):
        async with Global("ctrl", init_controller=True, init_node=False, address=address):
            refused = Global("greedy", address=address, registry=registry_of(4), max_callbacks=3)
            with pytest.raises(
                InitializationError,
                match=r"process 'greedy' offers 4 callbacks, over the limit of 3 per process "
                r"\(max_callbacks\); a controller with the same limit refuses it \(raise the "
                r"limit on this Global and on the controller's\)",
            ):
                async with refused:
                    pass


async def test_callbacks_registered_later_over_the_limit_are_refused_the_rest_stays(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daffi")
    with anyio.fail_after(20):
        async with (
            Global("ctrl", init_controller=True, init_node=False, address=address, max_callbacks=8),
            Global("server", address=address, registry=registry_of(5)) as server,
            Global("client", address=address, registry=CallbackRegistry()) as client,
        ):
            await client.wait_function_async("cb4", timeout=5)
            refused = anyio.Event()

            class Watch(logging.Handler):
                def emit(self, record: logging.LogRecord) -> None:
                    if "refused the callbacks this process offers" in record.getMessage():
                        refused.set()

            watch = Watch()
            logging.getLogger("daffi").addHandler(watch)
            try:
                for i in range(5, 10):
                    server.registry.add(lambda x: -x, f"cb{i}")
                with anyio.fail_after(5):
                    await refused.wait()
            finally:
                logging.getLogger("daffi").removeHandler(watch)
            assert "it offers 10 callbacks, over the limit of 8" in caplog.text
            assert "refused the callbacks node 'server' offers" in caplog.text
            with client.as_current():
                assert await cb0(3) == 3  # the earlier offer stays
            assert sorted(client.registered_callbacks["server"]) == [f"cb{i}" for i in range(5)]


async def test_a_huge_registration_is_refused_without_being_decoded(sock_dir: str) -> None:
    """The attack of row D5: 500,000 callbacks in a 5 MB frame, from a node that joined."""
    with anyio.fail_after(30):
        async with (
            Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir),
            Global("server", unix_sock_path=sock_dir, registry=registry_of(1)),
            Global("client", unix_sock_path=sock_dir, registry=CallbackRegistry()) as client,
        ):
            await client.wait_function_async("cb0", timeout=5)
            intruder = await RawPeer.join(sock_dir, "intruder")
            huge = encode_callbacks(tuple(CallbackInfo(f"f{i}") for i in range(500_000)))
            long_names = encode_callbacks(tuple(CallbackInfo(f"{i:0500}") for i in range(5000)))
            for _ in range(5):
                await intruder.send(Register(huge), Register(long_names))
                reject = await intruder.receive_until(Reject)
                assert "it offers 500000 callbacks, over the limit of 10000" in (reject.reason)
                reject = await intruder.receive_until(Reject)
                assert "over the limit of 1048576 bytes" in reject.reason
            # Its connection stays: a refused registration is not a protocol error.
            await intruder.send(Ping())
            await intruder.receive_until(Pong)
            with client.as_current():
                for i in range(20):
                    assert await cb0(i) == i
            await intruder.aclose()


async def test_a_first_frame_larger_than_a_registration_closes_the_connection(
    sock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(30):
        async with Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir):
            stream = await anyio.connect_unix(f"{sock_dir}/daffi.sock")
            # A 60 MiB frame announced before any handshake: refused from its header.
            await stream.send((60 * 1024 * 1024).to_bytes(4, "big") + msgspec.msgpack.encode(1))
            intruder = RawPeer(stream)
            assert await intruder.closed_by_controller()
        assert (
            f"a connection opened with a frame of {60 * 1024 * 1024} bytes, over the limit of "
            f"{1024 * 1024 + 64 * 1024} bytes for a handshake (max_registration_size + 64 KiB)"
        ) in caplog.text
