"""The executor-side Scheduler, on a fake clock: days of schedules run in milliseconds.

Every test runs on asyncio and trio with a virtual clock that jumps ahead whenever every task
is blocked:

- trio: ``trio.testing.MockClock(autojump_threshold=0)`` drives the loop's clock, and daffi's
  ``LoopClock`` reads wall time from it (``anyio.fail_after`` is virtual too: a deadlock jumps
  straight to the deadline and fails at once).
- asyncio: ``AutojumpClock`` below does the same for the scheduler alone: the test's helper
  task waits with ``anyio.wait_all_tasks_blocked()`` and then moves time to the earliest
  pending ``sleep_until``. ``anyio.fail_after`` stays real there.

Tests place themselves in virtual time with ``env.sleep_until(...)`` at half-interval offsets
(never on a fire instant, where wake-up order would be arbitrary) unless the tie is the point.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from trio.testing import MockClock

from daffi.scheduling import AtTimes, Clock, Interval, LoopClock, ScheduleEntry, Scheduler

pytestmark = pytest.mark.anyio

EPOCH = 1_700_000_000.0
HOUR = 3600.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Both backends; trio with a fresh autojumping MockClock for every test."""
    if request.param == "trio":
        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return "asyncio"


# ---------------------------------------------------------------- the asyncio fake clock


