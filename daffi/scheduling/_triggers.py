"""Triggers: small objects that say when a schedule fires next.

A trigger answers one question, :meth:`Trigger.next_fire`: given the wall-clock time now (UTC
epoch seconds) and the fire it last produced, when is the next fire? ``None`` means the
schedule is over. The scheduler owns sleeping, running and cancelling; a cron trigger can be
added by writing one more class with the same method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

__all__ = ["AtTimes", "Interval", "Trigger"]


class Trigger(Protocol):
    """When a schedule fires."""

    @property
    def kind(self) -> str:
        """A short name for listings: ``"interval"``, ``"at_time"``, ..."""

    def next_fire(self, now: float, previous: float | None) -> float | None:
        """The next fire time (UTC epoch seconds) after ``previous``, not before ``now``
        unless it is still due; ``None`` when there is none."""

    def describe(self) -> dict[str, object]:
        """Plain data for listings (``get_scheduled_tasks``)."""


@dataclass(frozen=True)
class Interval:
    """Fire at ``start + k * interval`` for k = 1, 2, ... (fixed rate: no drift).

    When a run overruns, the fire times it missed are skipped: the next fire is the next
    point of the grid that is not in the past, so runs never overlap and never bunch up.
    """

    interval: float
    start: float
    kind: str = "interval"

    def __post_init__(self) -> None:
        if not (self.interval > 0 and math.isfinite(self.interval)):
            raise ValueError(f"interval must be a positive number of seconds, not {self.interval}")

    def next_fire(self, now: float, previous: float | None) -> float | None:
        after = self.start if previous is None else previous
        k = math.floor((after - self.start) / self.interval + 1e-9) + 1
        fire = self.start + k * self.interval
        if fire < now:
            # Missed grid points (a run overran, or the process was suspended): jump to the
            # first point that is still ahead.
            k = math.ceil((now - self.start) / self.interval)
            fire = self.start + k * self.interval
        return fire

    def skipped(self, previous: float, fire: float) -> int:
        """How many grid points lie strictly between ``previous`` and ``fire``."""
        return max(round((fire - previous) / self.interval) - 1, 0)

    def describe(self) -> dict[str, object]:
        return {"interval": self.interval}


@dataclass(frozen=True)
class AtTimes:
    """Fire once at each of ``times`` (UTC epoch seconds, ascending)."""

    times: tuple[float, ...]
    kind: str = "at_time"

    def __post_init__(self) -> None:
        if list(self.times) != sorted(self.times):
            raise ValueError("at_time timestamps must be sorted")

    def next_fire(self, now: float, previous: float | None) -> float | None:
        for fire in self.times:
            if previous is None or fire > previous:
                return fire
        return None

    def describe(self) -> dict[str, object]:
        return {"at_time": list(self.times)}
