"""The metrics hook over every path: each run of a callback gives one record, with the same
meaning whichever route the call took (a call channel served by a thread of the
controller's process, a work channel, the worker pool, the in-process hand-over, a task on
the callee's loop): a success, a failure raised by the callback, arguments that do not match
the callback's annotations (refused at the callee), and a call whose caller gave up."""

from __future__ import annotations

from typing import Any

import pytest

from daffi import FG
from daffi.decorators import alias, fetcher
from daffi.exceptions import TimeoutError as DaffiTimeoutError
from daffi.metrics import CallRecord
from daffi.testing import RecordedRuns

from ._callbacks import Probe, call, callee_callbacks
from ._net import (
    CALLEE_KINDS,
    CALLER_KINDS,
    TOPOLOGIES,
    Called,
    Net,
    Wire,
    call_async,
    call_sync,
    network,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def _failing_callbacks(kind: str) -> dict[str, Any]:
    """``fail(text)`` raises ValueError(text); ``half(n: int)`` returns n // 2."""
    if kind == "def":

        def fail(text: str) -> None:
            raise ValueError(text)

        def half(n: int) -> int:
            return n // 2

        return {"fail": fail, "half": half}

    async def afail(text: str) -> None:
        raise ValueError(text)

    async def ahalf(n: int) -> int:
        return n // 2

    return {"fail": afail, "half": ahalf}


# The caller's fetchers are unannotated, so a wrong argument reaches the callee, which
# refuses it against its own annotations (the caller-side check is tested elsewhere).
@fetcher
def fail(text): ...


@fetcher
def half(n): ...


@alias("fail")
@fetcher
async def fail_async(text): ...


@alias("half")
@fetcher
async def half_async(n): ...


async def _call(net: Net, name: str, *args: Any) -> Called:
    if net.caller_kind == "sync":
        sync_fetcher = {"fail": fail, "half": half}[name]
        return await call_sync(net.caller, lambda: sync_fetcher(*args), 5)
    async_fetcher = {"fail": fail_async, "half": half_async}[name]
    return await call_async(net.caller, lambda: async_fetcher(*args), 5)


async def _records(records: RecordedRuns, callback: str, count: int) -> list[CallRecord]:
    """The records of ``callback`` once there are ``count``, and no more (a def callback's
    record is made in its worker thread, possibly after the caller has its reply)."""
    found = await records.wait_for_async(callback, count, timeout=3.0)
    assert len(found) == count, found
    return found


@pytest.mark.parametrize("caller_kind", CALLER_KINDS)
@pytest.mark.parametrize("callee_kind", CALLEE_KINDS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_each_run_is_recorded_alike_on_every_path(
    wire: Wire, anyio_backend: str, topology: str, callee_kind: str, caller_kind: str
) -> None:
    probe = Probe()
    records = RecordedRuns()
    callbacks = {**callee_callbacks(callee_kind, probe), **_failing_callbacks(callee_kind)}
    async with network(
        wire,
        topology,
        anyio_backend,
        caller_kind,
        callbacks,
        callee_extra={"metrics": records},
    ) as net:
        # A success: one "ok" record, named and attributed.
        done = await call(net, "echo", "x", bound=5)
        assert (done.error, done.value) == (None, "x")
        [ok] = await _records(records, "echo", 1)
        assert (ok.node, ok.caller, ok.kind, ok.outcome, ok.error) == (
            "callee",
            "caller",
            "call",
            "ok",
            None,
        )
        assert 0.0 <= ok.duration < 2.0

        # A slow success: its duration covers the run.
        slow = await call(net, "slow", "timed", 0.2, bound=5)
        assert slow.value == "done-timed"
        [timed] = await _records(records, "slow", 1)
        assert timed.outcome == "ok"
        assert 0.2 <= timed.duration < 2.0, timed

        # The callback raised: "error", with the exception's class name.
        failed = await _call(net, "fail", "boom")
        assert isinstance(failed.error, ValueError)
        [error] = await _records(records, "fail", 1)
        assert (error.outcome, error.error) == ("error", "ValueError")

        # Arguments refused against the callee's annotations count as a failed run too.
        refused = await _call(net, "half", "four")
        assert isinstance(refused.error, TypeError)
        good = await _call(net, "half", 4)
        assert good.value == 2
        refused_record, good_record = sorted(
            await _records(records, "half", 2), key=lambda record: record.outcome
        )
        assert (refused_record.outcome, refused_record.error) == ("error", "ArgumentTypeError")
        assert good_record.outcome == "ok"

        # The caller gave up (its timeout): the run did not finish for it, "cancelled".
        gave_up = await call(net, "slow", "late", 1.0, modifier=FG(timeout=0.3), bound=5)
        assert isinstance(gave_up.error, DaffiTimeoutError)
        late = (await _records(records, "slow", 2))[1]
        assert late.outcome == "cancelled", late
        assert late.error is None
        assert 0.25 <= late.duration < 3.0, late
