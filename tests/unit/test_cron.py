"""Cron schedules in a time zone, across both daylight saving transitions of a year.

Europe/Berlin in 2027: clocks spring forward on 28 March (02:00 CET → 03:00 CEST: the hour
02:00-03:00 does not exist) and fall back on 31 October (03:00 CEST → 02:00 CET: the hour
02:00-03:00 happens twice). The rule (Debian cron's, as cronsim implements it, documented
in ``docs/scheduling.md``): a schedule at fixed times runs by the wall clock, once a day
whatever the day's length (a skipped time runs at the end of the gap, a repeated one at its
first pass); any other schedule runs by elapsed time. The trigger is checked instant by
instant, then the scheduler drives a daily schedule across both transitions on a fake clock
(asyncio and trio), with no run lost or doubled.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from daffi.scheduling import Cron, ScheduleEntry

from .test_scheduler import (
    Env,
    Recorder,
    anyio_backend,  # noqa: F401  (its trio case runs on a MockClock)
    env_at,
)

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0
DAY = 24 * HOUR


def utc(*fields: int) -> float:
    return datetime(*fields, tzinfo=timezone.utc).timestamp()


def fires(trigger: Cron, start: float, end: float) -> list[str]:
    """The trigger's fires in [start, end), as Berlin wall times with their offsets."""
    out: list[str] = []
    moment = trigger.next_fire(start, None)
    while moment is not None and moment < end:
        out.append(datetime.fromtimestamp(moment, BERLIN).strftime("%m-%d %H:%M%z"))
        moment = trigger.next_fire(moment, moment)
    return out


def test_a_fixed_time_in_the_skipped_hour_runs_once_at_the_end_of_the_gap() -> None:
    daily = Cron("30 2 * * *", "Europe/Berlin")
    assert fires(daily, utc(2027, 3, 26, 12), utc(2027, 3, 29, 12)) == [
        "03-27 02:30+0100",
        "03-28 03:00+0200",  # 02:30 does not exist that night
        "03-29 02:30+0200",
    ]


def test_a_fixed_time_in_the_repeated_hour_runs_once_at_its_first_pass() -> None:
    daily = Cron("30 2 * * *", "Europe/Berlin")
    assert fires(daily, utc(2027, 10, 29, 12), utc(2027, 11, 1, 12)) == [
        "10-30 02:30+0200",
        "10-31 02:30+0200",  # not again at 02:30+0100
        "11-01 02:30+0100",
    ]


def test_an_every_n_minutes_schedule_runs_by_elapsed_time() -> None:
    half_hourly = Cron("*/30 * * * *", "Europe/Berlin")
    # Spring: 00:00 CET to 04:00 CEST is three real hours: six runs, none "in" the gap.
    spring = fires(half_hourly, utc(2027, 3, 27, 22, 59), utc(2027, 3, 28, 2))
    assert spring == [
        "03-28 00:00+0100",
        "03-28 00:30+0100",
        "03-28 01:00+0100",
        "03-28 01:30+0100",
        "03-28 03:00+0200",
        "03-28 03:30+0200",
    ]
    # Autumn: the repeated hour is passed twice, so it has four half-hours of runs.
    autumn = fires(half_hourly, utc(2027, 10, 30, 23, 59), utc(2027, 10, 31, 2))
    assert autumn == [
        "10-31 02:00+0200",
        "10-31 02:30+0200",
        "10-31 02:00+0100",
        "10-31 02:30+0100",
    ]
    # Real time between any two runs is always 30 minutes: nothing lost or doubled.
    moments = []
    moment = half_hourly.next_fire(utc(2027, 3, 27), None)
    while moment is not None and moment < utc(2027, 11, 2):
        moments.append(moment)
        moment = half_hourly.next_fire(moment, moment)
    assert {b - a for a, b in itertools.pairwise(moments)} == {1800.0}


def test_skipped_counts_the_fires_between_two() -> None:
    hourly = Cron("0 * * * *", "Europe/Berlin")
    assert hourly.skipped(utc(2027, 1, 1, 0), utc(2027, 1, 1, 5)) == 4
    assert hourly.skipped(utc(2027, 1, 1, 0), utc(2027, 1, 1, 1)) == 0


def test_missed_fires_are_skipped_to_the_first_after_now() -> None:
    hourly = Cron("0 * * * *", "UTC")
    previous = utc(2027, 1, 1, 0)
    assert hourly.next_fire(utc(2027, 1, 1, 3, 10), previous) == utc(2027, 1, 1, 4)
    assert hourly.next_fire(utc(2027, 1, 1, 0, 10), previous) == utc(2027, 1, 1, 1)


# ---------------------------------------------------------------- through the scheduler

START = utc(2027, 3, 25)  # a few days before spring's transition


@pytest.fixture
def env(anyio_backend_name: str) -> Env:
    return env_at(anyio_backend_name, START, asyncio_limit=30.0)


@pytest.mark.anyio
async def test_a_daily_schedule_across_both_transitions_of_a_year(env: Env) -> None:
    """02:30 Berlin every day from 25 March to 2 November 2027: one run a day, at 02:30 by
    the wall clock (03:00 on the night that has no 02:30), never two on the night that has
    02:30 twice."""
    days = 222  # the first run is on 25 March at 02:30 CET, the last on 1 November
    async with env.scheduler() as scheduler:
        record = Recorder(env)
        entry = ScheduleEntry("u", "tick", Cron("30 2 * * *", "Europe/Berlin"), record, "req")
        scheduler.add(entry)
        await record.wait_runs(days)
        scheduler.cancel(entry.uuid)
    walls = [datetime.fromtimestamp(f, BERLIN) for f in record.fires]
    dates = [wall.date() for wall in walls]
    assert len(set(dates)) == len(dates) == days  # one a day, no day without
    assert all((b - a).days == 1 for a, b in itertools.pairwise(dates))
    special = {
        d.strftime("%m-%d"): w.strftime("%H:%M%z") for d, w in zip(dates, walls, strict=True)
    }
    assert special["03-27"] == "02:30+0100"
    assert special["03-28"] == "03:00+0200"
    assert special["03-29"] == "02:30+0200"
    assert special["10-31"] == "02:30+0200"
    assert special["11-01"] == "02:30+0100"
    assert all(w.strftime("%H:%M") == "02:30" for w in walls if w.strftime("%m-%d") != "03-28")
    assert entry.skipped == 0
    assert not record.overlapped
