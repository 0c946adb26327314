"""Behaviour 1 over every path: ``FG(timeout=1)`` frees the caller within 1.5 s with daffi's
``TimeoutError``; an ``async`` callee is cancelled; a ``def`` callee's late result is dropped
(nobody gets it, and the next call on the same path gets its own result)."""

from __future__ import annotations

import pytest

from daffi import FG
from daffi.exceptions import TimeoutError as DaffiTimeoutError

from ._callbacks import Probe, call, callee_callbacks
from ._net import CALLEE_KINDS, CALLER_KINDS, TOPOLOGIES, Wire, network, wait_event, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.mark.parametrize("caller_kind", CALLER_KINDS)
@pytest.mark.parametrize("callee_kind", CALLEE_KINDS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_fg_timeout(
    wire: Wire, anyio_backend: str, topology: str, callee_kind: str, caller_kind: str
) -> None:
    probe = Probe()
    callbacks = callee_callbacks(callee_kind, probe)
    async with network(wire, topology, anyio_backend, caller_kind, callbacks) as net:
        # A def callee runs 1.2 s (past the 1 s deadline) and then returns; an async one
        # would run 10 s unless cancelled.
        seconds = 1.2 if callee_kind == "def" else 10.0
        first = await call(net, "slow", "first", seconds, modifier=FG(timeout=1), bound=5)
        assert isinstance(first.error, DaffiTimeoutError), (
            f"expected daffi's TimeoutError, got value={first.value!r} error={first.error!r}"
        )
        assert isinstance(first.error, TimeoutError)
        assert first.elapsed <= 1.5, f"the caller was held {first.elapsed:.2f} s (limit 1.5 s)"
        assert probe.started_event("first").is_set()

        if callee_kind == "async":
            assert await wait_event(probe.cancelled_event("first"), 1.0), (
                "the async callee was not cancelled within 1 s of the caller's timeout"
            )
            assert not probe.finished_event("first").is_set()
        else:
            # Let the def callee finish and its (late) reply travel wherever it goes.
            assert await wait_event(probe.finished_event("first"), 2.0)

        # Nothing is left waiting for the abandoned call, on the caller or in the controller.
        assert await wait_until(lambda: not net.caller_pending(), 1.0), (
            f"caller's pending table not empty: {net.caller_pending()!r}"
        )
        assert await wait_until(lambda: not net.routes_of_caller(), 1.0), (
            f"controller still routes the caller's calls: {net.routes_of_caller()!r}"
        )

        # The next calls on the same path get their own results, not the stale one.
        second = await call(net, "slow", "second", 0, modifier=FG(timeout=1), bound=5)
        assert second.error is None, f"follow-up call failed: {second.error!r}"
        assert second.value == "done-second", f"follow-up call got {second.value!r}"
        third = await call(net, "echo", "third", modifier=FG(timeout=1), bound=5)
        assert (third.error, third.value) == (None, "third"), (third.error, third.value)
        assert not net.caller_pending()
