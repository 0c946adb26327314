"""Protection against peers that send too much or send garbage.

Nothing a peer sends crashes a node or the controller or hangs a caller: the bad connection or
the one call fails with a clear error, everything else carries on.
"""

from __future__ import annotations

import struct
from typing import Any

import anyio
import msgspec
import pytest

from daffi import Global
from daffi.decorators import fetcher
from daffi.exceptions import GlobalContextError
from daffi.registry import CallbackRegistry
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


@fetcher
async def stuck() -> None:
    """Proxy for a def callback that does not return until released."""


@fetcher
async def add(a: int, b: int) -> int:
    """Proxy for a quick def callback."""


async def test_workers_held_by_abandoned_calls_refuse_new_calls_at_once(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11, D7: with every worker stuck in a call whose caller had timed out, later
    calls waited and timed out too, and nothing said why."""
    import logging
    import threading

    from daffi import FG
    from daffi.exceptions import TimeoutError as DaffiTimeoutError

    caplog.set_level(logging.WARNING, logger="daffi")
    release = threading.Event()
    started = threading.Semaphore(0)

    def stuck_cb() -> None:
        started.release()
        release.wait(20)

    def add_cb(a: int, b: int) -> int:
        return a + b

    try:
        with anyio.fail_after(30):
            async with (
                make_node("w", {"stuck": stuck_cb, "add": add_cb}, workers=2),
                make_node("caller") as caller,
            ):
                await caller.wait_function_async("stuck", timeout=5)
                with caller.as_current():
                    for _ in range(2):
                        with pytest.raises(DaffiTimeoutError):
                            await stuck.call(exec_modifier=FG(timeout=0.2))
                    for _ in range(2):
                        assert await anyio.to_thread.run_sync(started.acquire, True, 5)
                    t0 = anyio.current_time()
                    with pytest.raises(
                        GlobalContextError,
                        match=r"workers are held by calls of 'stuck' whose callers gave up",
                    ):
                        await add(1, 2)
                    assert anyio.current_time() - t0 < 1  # at once, not at a timeout
                    assert any("refused a call of 'add'" in r.getMessage() for r in caplog.records)
                    release.set()
                    with anyio.fail_after(5):
                        while True:
                            try:
                                assert await add(1, 2) == 3
                                break
                            except GlobalContextError:
                                await anyio.sleep(0.05)
    finally:
        release.set()


@pytest.mark.parametrize("transport", ["memory", "unix"])
async def test_calls_beyond_max_calls_in_flight_fail_at_once(transport: str, sock_dir: str) -> None:
    """A node may have at most max_calls_in_flight calls waiting through the controller: the
    next fails at once with GlobalContextError, on the controller's direct path (unix on
    asyncio) as on its serving task, and calls work again once some finished."""
    release = anyio.Event()
    where = (
        {"address": f"memory://limits-{id(release)}"}
        if transport == "memory"
        else {"unix_sock_path": sock_dir}
    )

    async def hold_cb() -> str:
        await release.wait()
        return "held"

    registry = CallbackRegistry()
    registry.add(hold_cb, "hold")
    registry.add(lambda: "pong", "ping")
    with anyio.fail_after(20):
        async with (
            Global("ctrl", init_controller=True, init_node=False, max_calls_in_flight=5, **where),
            Global("busy", registry=registry, **where),
            Global("caller", registry=CallbackRegistry(), **where) as caller,
        ):
            await caller.wait_function_async("hold", timeout=5)
            results: list[str] = []
            with caller.as_current():
                async with anyio.create_task_group() as tg:
                    for _ in range(5):
                        tg.start_soon(lambda: _append(results, hold()))
                    for _ in range(100):  # until the controller has all five in flight
                        await anyio.sleep(0.01)
                        try:
                            await ping()
                        except GlobalContextError:
                            break
                    with pytest.raises(
                        GlobalContextError,
                        match=r"process 'caller' has 5 calls in flight through controller "
                        r"'ctrl', its limit \(max_calls_in_flight\); wait for some to finish",
                    ):
                        await ping()
                    release.set()
                assert results == ["held"] * 5
                assert await ping() == "pong"


async def _append(results: list[str], call: Any) -> None:
    results.append(await call)
