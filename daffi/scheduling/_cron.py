"""Cron schedules in a time zone: ``PERIOD(cron="*/5 * * * *", timezone="Europe/Berlin")``.

Expressions are read by `cronsim <https://pypi.org/project/cronsim/>`_: five fields (minute,
hour, day of month, month, day of week), or six with seconds first; ``L``, ``LW``, ``#`` and
names (``MON``, ``JAN``) work. Times are computed in the schedule's time zone (an IANA name,
through :mod:`zoneinfo`; ``tzdata`` provides the database where the system has none), and
fire at the POSIX instant of that wall-clock time.

**Daylight saving time** follows Debian cron, as cronsim does:

* a schedule at **fixed times** (its minute and hour fields are not ``*`` or ``*/n``, five
  fields) runs by the wall clock: a time in the hour that is **skipped** (spring forward)
  runs once, at the first minute after the gap (02:30 → 03:00 in Berlin); a time in the
  hour that is **repeated** (fall back) runs once, at its first occurrence;
* any other schedule (``*/5 * * * *``, ``0 * * * *`` with ``*`` hours, six fields) runs by
  elapsed time: every five minutes of real time, so twelve runs in the repeated hour's two
  passes and none in the hour that does not exist.

No run is lost or doubled otherwise; ``tests/unit/test_cron.py`` walks both transitions of a
year on a fake clock.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

__all__ = ["Cron", "check_cron"]

#: how many cron points :meth:`Cron.skipped` counts at most
_COUNT_LIMIT = 100_000


def _zone(name: str) -> tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def check_cron(expression: str, timezone: str) -> tuple[str, str]:
    """``expression`` and ``timezone``, checked (both normalised: stripped).

    Raises:
        ValueError: an unknown time zone, or an expression cronsim cannot read (the
            message names the field), or one that never fires.
    """
    from zoneinfo import ZoneInfoNotFoundError

    from cronsim import CronSim, CronSimError

    expression = " ".join(expression.split())
    name = timezone.strip()
    try:
        zone = _zone(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {timezone!r}: give an IANA name such as 'Europe/Berlin' or "
            f"'UTC' ({exc})"
        ) from None
    try:
        next(CronSim(expression, datetime.now(zone)))
    except CronSimError as exc:
        raise ValueError(
            f"malformed cron expression {expression!r}: {exc} (five fields: minute hour "
            "day-of-month month day-of-week, e.g. '*/5 * * * *')"
        ) from None
    except StopIteration:
        raise ValueError(f"cron expression {expression!r} never fires") from None
    return expression, name


@functools.lru_cache(maxsize=4096)
def _after(expression: str, timezone: str, moment: float) -> float | None:
    """The first time ``expression`` gives in ``timezone`` strictly after ``moment``.

    Cached: schedules with the same expression fire together and ask the same question (10,000
    of ``* * * * * *`` compute one next time a second, not 10,000).
    """
    from cronsim import CronSim

    try:
        return next(
            CronSim(expression, datetime.fromtimestamp(moment, _zone(timezone)))
        ).timestamp()
    except StopIteration:
        return None


@dataclass(frozen=True)
class Cron:
    """Fire at the times a cron ``expression`` gives in time zone ``timezone``."""

    expression: str
    timezone: str = "UTC"
    kind: str = "cron"
    _tz: tzinfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tz", _zone(self.timezone))

    def after(self, moment: float) -> float | None:
        """The first fire strictly after POSIX time ``moment`` (None: none within 50 years)."""
        return _after(self.expression, self.timezone, moment)

    def next_fire(self, now: float, previous: float | None) -> float | None:
        """The next fire after ``previous``; fires missed meanwhile (the node was busy or
        paused) are skipped: then the first one after ``now``."""
        fire = self.after(now if previous is None else previous)
        if fire is not None and fire < now:
            fire = self.after(now)
        return fire

    def skipped(self, previous: float, fire: float) -> int:
        """How many fires lie strictly between ``previous`` and ``fire``."""
        following = self.after(previous)
        if following is None or following >= fire:
            return 0  # (each run, but after a miss)
        from cronsim import CronSim

        count = 0
        for moment in CronSim(self.expression, datetime.fromtimestamp(previous, self._tz)):
            if moment.timestamp() >= fire or count >= _COUNT_LIMIT:
                break
            count += 1
        return count

    def describe(self) -> dict[str, Any]:
        return {"cron": self.expression, "timezone": self.timezone}
