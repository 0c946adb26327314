"""What bounds a recurring schedule: when it may start and must end, how many runs it has,
how much random delay each run gets, and what happens to runs it could not start on time
(``PERIOD(start=, end=, max_runs=, jitter=, misfire_grace=, coalesce=)``)."""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = ["Bounds", "check_bounds"]


@dataclass(frozen=True)
class Bounds:
    """A schedule's bounds (all optional).

    Attributes:
        start: no run before this POSIX time; an ``interval`` grid starts there (its first
            run is at ``start``).
        end: no run after this POSIX time: the schedule ends.
        max_runs: the schedule ends after this many runs.
        jitter: each run starts up to this many seconds (uniformly at random) after its
            time, so that many schedules with the same time do not all start at once; the
            times themselves do not move.
        misfire_grace: how late (seconds) a run may still start when the node could not
            start it on time (its loop was busy, it was suspended, the previous run
            overran); a time missed by more is skipped (counted, and logged). None (the
            default): an ``interval`` or ``cron`` schedule skips every time that has passed,
            an ``at_time`` schedule runs each time however late.
        coalesce: for ``interval`` and ``cron`` with a ``misfire_grace``: several missed
            times still within it make one run (the default), or one run each (False).
    """

    start: float | None = None
    end: float | None = None
    max_runs: int | None = None
    jitter: float = 0.0
    misfire_grace: float | None = None
    coalesce: bool = True

    def describe(self) -> dict[str, Any]:
        """The bounds that are set, for listings."""
        info: dict[str, Any] = {}
        if self.start is not None:
            info["start"] = self.start
        if self.end is not None:
            info["end"] = self.end
        if self.max_runs is not None:
            info["max_runs"] = self.max_runs
        if self.jitter:
            info["jitter"] = self.jitter
        if self.misfire_grace is not None:
            info["misfire_grace"] = self.misfire_grace
            info["coalesce"] = self.coalesce
        return info


def _moment(value: object, what: str) -> float:
    if isinstance(value, datetime):
        return value.timestamp()  # aware: exact; naive: local time, as for at_time
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        moment = float(value)
        if math.isfinite(moment):
            return moment
    raise ValueError(
        f"{what} {value!r} is not a time: give a POSIX timestamp (e.g. time.time() + 60) or a "
        "datetime"
    )


def check_bounds(
    start: object = None,
    end: object = None,
    max_runs: object = None,
    jitter: object = None,
    misfire_grace: object = None,
    coalesce: object = True,
    *,
    now: float | None = None,
) -> Bounds:
    """The bounds these arguments give, checked.

    Raises:
        ValueError: a bound that is not a time, an ``end`` in the past or not after
            ``start``, a ``max_runs`` that is not a positive int, a negative ``jitter``.
    """
    now = time.time() if now is None else now
    first = None if start is None else _moment(start, "PERIOD start")
    last = None if end is None else _moment(end, "PERIOD end")
    if last is not None and last <= now:
        raise ValueError(f"PERIOD end {last!r} is in the past (now is {now!r})")
    if first is not None and last is not None and last <= first:
        raise ValueError(f"PERIOD end {last!r} is not after its start {first!r}")
    if max_runs is not None and not (
        isinstance(max_runs, int) and not isinstance(max_runs, bool) and max_runs >= 1
    ):
        raise ValueError(f"PERIOD max_runs must be a positive int, not {max_runs!r}")
    if not isinstance(coalesce, bool):
        raise ValueError(f"PERIOD coalesce must be True or False, not {coalesce!r}")
    return Bounds(
        first,
        last,
        max_runs if isinstance(max_runs, int) else None,
        _seconds(jitter, "PERIOD jitter"),
        None if misfire_grace is None else _seconds(misfire_grace, "PERIOD misfire_grace"),
        coalesce,
    )


def _seconds(value: object, what: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta | str | int | float) and not isinstance(value, bool):
        from daffi.scheduling._durations import parse_duration

        return parse_duration(value, what=what, allow_zero=True)
    raise ValueError(f"{what} must be a duration, not {value!r}")
