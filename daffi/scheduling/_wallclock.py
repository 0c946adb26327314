"""What a time given to ``PERIOD(at_time=...)`` means, on any host's time zone.

* A number is a POSIX timestamp: seconds since the epoch, what ``time.time()`` returns. It
  means the same instant on every host.
* An aware ``datetime`` is converted exactly.
* A naive ``datetime`` is read as the host's local time, as Python reads it
  (``datetime.timestamp()``): ``datetime.now() + timedelta(minutes=5)`` is five minutes from
  now on every host.

daffi 2's scheduling page computed times with ``datetime.utcnow().timestamp()``. That value is
off by the host's UTC offset on a host not on UTC (``utcnow()`` gives the UTC wall clock,
which ``timestamp()`` then reads as local time): five hours late in New York, an hour in the
past in Berlin. :func:`utcnow_idiom_offset` recognises such a value, so the requester can say
so instead of firing at the wrong time in silence.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["describe_offset", "local_offset", "utcnow_idiom_hint", "utcnow_idiom_offset"]

#: how far from now (seconds) a time computed with the daffi 2 idiom may be meant to be, and
#: still be recognised: longer delays are read as they are given
_IDIOM_HORIZON = 6 * 3600.0


def local_offset(at: float) -> float:
    """The host's UTC offset (seconds east of UTC) at POSIX time ``at``."""
    offset = datetime.fromtimestamp(at).astimezone().utcoffset()
    return 0.0 if offset is None else offset.total_seconds()


def utcnow_idiom_offset(stamp: float, now: float) -> float | None:
    """The host's UTC offset if ``stamp`` looks computed with the daffi 2 idiom
    ``datetime.utcnow().timestamp()`` on this host (None: it does not, or the host is on UTC).

    Such a value is ``meant - offset``: it looks like it when ``stamp + offset`` is near now
    (within the idiom's horizon, and nearer than ``stamp`` itself), while ``stamp`` is at
    least half the offset away from now.
    """
    offset = local_offset(now)
    if offset == 0:
        return None
    meant = stamp + offset
    ahead = meant - now
    if not -60.0 <= ahead <= min(_IDIOM_HORIZON, abs(offset) / 2):
        return None
    if abs(stamp - now) < abs(offset) / 2:
        return None
    return offset


def describe_offset(offset: float) -> str:
    """``UTC-05:00``, ``UTC+05:30``."""
    sign = "+" if offset >= 0 else "-"
    minutes = round(abs(offset) / 60)
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def utcnow_idiom_hint(stamp: float, now: float, offset: float) -> str:
    """Why ``stamp`` looks like the idiom, and what to write instead."""
    meant = stamp + offset
    delay = f"{round(max(meant - now, 0.0), 1):g}"
    return (
        f"{_utc(stamp)} is {timedelta(seconds=round(abs(stamp - now)))} "
        f"{'after' if stamp > now else 'before'} now, which is this host's UTC offset "
        f"({describe_offset(offset)}, {_zone(now)}): it looks computed with "
        "datetime.utcnow().timestamp() (the daffi 2 idiom), which is off by the offset on a "
        f"host not on UTC. If you meant {delay} s from now, write time.time() + "
        f"{delay} or datetime.now(timezone.utc) + timedelta(seconds={delay})"
    )


def _zone(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().tzname() or "local time"


def _utc(stamp: float) -> str:
    try:
        return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return repr(stamp)
