"""``PERIOD(start=, end=, max_runs=, jitter=)``: checked at the requester, applied by the
executor's scheduler (on the fake clock of test_scheduler.py, asyncio and trio)."""

from __future__ import annotations

import time

import pytest

from daffi import PERIOD
from daffi.exceptions import InitializationError
from daffi.scheduling import AtTimes, Cron, Interval, ScheduleEntry
from daffi.scheduling._bounds import Bounds

from .test_scheduler import (
    Env,
    Recorder,
    anyio_backend,  # noqa: F401  (its trio case runs on a MockClock)
    assert_walls,
    env_at,
)

EPOCH = 1_800_000_000.0  # a whole hour (UTC)


# ---------------------------------------------------------------- at the requester


def test_bounds_are_checked_when_the_period_is_built() -> None:
    now = time.time()
    period = PERIOD(interval=10, start=now + 60, end=now + 600, max_runs=3, jitter="2s")
    assert (period.start, period.end, period.max_runs, period.jitter) == (
        now + 60,
        now + 600,
        3,
        2.0,
    )
    assert "max_runs=3" in repr(period)
    assert PERIOD(interval=10).jitter == 0.0
    with pytest.raises(InitializationError, match=r"end .* is in the past"):
        PERIOD(interval=10, end=now - 5)
    with pytest.raises(InitializationError, match="is not after its start"):
        PERIOD(interval=10, start=now + 100, end=now + 50)
    with pytest.raises(InitializationError, match="max_runs must be a positive int"):
        PERIOD(interval=10, max_runs=0)
    with pytest.raises(InitializationError, match="max_runs must be a positive int"):
        PERIOD(interval=10, max_runs=True)  # type: ignore[arg-type]
    with pytest.raises(InitializationError, match="jitter"):
        PERIOD(interval=10, jitter=-1)
    with pytest.raises(InitializationError, match="start and end bound interval and cron"):
        PERIOD(at_time=now + 10, end=now + 20)
    with pytest.raises(InitializationError, match="is not a time"):
        PERIOD(cron="* * * * *", start="tomorrow")  # type: ignore[arg-type]
    assert PERIOD(at_time=now + 10, max_runs=1).max_runs == 1


# ---------------------------------------------------------------- in the scheduler


@pytest.fixture
def env(anyio_backend_name: str) -> Env:
    return env_at(anyio_backend_name, EPOCH, asyncio_limit=10.0)


def entry(trigger: object, record: Recorder, bounds: Bounds) -> ScheduleEntry:
    return ScheduleEntry("u", "tick", trigger, record, "req", bounds=bounds)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_an_interval_starts_at_start_and_ends_at_end(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env)
        start = EPOCH + 100
        bounds = Bounds(start=start, end=start + 35)
        schedule = entry(Interval(10, start=start - 10), record, bounds)
        scheduler.add(schedule)
        assert schedule.next_run == start
        await env.sleep(200)
        assert schedule.uuid not in scheduler.entries  # over: it left the listing
    assert_walls(record.fires, [start, start + 10, start + 20, start + 30])


@pytest.mark.anyio
async def test_max_runs_ends_a_cron_and_an_at_time_schedule(env: Env) -> None:
    async with env.scheduler() as scheduler:
        minutely, times = Recorder(env), Recorder(env)
        scheduler.add(entry(Cron("* * * * *"), minutely, Bounds(max_runs=3)))
        at = AtTimes((EPOCH + 1, EPOCH + 2, EPOCH + 3, EPOCH + 4))
        scheduler.add(ScheduleEntry("v", "tick", at, times, "req", bounds=Bounds(max_runs=2)))
        await env.sleep(600)
        assert scheduler.entries == {}
    assert_walls(minutely.fires, [EPOCH + 60, EPOCH + 120, EPOCH + 180])
    assert_walls(times.fires, [EPOCH + 1, EPOCH + 2])


@pytest.mark.anyio
async def test_jitter_delays_each_run_within_it_and_keeps_the_grid(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env)
        schedule = entry(Interval(60, start=EPOCH), record, Bounds(jitter=5.0, max_runs=20))
        scheduler.add(schedule)
        await env.sleep(60 * 21)
    assert len(record.fires) == 20
    delays = [fire - (EPOCH + 60 * k) for k, fire in enumerate(record.fires, start=1)]
    assert all(0 <= delay <= 5.0 for delay in delays), delays
    assert len({round(delay, 6) for delay in delays}) > 1  # random, not a fixed shift
    assert schedule.skipped == 0


# ---------------------------------------------------------------- misfire policy
# Run 1 starts at +10 and takes 25 s (until +35): the times +20 and +30 are missed.


@pytest.mark.anyio
async def test_by_default_missed_interval_times_are_skipped(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env, durations={1: 25.0})
        schedule = entry(Interval(10, start=EPOCH), record, Bounds(max_runs=3))
        scheduler.add(schedule)
        await env.sleep(100)
    assert_walls(record.fires, [EPOCH + 10, EPOCH + 40, EPOCH + 50])
    assert schedule.skipped == 2


@pytest.mark.anyio
async def test_missed_times_within_the_grace_coalesce_into_one_late_run(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env, durations={1: 25.0})
        policy = Bounds(max_runs=3, misfire_grace=7.0)
        schedule = entry(Interval(10, start=EPOCH), record, policy)
        scheduler.add(schedule)
        await env.sleep(100)
    # At +35, +30 was missed by 5 s (within 7): it runs at once, late; +20 is dropped.
    assert_walls(record.fires, [EPOCH + 10, EPOCH + 35, EPOCH + 40])
    assert schedule.skipped == 1


@pytest.mark.anyio
async def test_without_coalescing_each_missed_time_within_the_grace_runs(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env, durations={1: 25.0})
        policy = Bounds(max_runs=4, misfire_grace=20.0, coalesce=False)
        schedule = entry(Interval(10, start=EPOCH), record, policy)
        scheduler.add(schedule)
        await env.sleep(100)
    # At +35 both +20 (15 s late) and +30 (5 s late) are within 20 s: each runs, at once.
    assert_walls(record.fires, [EPOCH + 10, EPOCH + 35, EPOCH + 35, EPOCH + 40])
    assert schedule.skipped == 0
    assert not record.overlapped


@pytest.mark.anyio
async def test_a_missed_time_beyond_the_grace_is_skipped(env: Env) -> None:
    async with env.scheduler() as scheduler:
        record = Recorder(env, durations={1: 25.0})
        policy = Bounds(max_runs=2, misfire_grace=2.0)
        schedule = entry(Interval(10, start=EPOCH), record, policy)
        scheduler.add(schedule)
        await env.sleep(100)
    assert_walls(record.fires, [EPOCH + 10, EPOCH + 40])
    assert schedule.skipped == 2


@pytest.mark.anyio
async def test_an_at_time_missed_beyond_its_grace_is_skipped(env: Env) -> None:
    """at_time runs late by default; with a grace, a time missed by more is skipped."""
    async with env.scheduler() as scheduler:
        late, strict = Recorder(env), Recorder(env)
        times = AtTimes((EPOCH - 30, EPOCH - 1, EPOCH + 5))
        scheduler.add(ScheduleEntry("a", "tick", times, late, "req"))
        scheduler.add(
            ScheduleEntry("b", "tick", times, strict, "req", bounds=Bounds(misfire_grace=2))
        )
        await env.sleep(60)
    assert_walls(late.fires, [EPOCH, EPOCH, EPOCH + 5])
    assert_walls(strict.fires, [EPOCH, EPOCH + 5])
