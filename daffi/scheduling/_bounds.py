"""What bounds a recurring schedule: when it may start and must end, how many runs it has,
and how much random delay each run gets (``PERIOD(start=, end=, max_runs=, jitter=)``)."""

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
    """

    start: float | None = None
    end: float | None = None
    max_runs: int | None = None
    jitter: float = 0.0

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
    spread = 0.0
    if jitter is not None:
        from daffi.scheduling._durations import parse_duration

        if isinstance(jitter, timedelta | str | int | float) and not isinstance(jitter, bool):
            spread = parse_duration(jitter, what="PERIOD jitter", allow_zero=True)
        else:
            raise ValueError(f"PERIOD jitter must be a duration, not {jitter!r}")
    return Bounds(first, last, max_runs if isinstance(max_runs, int) else None, spread)