class AutojumpClock:
    """A virtual wall clock for asyncio, like trio's ``MockClock(autojump_threshold=0)``.

    Time stands still while any task can run. :meth:`autojump` (a task the test hosts)
    waits until every task is blocked, then jumps to the earliest pending
    :meth:`sleep_until` and wakes the sleepers that are due.
    """

    def __init__(self, start: float = EPOCH) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()
        self._added: anyio.Event | None = None

    def wall(self) -> float:
        return self.now

    async def sleep_until(self, wall: float) -> None:
        if wall <= self.now:
            await anyio.lowlevel.checkpoint()
            return
        item = (wall, next(self._seq), anyio.Event())
        heapq.heappush(self._sleepers, item)
        if self._added is not None:
            self._added.set()
        try:
            await item[2].wait()
        finally:
            if not item[2].is_set():  # cancelled while sleeping
                self._sleepers.remove(item)
                heapq.heapify(self._sleepers)

    async def autojump(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            if not self._sleepers:
                self._added = anyio.Event()
                await self._added.wait()
                self._added = None
            # Let woken tasks settle first: wait_all_tasks_blocked() naps 0.1 s (real) each
            # time it finds a runnable task, and a few bare checkpoints usually avoid that.
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            await anyio.wait_all_tasks_blocked()
            if not self._sleepers:
                continue
            self.now = max(self.now, self._sleepers[0][0])
            while self._sleepers and self._sleepers[0][0] <= self.now:
                heapq.heappop(self._sleepers)[2].set()


# ---------------------------------------------------------------- the per-backend environment


@dataclass
class Env:
    """The clock a test's scheduler uses, and how to run one."""

    clock: Clock
    #: fail_after bound: virtual seconds on trio (a deadlock jumps to it), real ones on asyncio
    limit: float
    autojump: Callable[..., Awaitable[None]] | None = None

    def wall(self) -> float:
        return self.clock.wall()

    async def sleep_until(self, wall: float) -> None:
        await self.clock.sleep_until(wall)

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep_until(self.clock.wall() + seconds)

    @asynccontextmanager
    async def scheduler(
        self, on_error: Callable[[ScheduleEntry, BaseException], Awaitable[None]] | None = None
    ) -> AsyncIterator[Scheduler]:
        """A running Scheduler on this clock, hosted in a task group; stopped on exit."""
        with anyio.fail_after(self.limit):
            async with anyio.create_task_group() as tg:
                if self.autojump is not None:
                    await tg.start(self.autojump)
                scheduler = Scheduler(clock=self.clock, on_error=on_error)
                await tg.start(scheduler.run)
                yield scheduler
                tg.cancel_scope.cancel()


def env_at(anyio_backend_name: str, epoch: float, *, asyncio_limit: float = 10.0) -> Env:
    """A fake clock starting at ``epoch`` for the test's backend (see the module docstring);
    ``asyncio_limit``: real seconds the asyncio fake clock may take."""
    if anyio_backend_name == "trio":
        return Env(LoopClock(epoch), limit=365 * 24 * HOUR)
    clock = AutojumpClock(epoch)
    return Env(clock, limit=asyncio_limit, autojump=clock.autojump)


@pytest.fixture
def env(anyio_backend_name: str) -> Env:
    return env_at(anyio_backend_name, EPOCH)


# ---------------------------------------------------------------- recording runs


@dataclass
class Recorder:
    """An async run callable that records the wall time of each run and never overlaps."""

    env: Env
    #: seconds each run takes (virtual), by run number (1-based); default 0
    durations: dict[int, float] = field(default_factory=dict)
    #: run numbers that raise ValueError
    failing: set[int] = field(default_factory=set)
    fires: list[float] = field(default_factory=list)
    running: bool = False
    overlapped: bool = False
    _waiters: list[tuple[int, anyio.Event]] = field(default_factory=list)

    async def __call__(self) -> None:
        if self.running:
            self.overlapped = True
        self.running = True
        self.fires.append(self.env.wall())
        number = len(self.fires)
        for count, event in self._waiters:
            if number >= count:
                event.set()
        try:
            if number in self.durations:
                await self.env.sleep(self.durations[number])
            if number in self.failing:
                raise ValueError(f"run {number} failed")
        finally:
            self.running = False

    async def wait_runs(self, count: int) -> None:
        if len(self.fires) >= count:
            return
        event = anyio.Event()
        self._waiters.append((count, event))
        await event.wait()


def interval_entry(
    env: Env, run: Callable[[], Awaitable[Any]], every: float, uuid: str = "u1"
) -> ScheduleEntry:
    return ScheduleEntry(uuid, "tick", Interval(every, start=env.wall()), run, requester="req")


def assert_walls(actual: list[float], expected: list[float]) -> None:
    assert actual == pytest.approx(expected, abs=1e-6, rel=0)


# ---------------------------------------------------------------- interval


async def test_a_day_of_hourly_runs_takes_well_under_a_second(env: Env) -> None:
    began = time.perf_counter()
    async with env.scheduler() as scheduler:
        record = Recorder(env)
        entry = interval_entry(env, record, HOUR)
        start = entry.trigger.start  # type: ignore[attr-defined]
        scheduler.add(entry)
        await record.wait_runs(24)
        assert scheduler.cancel(entry.uuid) is True
    elapsed = time.perf_counter() - began
    assert_walls(record.fires, [start + k * HOUR for k in range(1, 25)])
    assert entry.runs == 24
    assert entry.skipped == 0
    assert elapsed < 1.0, f"24 virtual hours took {elapsed:.2f} s of real time"


async def test_fixed_rate_run_time_does_not_shift_the_grid(env: Env) -> None:
    """Each run takes 40% of an interval; fixed delay would drift by that much per run."""
    async with env.scheduler() as scheduler:
        record = Recorder(env, durations={n: 4.0 for n in range(1, 10)})
        entry = interval_entry(env, record, 10.0)
        scheduler.add(entry)
        start = env.wall()
        await record.wait_runs(6)
        scheduler.cancel(entry.uuid)
    assert_walls(record.fires, [start + 10.0 * k for k in range(1, 7)])
    assert not record.overlapped


async def test_overrunning_run_skips_ticks_and_runs_never_overlap(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daffi.scheduling")
    async with env.scheduler() as scheduler:
        # Run 1 starts at 10 and takes 2.5 intervals (until 35): ticks 20 and 30 are skipped.
        record = Recorder(env, durations={1: 25.0})
        entry = interval_entry(env, record, 10.0)
        start = env.wall()
        scheduler.add(entry)
        await record.wait_runs(3)
        scheduler.cancel(entry.uuid)
    assert_walls(record.fires, [start + 10.0, start + 40.0, start + 50.0])
    assert entry.skipped == 2
    assert not record.overlapped
    assert "skipped 2 run(s) because the previous run was still going" in caplog.text


async def test_skips_are_logged_once_for_many_schedules(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daffi.scheduling")
    async with env.scheduler() as scheduler:
        records = [Recorder(env, durations={1: 25.0}) for _ in range(20)]
        entries = [
            interval_entry(env, record, 10.0, uuid=f"u{i}") for i, record in enumerate(records)
        ]
        for entry in entries:
            scheduler.add(entry)
        for record in records:
            await record.wait_runs(2)
        for entry in entries:
            scheduler.cancel(entry.uuid)
    assert all(entry.skipped == 2 for entry in entries)
    # one line for the 20 schedules that skipped at the same moment, not 20
    assert caplog.text.count("skipped 2 run(s)") == 1


async def test_next_run_is_the_coming_grid_point(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env)
        entry = interval_entry(env, record, 10.0)
        start = env.wall()
        scheduler.add(entry)
        assert entry.next_run == pytest.approx(start + 10.0, abs=1e-6)
        await env.sleep_until(start + 25.0)
        assert entry.runs == 2
        assert entry.next_run == pytest.approx(start + 30.0, abs=1e-6)
        scheduler.cancel(entry.uuid)


# ---------------------------------------------------------------- at_time


async def test_at_time_fires_each_entry_once_in_order_then_ends(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env)
        now = env.wall()
        given = [now + 30.0, now + 10.0, now + 20.0]  # out of order, as a user may give them
        entry = ScheduleEntry("u1", "tick", AtTimes(tuple(sorted(given))), record)
        scheduler.add(entry)
        assert entry.next_run == now + 10.0
        await env.sleep_until(now + 100.0)
        assert_walls(record.fires, sorted(given))
        assert entry.runs == 3
        assert entry.next_run is None
        assert "u1" not in scheduler.entries
        assert scheduler.describe() == []
        # Finished: nothing left to cancel.
        assert scheduler.cancel("u1") is False


async def test_at_time_fires_do_not_wait_for_a_long_previous_run(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env, durations={1: 50.0})
        now = env.wall()
        entry = ScheduleEntry("u1", "tick", AtTimes((now + 10.0, now + 20.0)), record)
        scheduler.add(entry)
        await record.wait_runs(2)
        assert_walls(record.fires, [now + 10.0, now + 20.0])
        # the schedule lasts until its last run is over
        await env.sleep_until(now + 55.0)
        assert "u1" in scheduler.entries
        await env.sleep_until(now + 65.0)
        assert "u1" not in scheduler.entries


# ---------------------------------------------------------------- cancellation


async def test_cancel_before_the_driver_started(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env)
        entry = interval_entry(env, record, 10.0)
        scheduler.add(entry)
        assert scheduler.cancel(entry.uuid) is True
        await env.sleep(100.0)
    assert record.fires == []
    assert entry.runs == 0


async def test_cancel_while_waiting_for_the_first_fire(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env)
        entry = interval_entry(env, record, 10.0)
        start = env.wall()
        scheduler.add(entry)
        await env.sleep_until(start + 5.0)
        assert scheduler.cancel(entry.uuid) is True
        await env.sleep_until(start + 100.0)
    assert record.fires == []


async def test_cancel_while_sleeping_between_fires(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env)
        entry = interval_entry(env, record, 10.0)
        start = env.wall()
        scheduler.add(entry)
        await env.sleep_until(start + 25.0)
        assert scheduler.cancel(entry.uuid) is True
        assert entry.uuid not in scheduler.entries
        await env.sleep_until(start + 100.0)
    assert_walls(record.fires, [start + 10.0, start + 20.0])


@pytest.mark.parametrize("kind", ["interval", "at_time"])
async def test_cancel_interrupts_an_async_run_in_progress(env: Env, kind: str) -> None:
    started = anyio.Event()
    interrupted = anyio.Event()
    runs = 0

    async def run() -> None:
        nonlocal runs
        runs += 1
        started.set()
        try:
            await env.sleep(1000.0)
        except anyio.get_cancelled_exc_class():
            interrupted.set()
            raise

    async with env.scheduler() as scheduler:
        now = env.wall()
        trigger = Interval(10.0, start=now) if kind == "interval" else AtTimes((now + 10.0,))
        entry = ScheduleEntry("u1", "tick", trigger, run)
        scheduler.add(entry)
        await started.wait()
        assert scheduler.cancel("u1") is True
        await interrupted.wait()
        await env.sleep(100.0)
    assert runs == 1


async def test_cancel_after_the_last_at_time_fire_returns_false(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env)
        now = env.wall()
        scheduler.add(ScheduleEntry("u1", "tick", AtTimes((now + 10.0,)), record))
        await env.sleep_until(now + 15.0)
        assert len(record.fires) == 1
        assert scheduler.cancel("u1") is False


async def test_cancel_returns_true_only_once(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env)
        scheduler.add(interval_entry(env, record, 10.0))
        await record.wait_runs(1)
        assert scheduler.cancel("u1") is True
        assert scheduler.cancel("u1") is False
        assert scheduler.cancel("never-existed") is False


async def test_cancelling_one_schedule_leaves_the_others(env: Env) -> None:
    async with env.scheduler() as scheduler:
        first, second = Recorder(env), Recorder(env)
        start = env.wall()
        scheduler.add(interval_entry(env, first, 10.0, uuid="a"))
        scheduler.add(interval_entry(env, second, 10.0, uuid="b"))
        await env.sleep_until(start + 15.0)
        assert scheduler.cancel("a") is True
        await env.sleep_until(start + 45.0)
        assert len(first.fires) == 1
        assert len(second.fires) == 4
        assert list(scheduler.entries) == ["b"]


async def test_no_run_starts_after_cancel_returned_true_at_the_fire_instant(env: Env) -> None:
    """``cancel()`` at the very instant a fire is due: either the run already started (and
    is interrupted), or it never starts. It must not start *after* cancel() said True.

    A canceller task sleeps until exactly the fire time, like the schedule's driver, and its
    sleep is registered first, so it is woken first: the driver's sleep has ended but the
    driver has not resumed yet when cancel() runs (as when a Cancel message and the timer are
    ready in the same loop iteration). On trio the cancelled scope still reaches the driver
    (a deadline wake-up is itself a cancellation, which propagates to the outer cancelled
    scope); on asyncio a sleep that ended normally returns normally, and the driver must check
    its scope before starting the run.
    """
    late_starts: list[str] = []

    async with env.scheduler() as scheduler:
        cancelled_at: dict[str, int] = {}
        runs: dict[str, int] = {}

        def make_run(uuid: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                runs[uuid] = runs.get(uuid, 0) + 1
                if uuid in cancelled_at:
                    late_starts.append(uuid)
                await env.sleep(1.0)

            return run

        async def cancel_at(uuid: str, wall: float) -> None:
            await env.sleep_until(wall)
            assert scheduler.cancel(uuid) is True
            cancelled_at[uuid] = runs.get(uuid, 0)

        async with anyio.create_task_group() as tg:
            for i in range(20):
                uuid = f"u{i}"
                start = env.wall()
                # The canceller's sleep is registered before the driver's.
                tg.start_soon(cancel_at, uuid, start + 10.0)
                await anyio.lowlevel.checkpoint()
                scheduler.add(
                    ScheduleEntry(uuid, "tick", Interval(10.0, start=start), make_run(uuid))
                )
                await env.sleep(3.0)
        await env.sleep(100.0)
    assert late_starts == [], f"runs started after cancel() returned True: {late_starts}"


async def test_stopping_the_scheduler_cancels_every_schedule(env: Env) -> None:
    interrupted = anyio.Event()
    started = anyio.Event()

    async def stuck() -> None:
        started.set()
        try:
            await env.sleep(1000.0)
        finally:
            interrupted.set()

    record = Recorder(env)
    with anyio.fail_after(env.limit):
        async with anyio.create_task_group() as host:
            if env.autojump is not None:
                await host.start(env.autojump)
            scheduler = Scheduler(clock=env.clock)
            async with anyio.create_task_group() as tg:
                await tg.start(scheduler.run)
                now = env.wall()
                scheduler.add(interval_entry(env, record, 10.0, uuid="interval"))
                scheduler.add(ScheduleEntry("at", "stuck", AtTimes((now + 5.0,)), stuck))
                await started.wait()
                await env.sleep_until(now + 25.0)
                assert len(scheduler.entries) == 2
                tg.cancel_scope.cancel()  # the host scope of Scheduler.run
            assert interrupted.is_set()
            fires = len(record.fires)
            assert fires == 2
            assert scheduler.entries == {}
            assert scheduler.describe() == []
            with pytest.raises(RuntimeError, match="not running"):
                scheduler.add(interval_entry(env, record, 10.0, uuid="late"))
            await env.sleep(100.0)
            assert len(record.fires) == fires
            host.cancel_scope.cancel()


# ---------------------------------------------------------------- errors


async def test_a_failing_run_is_reported_and_the_schedule_continues(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="daffi.scheduling")
    reported: list[tuple[str, BaseException]] = []

    async def on_error(entry: ScheduleEntry, exc: BaseException) -> None:
        reported.append((entry.uuid, exc))

    async with env.scheduler(on_error=on_error) as scheduler:
        record = Recorder(env, failing={2, 3})
        entry = interval_entry(env, record, 10.0)
        start = env.wall()
        scheduler.add(entry)
        await record.wait_runs(5)
        assert scheduler.cancel(entry.uuid) is True
    assert_walls(record.fires, [start + 10.0 * k for k in range(1, 6)])
    assert [(uuid, str(exc)) for uuid, exc in reported] == [
        ("u1", "run 2 failed"),
        ("u1", "run 3 failed"),
    ]
    assert all(isinstance(exc, ValueError) for _, exc in reported)
    assert entry.last_error == "ValueError: run 3 failed"
    assert "scheduled run of 'tick' (u1) failed" in caplog.text


async def test_a_failing_error_reporter_does_not_stop_the_schedule(env: Env) -> None:
    async def on_error(entry: ScheduleEntry, exc: BaseException) -> None:
        raise RuntimeError("reporter is broken")

    async with env.scheduler(on_error=on_error) as scheduler:
        record = Recorder(env, failing={1, 2})
        scheduler.add(interval_entry(env, record, 10.0))
        await record.wait_runs(4)
        assert scheduler.cancel("u1") is True


async def test_a_failing_at_time_run_does_not_stop_the_later_ones(env: Env) -> None:
    reported: list[BaseException] = []

    async def on_error(entry: ScheduleEntry, exc: BaseException) -> None:
        reported.append(exc)

    async with env.scheduler(on_error=on_error) as scheduler:
        record = Recorder(env, failing={1})
        now = env.wall()
        scheduler.add(ScheduleEntry("u1", "tick", AtTimes((now + 1.0, now + 2.0)), record))
        await env.sleep_until(now + 10.0)
    assert len(record.fires) == 2
    assert len(reported) == 1


# ---------------------------------------------------------------- bookkeeping


async def test_describe_lists_each_schedule(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env, failing={2})
        start = env.wall()
        scheduler.add(
            ScheduleEntry("iv", "tick", Interval(10.0, start=start), record, requester="req")
        )
        scheduler.add(
            ScheduleEntry("at", "tock", AtTimes((start + 100.0, start + 200.0)), Recorder(env))
        )
        await env.sleep_until(start + 25.0)
        listing = {item["uuid"]: item for item in scheduler.describe()}
        assert listing == {
            "iv": {
                "uuid": "iv",
                "func_name": "tick",
                "kind": "interval",
                "condition": "period",  # daffi 2's key
                "next_run": pytest.approx(start + 30.0, abs=1e-6),
                "runs": 2,
                "skipped": 0,
                "requester": "req",
                "last_error": "ValueError: run 2 failed",
                "durable": False,
                "interval": 10.0,
            },
            "at": {
                "uuid": "at",
                "func_name": "tock",
                "kind": "at_time",
                "condition": "at_time",
                "next_run": start + 100.0,
                "runs": 0,
                "skipped": 0,
                "requester": "",
                "last_error": None,
                "durable": False,
                "at_time": [start + 100.0, start + 200.0],
            },
        }
        assert scheduler.cancel("iv") is True
        assert [item["uuid"] for item in scheduler.describe()] == ["at"]
        scheduler.cancel("at")


async def test_add_needs_a_running_scheduler_and_a_new_uuid(env: Env) -> None:
    record = Recorder(env)
    with pytest.raises(RuntimeError, match="not running"):
        Scheduler(clock=env.clock).add(interval_entry(env, record, 10.0))
    async with env.scheduler() as scheduler:
        scheduler.add(interval_entry(env, record, 10.0))
        with pytest.raises(ValueError, match="already exists"):
            scheduler.add(interval_entry(env, Recorder(env), 10.0))
        scheduler.cancel("u1")
