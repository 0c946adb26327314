"""Protection against peers that send too much or send garbage.

Nothing a peer sends crashes a node or the controller or hangs a caller: the bad connection or
the one call fails with a clear error, everything else carries on.
"""

from __future__ import annotations

import struct

import anyio
import msgspec
import pytest

from daffi import Global
from daffi.decorators import fetcher
from daffi.exceptions import GlobalContextError
from daffi.transports import Address, get_transport

from .conftest import NodeFactory

pytestmark = pytest.mark.anyio


@fetcher
async def hold() -> None:
    """Proxy for the callback that waits until released."""


@fetcher
async def ping() -> None:
    """Proxy for a quick callback."""


async def test_calls_beyond_max_concurrent_calls_are_refused(make_node: NodeFactory) -> None:
    release = anyio.Event()
    running = 0
    two_running = anyio.Event()

    async def hold_cb() -> str:
        nonlocal running
        running += 1
        if running == 2:
            two_running.set()
        await release.wait()
        return "held"

    with anyio.fail_after(10):
        async with (
            make_node("busy", {"hold": hold_cb}, max_concurrent_calls=2),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("hold", timeout=5)
            results: list[str] = []
            with caller.as_current():
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        results.append(await hold())

                    tg.start_soon(call)
                    tg.start_soon(call)
                    await two_running.wait()
                    with pytest.raises(GlobalContextError, match="overloaded"):
                        await hold()
                    release.set()
            assert results == ["held", "held"]
            # Once the load is gone, calls are accepted again.
            with caller.as_current():
                assert await hold() == "held"


async def _raw_connection(address: str) -> anyio.abc.ByteStream:
    return await get_transport("memory").connect(Address.parse(address))


async def _drain(stream: anyio.abc.ByteStream) -> None:
    while True:
        await stream.receive()


async def test_garbage_from_a_peer_closes_only_that_connection(
    address: str, controller: Global, make_node: NodeFactory
) -> None:
    async def ping_cb() -> str:
        return "pong"

    with anyio.fail_after(10):
        async with make_node("worker", {"ping": ping_cb}), make_node("caller") as caller:
            await caller.wait_function_async("ping", timeout=5)
            for garbage in (
                b"\x00\x00\x00\x05hello",  # a frame that is not msgpack
                struct.pack(">I", 3) + msgspec.msgpack.encode([99, 1]),  # an unknown message
                struct.pack(">I", 2**31),  # a frame larger than max_frame_size
            ):
                stream = await _raw_connection(address)
                await stream.send(garbage)
                # The controller closes the bad connection ...
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await _drain(stream)
                await stream.aclose()
                # ... and everything else carries on.
                with caller.as_current():
                    assert await ping() == "pong"
