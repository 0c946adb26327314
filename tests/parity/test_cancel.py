"""Behaviour 2 over every path: a caller cancelled mid-call cancels the callee's work.

The caller is an ``async def`` fetcher awaited in a cancel scope that the test cancels (a
thread cannot be cancelled; the sync caller's counterpart is ``KeyboardInterrupt``, in
``test_interrupt.py``). An ``async`` callee sees the cancellation; a running ``def``
callee's result is dropped; a ``def`` call still queued behind busy workers never starts.
"""

from __future__ import annotations

import anyio
import pytest

from daffi import FG

from ._callbacks import Probe, call, callee_callbacks, slow_async
from ._net import CALLEE_KINDS, TOPOLOGIES, Net, Wire, network, wait_event, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

#: callers that await (a thread cannot be cancelled; see test_interrupt.py for sync callers)
AWAITING_CALLERS = ["async", "other-loop"]


async def _cancel_once_started(net: Net, probe: Probe, tag: str, seconds: float) -> None:
    """Call ``slow(tag, seconds)``; cancel the caller's scope once the callee runs it."""
    outcome: list[object] = []
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def caller() -> None:
            with scope, net.caller.as_current():
                outcome.append(await slow_async(tag, seconds))

        tg.start_soon(caller)
        assert await wait_event(probe.started_event(tag), 3.0), "the callee never started"
        scope.cancel()
    assert not outcome, f"the cancelled caller got a result: {outcome!r}"


async def _nothing_left(net: Net) -> None:
    assert await wait_until(lambda: not net.caller_pending(), 1.0), (
        f"caller's pending table not empty: {net.caller_pending()!r}"
    )
    assert await wait_until(lambda: not net.routes_of_caller(), 1.0), (
        f"controller still routes the caller's calls: {net.routes_of_caller()!r}"
    )


@pytest.mark.parametrize("caller_kind", AWAITING_CALLERS)
@pytest.mark.parametrize("callee_kind", CALLEE_KINDS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_cancelled_caller_cancels_the_callee(
    wire: Wire, anyio_backend: str, topology: str, callee_kind: str, caller_kind: str
) -> None:
    probe = Probe()
    callbacks = callee_callbacks(callee_kind, probe)
    async with network(wire, topology, anyio_backend, caller_kind, callbacks) as net:
        seconds = 0.5 if callee_kind == "def" else 10.0
        await _cancel_once_started(net, probe, "first", seconds)
        if callee_kind == "async":
            assert await wait_event(probe.cancelled_event("first"), 1.0), (
                "the async callee was not cancelled within 1 s of its caller's cancellation"
            )
        else:
            assert await wait_event(probe.finished_event("first"), 2.0)
        await _nothing_left(net)
        # The dropped result reaches nobody: the next call gets its own.
        second = await call(net, "slow", "second", 0, modifier=FG(timeout=1), bound=5)
        assert (second.error, second.value) == (None, "done-second"), (second.error, second.value)


@pytest.mark.parametrize("caller_kind", AWAITING_CALLERS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_cancelled_caller_queued_def_call_never_starts(
    wire: Wire, anyio_backend: str, topology: str, caller_kind: str
) -> None:
    """workers=2, both busy: a third call waits; its caller is cancelled meanwhile; once the
    workers are free, it must not start."""
    probe = Probe()
    callbacks = callee_callbacks("def", probe)
    async with network(wire, topology, anyio_backend, caller_kind, callbacks, workers=2) as net:
        try:
            async with anyio.create_task_group() as tg:
                for tag in ("busy-1", "busy-2"):
                    tg.start_soon(_call_quietly, net, tag)
                for tag in ("busy-1", "busy-2"):
                    assert await wait_event(probe.started_event(tag), 3.0), f"{tag} never ran"

                queued = anyio.CancelScope()

                async def queued_caller() -> None:
                    with queued, net.caller.as_current():
                        await slow_async("queued", 0)

                tg.start_soon(queued_caller)
                await anyio.sleep(0.3)
                assert not probe.started_event("queued").is_set(), (
                    "a third def call started while workers=2 were both busy"
                )
                queued.cancel()
                await anyio.sleep(0.1)  # the Cancel reaches the callee
                probe.release.set()  # the busy calls end; their results come back
            assert probe.finished_event("busy-1").is_set()
            assert probe.finished_event("busy-2").is_set()
            await anyio.sleep(0.3)  # room for the queued call to (wrongly) start
            assert not probe.started_event("queued").is_set(), (
                "a def call whose caller was cancelled while it waited for a worker ran anyway"
            )
            await _nothing_left(net)
        finally:
            probe.release.set()


async def _call_quietly(net: Net, tag: str) -> None:
    with anyio.move_on_after(8), net.caller.as_current():
        await slow_async(tag, -1)
