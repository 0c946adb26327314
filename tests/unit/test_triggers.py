"""Triggers: when an ``Interval`` or ``AtTimes`` schedule fires next (pure functions of time)."""

from __future__ import annotations

import math

import pytest

from daffi.scheduling import AtTimes, Interval

START = 1_700_000_000.0


def on_grid(value: float, start: float, interval: float, k: int) -> bool:
    """``value`` is grid point k (up to float rounding at epoch magnitudes, ~2.4e-7 s)."""
    return math.isclose(value, start + k * interval, rel_tol=0.0, abs_tol=1e-6)


# ---------------------------------------------------------------- Interval: the grid


def test_interval_first_fire_is_one_interval_after_start() -> None:
    trigger = Interval(10.0, start=START)
    assert trigger.next_fire(START, None) == START + 10.0
    assert trigger.kind == "interval"


@pytest.mark.parametrize("interval", [0.1, 0.05, 1.0, 3600.0, 7.3])
def test_interval_follows_the_grid_without_drift_over_10000_fires(interval: float) -> None:
    """fire_k == start + k * interval, even when every run takes part of an interval.

    Adding ``interval`` to the previous fire (or to the end of the previous run, as daffi 2
    did) accumulates rounding and run time; 0.1 summed 10,000 times from an epoch is already
    ~1e-4 s off the grid, well outside the tolerance.
    """
    trigger = Interval(interval, start=START)
    previous: float | None = None
    now = START
    for k in range(1, 10_001):
        fire = trigger.next_fire(now, previous)
        assert fire is not None
        assert on_grid(fire, START, interval, k), (k, fire, START + k * interval)
        if previous is not None:
            assert trigger.skipped(previous, fire) == 0
        previous = fire
        now = fire + 0.3 * interval  # the run took 30% of an interval


def test_interval_next_fire_when_now_equals_previous() -> None:
    trigger = Interval(2.0, start=1000.0)
    assert trigger.next_fire(1002.0, 1002.0) == 1004.0


def test_interval_skips_grid_points_that_are_already_past() -> None:
    trigger = Interval(10.0, start=START)
    previous = START + 10.0
    # The run that started at grid point 1 ended at 3.5 intervals: points 2 and 3 are gone.
    fire = trigger.next_fire(START + 35.0, previous)
    assert fire == START + 40.0
    assert trigger.skipped(previous, fire) == 2


def test_interval_skips_many_points_after_a_suspension() -> None:
    trigger = Interval(1.0, start=START)
    previous = START + 1.0
    fire = trigger.next_fire(START + 1000.25, previous)
    assert fire is not None
    assert on_grid(fire, START, 1.0, 1001)
    assert trigger.skipped(previous, fire) == 999


def test_interval_when_now_is_just_before_the_next_point_nothing_is_skipped() -> None:
    trigger = Interval(10.0, start=START)
    fire = trigger.next_fire(START + 19.5, START + 10.0)
    assert fire == START + 20.0
    assert trigger.skipped(START + 10.0, fire) == 0


def test_interval_grid_point_equal_to_now_is_still_due() -> None:
    """A run that took exactly two intervals: grid point 3 is due right now, not skipped.

    (Exactly representable numbers, so no rounding is involved.) When the previous run ends
    exactly on grid point 2, point 2 is returned (``fire < now`` is false); the same must hold
    for point 3 after a longer run, or one more tick than necessary is skipped.
    """
    trigger = Interval(2.0, start=1000.0)
    assert trigger.next_fire(1004.0, 1002.0) == 1004.0  # one interval: point 2 is due
    fire = trigger.next_fire(1006.0, 1002.0)  # two intervals: point 3 is due
    assert fire == 1006.0
    assert trigger.skipped(1002.0, fire) == 1


def test_interval_first_fire_after_a_late_start_is_in_the_future() -> None:
    trigger = Interval(5.0, start=START)
    fire = trigger.next_fire(START + 12.0, None)
    assert fire == START + 15.0


def test_interval_describe() -> None:
    assert Interval(2.5, start=START).describe() == {"interval": 2.5}


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, -math.inf, math.nan])
def test_interval_rejects_non_positive_or_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="interval must be a positive number"):
        Interval(bad, start=START)


# ---------------------------------------------------------------- AtTimes


def test_at_times_fire_in_order_then_end() -> None:
    times = (START + 1, START + 5, START + 60)
    trigger = AtTimes(times)
    assert trigger.kind == "at_time"
    fires = []
    previous: float | None = None
    while (fire := trigger.next_fire(START, previous)) is not None:
        fires.append(fire)
        previous = fire
    assert fires == list(times)
    assert trigger.next_fire(START + 1000, times[-1]) is None


def test_at_times_unsorted_input_sorted_by_the_caller_fires_in_order() -> None:
    given = [START + 30, START + 10, START + 20]
    trigger = AtTimes(tuple(sorted(given)))
    assert trigger.next_fire(START, None) == START + 10
    assert trigger.next_fire(START, START + 10) == START + 20
    assert trigger.next_fire(START, START + 20) == START + 30
    assert trigger.next_fire(START, START + 30) is None


def test_at_times_each_entry_fires_once_even_when_now_is_late() -> None:
    """A fire that is overdue (the loop was busy) still happens, once; nothing is dropped."""
    trigger = AtTimes((START + 1, START + 2))
    assert trigger.next_fire(START + 100, None) == START + 1
    assert trigger.next_fire(START + 100, START + 1) == START + 2
    assert trigger.next_fire(START + 100, START + 2) is None


def test_at_times_single_and_empty() -> None:
    assert AtTimes((START,)).next_fire(START - 1, None) == START
    assert AtTimes((START,)).next_fire(START - 1, START) is None
    assert AtTimes(()).next_fire(START, None) is None


def test_at_times_describe() -> None:
    assert AtTimes((START + 1, START + 2)).describe() == {"at_time": [START + 1, START + 2]}


def test_at_times_rejects_unsorted() -> None:
    with pytest.raises(ValueError, match="sorted"):
        AtTimes((START + 2, START + 1))
