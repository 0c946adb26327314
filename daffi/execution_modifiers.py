"""Execution modifiers: how a remote call runs (`FG`, `BG`, `BROADCAST`, `PERIOD`).

Modifiers are small immutable values, validated when they are built: invalid arguments raise
`daffi.exceptions.InitializationError` (a `ValueError`). Durations accept seconds as int or
float, a `datetime.timedelta`, or strings such as ``"5s"``, ``"1m 24s"`` or ``"1.2 minutes"``
(see `daffi.scheduling.parse_duration`) and are stored as float seconds.

A modifier class may stand for its default instance (``g.call.f(1) & FG`` is
``g.call.f(1) & FG()``), except `PERIOD`, which needs ``at_time`` or ``interval``;
`normalize_modifier` does that conversion.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Final, Literal, TypeAlias

from daffi.exceptions import InitializationError
from daffi.scheduling._wallclock import utcnow_idiom_hint, utcnow_idiom_offset

__all__ = [
    "ALL_EXEC_MODIFIERS",
    "AT_TIME_PAST_TOLERANCE",
    "BG",
    "BROADCAST",
    "FG",
    "MAX_AT_TIMES",
    "MIN_PERIOD_INTERVAL",
    "PERIOD",
    "AtTime",
    "Duration",
    "ExecModifier",
    "is_exec_modifier",
    "is_exec_modifier_type",
    "normalize_modifier",
]

logger: logging.Logger = logging.getLogger("daffi")

#: The shortest ``PERIOD`` interval a requester may ask for, and every node's default minimum
#: (``Global(min_period_interval=...)``), in seconds.
MIN_PERIOD_INTERVAL: Final = 0.001

#: A duration as users give it: seconds, a timedelta, or a string such as ``"1m 24s"``.
Duration: TypeAlias = int | float | timedelta | str
#: One `PERIOD` firing time: a POSIX timestamp (``time.time()``) or a datetime (naive: the
#: host's local time, as Python reads it).
AtTime: TypeAlias = int | float | datetime

#: Most timestamps one `PERIOD(at_time=...)` may hold.
MAX_AT_TIMES: Final = 1000
#: How many seconds in the past an ``at_time`` timestamp may be and still be accepted.
#: A timestamp computed as "now" (``time.time()``, or a datetime truncated to whole seconds)
#: is already slightly in the past when `PERIOD` reads the clock again; such a timestamp is
#: due at once rather than an error. Anything older is a mistake (often a local time read as
#: UTC) and is rejected.
AT_TIME_PAST_TOLERANCE: Final = 1.0


@dataclass(frozen=True, slots=True, init=False)
class FG:
    """Run the call in the foreground: the caller waits for the result.

    Attributes:
        timeout: Seconds to wait for the result, or None to wait as long as it takes. When it
            expires the caller gets `daffi.exceptions.TimeoutError`.
        receiver: Name of the process that must run the call, or None to let the controller
            choose among the nodes offering the callback.
    """

    timeout: float | None
    receiver: str | None

    def __init__(self, timeout: Duration | None = None, receiver: str | None = None) -> None:
        """Validate and normalise the arguments.

        Raises:
            InitializationError: ``timeout`` is not a positive duration, or ``receiver`` is
                not a non-empty string.
        """
        object.__setattr__(self, "timeout", _optional_duration(timeout, "FG timeout"))
        object.__setattr__(self, "receiver", _receiver(receiver, "FG"))


@dataclass(frozen=True, slots=True, init=False)
class BG:
    """Run the call in the background: the caller gets an `AsyncResult` at once.

    Attributes:
        timeout: Seconds the call may take from when it is sent (then the remote execution
            is cancelled and the result raises TimeoutError), or None for no limit.
        eta: Seconds to wait before sending the call (0 or None: send at once).
        return_result: False for fire-and-forget: the caller gets None and no reply is sent.
        receiver: Name of the process that must run the call, or None to let the controller
            choose.
    """

    timeout: float | None
    eta: float | None
    return_result: bool
    receiver: str | None

    def __init__(
        self,
        timeout: Duration | None = None,
        eta: Duration | None = None,
        return_result: bool = True,
        receiver: str | None = None,
    ) -> None:
        """Validate and normalise the arguments.

        Raises:
            InitializationError: ``timeout`` is not a positive duration, ``eta`` is negative
                or not a duration, ``return_result`` is not a bool, or ``receiver`` is not a
                non-empty string.
        """
        object.__setattr__(self, "timeout", _optional_duration(timeout, "BG timeout"))
        object.__setattr__(self, "eta", _optional_duration(eta, "BG eta", allow_zero=True))
        object.__setattr__(self, "return_result", _flag(return_result, "BG return_result"))
        object.__setattr__(self, "receiver", _receiver(receiver, "BG"))


@dataclass(frozen=True, slots=True, init=False)
class BROADCAST:
    """Run the call on every node that offers the callback, except the caller.

    Attributes:
        eta: Seconds to wait before sending the call (0 or None: send at once).
        timeout: Seconds to wait for all results, or None for no limit.
        return_result: False for fire-and-forget; otherwise the caller gets
            ``{process_name: result}``.
    """

    eta: float | None
    timeout: float | None
    return_result: bool

    def __init__(
        self,
        eta: Duration | None = None,
        timeout: Duration | None = None,
        return_result: bool = True,
    ) -> None:
        """Validate and normalise the arguments.

        Raises:
            InitializationError: ``eta`` is negative or not a duration, ``timeout`` is not a
                positive duration, or ``return_result`` is not a bool.
        """
        object.__setattr__(self, "eta", _optional_duration(eta, "BROADCAST eta", allow_zero=True))
        object.__setattr__(self, "timeout", _optional_duration(timeout, "BROADCAST timeout"))
        object.__setattr__(self, "return_result", _flag(return_result, "BROADCAST return_result"))


@dataclass(frozen=True, slots=True, init=False)
class PERIOD:
    """Schedule the call on the executing node, at fixed times or at a fixed interval.

    Exactly one of ``at_time``, ``interval`` and ``cron`` is set.

    Attributes:
        at_time: POSIX timestamps, sorted ascending, without duplicates; each fires once.
        interval: Seconds between runs (> 0).
        receiver: Name of the process that must run the schedule, or None to let the
            controller choose.
        cron: A cron expression (five fields, or six with seconds first).
        timezone: The IANA time zone ``cron`` is read in (``"UTC"`` by default).
        start: No run before this POSIX time (``interval``: the first run is then).
        end: No run after this POSIX time: the schedule ends.
        max_runs: The schedule ends after this many runs.
        jitter: Each run starts up to this many seconds (at random) after its time.
        misfire_grace: How late a missed run may still start (None: the kind's default).
        coalesce: Missed runs within ``misfire_grace`` make one run (True) or one each.
        durable: The executor keeps the schedule in its store and resumes it when it
            restarts.
    """

    at_time: tuple[float, ...] | None
    interval: float | None
    receiver: str | None
    cron: str | None
    timezone: str | None
    start: float | None
    end: float | None
    max_runs: int | None
    jitter: float
    misfire_grace: float | None
    coalesce: bool
    durable: bool

    def __init__(
        self,
        at_time: AtTime | Sequence[AtTime] | AbstractSet[AtTime] | None = None,
        interval: Duration | None = None,
        receiver: str | None = None,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        start: float | datetime | None = None,
        end: float | datetime | None = None,
        max_runs: int | None = None,
        jitter: Duration | None = None,
        misfire_grace: Duration | None = None,
        coalesce: bool = True,
        durable: bool = False,
    ) -> None:
        """Validate and normalise the arguments.

        Args:
            at_time: One timestamp or a collection of them (at most `MAX_AT_TIMES`): POSIX
                timestamps (seconds since the epoch, e.g. ``time.time() + 60``) or datetimes.
                Aware datetimes are converted exactly; naive ones are read as the host's
                local time, as Python reads them. Each must be in the future (up to
                `AT_TIME_PAST_TOLERANCE` seconds in the past is accepted). A time that looks
                computed with daffi 2's ``datetime.utcnow().timestamp()`` on a host not on
                UTC (off by exactly the host's UTC offset) is logged as a warning, or named
                in the error when it is in the past.
            interval: The time between runs, e.g. ``10``, ``"1m 30s"`` or a timedelta.
            receiver: Name of the process that must run the schedule.
            cron: A cron expression, e.g. ``"*/5 * * * *"`` (every five minutes) or
                ``"30 2 * * MON-FRI"`` (see ``docs/scheduling.md`` for the fields and for
                daylight saving time).
            timezone: The IANA time zone ``cron`` is read in, e.g. ``"Europe/Berlin"``
                (default ``"UTC"``); only with ``cron``.
            start: No run before this time (a POSIX timestamp or a datetime); an
                ``interval`` schedule's first run is then. Only with ``interval`` or
                ``cron``.
            end: No run after this time: the schedule ends. Only with ``interval`` or
                ``cron``.
            max_runs: The schedule ends after this many runs.
            jitter: Each run starts up to this long (uniformly at random) after its time;
                the times themselves do not move.
            misfire_grace: How late a run the executor could not start on time (its loop
                was busy, it was suspended, the previous run overran) may still start; a
                time missed by more is skipped. Default: ``interval`` and ``cron`` skip
                every missed time, ``at_time`` runs each however late.
            coalesce: With ``misfire_grace``, missed times of an ``interval`` or ``cron``
                schedule make one run (default) or one run each.
            durable: The executor keeps the schedule in an SQLite file in its state
                directory (``Global(state_dir=...)``) and resumes it when it starts again
                under the same one; the times it was down for follow ``misfire_grace`` and
                ``coalesce``. The arguments must be msgpack values.

        Raises:
            InitializationError: Not exactly one of ``at_time``, ``interval`` and ``cron``
                is given, or one of them is invalid (an unknown time zone, a malformed cron
                expression), ``timezone`` is given without ``cron``, or ``receiver`` is not
                a non-empty string.
        """
        given = [
            name
            for name, value in (("at_time", at_time), ("interval", interval), ("cron", cron))
            if value is not None
        ]
        if not given:
            raise InitializationError(
                "PERIOD needs one of 'at_time', 'interval' or 'cron', e.g. "
                "PERIOD(interval='10s'), PERIOD(at_time=time.time() + 60) or "
                "PERIOD(cron='*/5 * * * *')."
            )
        if len(given) > 1:
            raise InitializationError(
                f"PERIOD takes one of 'at_time', 'interval' and 'cron', not {' and '.join(given)}; "
                "use one PERIOD call per schedule."
            )
        if timezone is not None and cron is None:
            raise InitializationError(
                "PERIOD timezone applies to cron schedules only (at_time takes aware datetimes "
                "or POSIX timestamps; an interval does not depend on the time zone)."
            )
        if (start is not None or end is not None) and at_time is not None:
            raise InitializationError(
                "PERIOD start and end bound interval and cron schedules; at_time lists its "
                "times itself."
            )
        from daffi.scheduling._bounds import check_bounds

        try:
            bounds = check_bounds(start, end, max_runs, jitter, misfire_grace, coalesce)
        except ValueError as exc:
            raise InitializationError(str(exc)) from None
        object.__setattr__(self, "start", bounds.start)
        object.__setattr__(self, "end", bounds.end)
        object.__setattr__(self, "max_runs", bounds.max_runs)
        object.__setattr__(self, "jitter", bounds.jitter)
        object.__setattr__(self, "misfire_grace", bounds.misfire_grace)
        object.__setattr__(self, "coalesce", bounds.coalesce)
        if not isinstance(durable, bool):
            raise InitializationError(f"PERIOD durable must be True or False, not {durable!r}")
        object.__setattr__(self, "durable", durable)
        object.__setattr__(self, "cron", None)
        object.__setattr__(self, "timezone", None)
        if cron is not None:
            if not isinstance(cron, str) or (
                timezone is not None and not isinstance(timezone, str)
            ):
                raise InitializationError(
                    f"PERIOD cron and timezone must be strings, not {cron!r} and {timezone!r}"
                )
            from daffi.scheduling._cron import check_cron

            try:
                expression, zone = check_cron(cron, timezone if timezone is not None else "UTC")
            except ValueError as exc:
                raise InitializationError(f"PERIOD {exc}") from None
            object.__setattr__(self, "cron", expression)
            object.__setattr__(self, "timezone", zone)
        object.__setattr__(self, "at_time", None if at_time is None else _at_times(at_time))
        seconds = _optional_duration(interval, "PERIOD interval")
        if seconds is not None and seconds < MIN_PERIOD_INTERVAL:
            raise InitializationError(
                f"PERIOD interval {seconds} s is below the minimum of {MIN_PERIOD_INTERVAL} s "
                "(1 ms): a schedule that fast would keep the executing node busy"
            )
        object.__setattr__(self, "interval", seconds)
        object.__setattr__(self, "receiver", _receiver(receiver, "PERIOD"))

    def __repr__(self) -> str:
        if self.cron is not None:
            fields = f"cron={self.cron!r}, timezone={self.timezone!r}, receiver={self.receiver!r}"
        else:
            fields = (
                f"at_time={self.at_time!r}, interval={self.interval!r}, receiver={self.receiver!r}"
            )
        for name in ("start", "end", "max_runs"):
            if getattr(self, name) is not None:
                fields += f", {name}={getattr(self, name)!r}"
        if self.jitter:
            fields += f", jitter={self.jitter!r}"
        if self.misfire_grace is not None:
            fields += f", misfire_grace={self.misfire_grace!r}, coalesce={self.coalesce!r}"
        if self.durable:
            fields += ", durable=True"
        return f"PERIOD({fields})"

    @property
    def kind(self) -> Literal["interval", "at_time", "cron"]:
        """``"interval"``, ``"at_time"`` or ``"cron"``: which kind of schedule this is."""
        if self.cron is not None:
            return "cron"
        return "interval" if self.interval is not None else "at_time"


#: An execution modifier instance.
ExecModifier: TypeAlias = FG | BG | BROADCAST | PERIOD

#: Every execution modifier class.
ALL_EXEC_MODIFIERS: Final = (FG, BG, BROADCAST, PERIOD)


def is_exec_modifier(value: object) -> bool:
    """Return whether ``value`` is an execution modifier class or instance."""
    if isinstance(value, type):
        return issubclass(value, ALL_EXEC_MODIFIERS)
    return isinstance(value, ALL_EXEC_MODIFIERS)


def is_exec_modifier_type(value: object, modifier_type: type) -> bool:
    """Return whether ``value`` is the modifier class ``modifier_type`` or an instance of it.

    For example ``is_exec_modifier_type(BG, BG)`` and ``is_exec_modifier_type(BG(eta=1), BG)``
    are true, ``is_exec_modifier_type(FG(), BG)`` is false.
    """
    if isinstance(value, type):
        return issubclass(value, modifier_type)
    return isinstance(value, modifier_type)


def normalize_modifier(value: object) -> ExecModifier:
    """Return the modifier instance that ``value`` stands for.

    Args:
        value: A modifier instance (returned as is) or one of the classes `FG`, `BG` and
            `BROADCAST` (which stand for their default instance).

    Returns:
        The modifier instance.

    Raises:
        InitializationError: ``value`` is the bare `PERIOD` class (it has no default), or not
            an execution modifier at all.
    """
    if isinstance(value, (FG, BG, BROADCAST, PERIOD)):
        return value
    if value is FG:  # the default of every fetcher: one shared (frozen) instance
        return _DEFAULT_FG
    if isinstance(value, type) and issubclass(value, PERIOD):
        raise InitializationError(
            "PERIOD cannot be used without arguments: give it 'at_time' or 'interval', "
            "e.g. PERIOD(interval='10s') or PERIOD(at_time=time.time() + 60)."
        )
    if isinstance(value, type) and issubclass(value, (FG, BG, BROADCAST)):
        return value()
    raise InitializationError(
        f"Invalid execution modifier {value!r} (of type {type(value).__name__}), expected one "
        "of FG, BG, BROADCAST, PERIOD, as a class (FG) or an instance (BG(timeout=5))."
    )


def _optional_duration(
    value: Duration | None, what: str, *, allow_zero: bool = False
) -> float | None:
    if value is None:
        return None
    from daffi.scheduling._durations import parse_duration  # loaded on first use

    return parse_duration(value, what=what, allow_zero=allow_zero)


def _receiver(value: object, owner: str) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    raise InitializationError(
        f"Invalid {owner} receiver {value!r}: expected the name of a process (a non-empty str) "
        "or None."
    )


def _flag(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    raise InitializationError(f"Invalid {what} {value!r}: expected True or False.")


def _at_times(value: object) -> tuple[float, ...]:
    if isinstance(value, (Sequence, AbstractSet)) and not isinstance(
        value, (str, bytes, bytearray)
    ):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise InitializationError(
            "PERIOD at_time is empty: give at least one timestamp, e.g. time.time() + 60."
        )
    if len(items) > MAX_AT_TIMES:
        raise InitializationError(
            f"PERIOD at_time has {len(items)} timestamps; at most {MAX_AT_TIMES} are allowed."
        )
    stamps = tuple(sorted({_timestamp(item) for item in items}))
    now = time.time()
    offset = utcnow_idiom_offset(stamps[0], now)
    if stamps[0] <= now - AT_TIME_PAST_TOLERANCE:
        why = (
            utcnow_idiom_hint(stamps[0], now, offset)
            if offset is not None
            else "every timestamp must be in the future"
        )
        raise InitializationError(
            f"PERIOD at_time {stamps[0]!r} ({_utc_text(stamps[0])}) is in the past (now is "
            f"{now!r}, {_utc_text(now)}): {why}. Give POSIX timestamps such as "
            "time.time() + 60, or a timezone-aware datetime."
        )
    if offset is not None:
        logger.warning(
            "PERIOD at_time %s; it is scheduled as given", utcnow_idiom_hint(stamps[0], now, offset)
        )
    return stamps


def _timestamp(value: object) -> float:
    if isinstance(value, datetime):
        # Aware: exact. Naive: the host's local time, as Python reads it.
        return value.timestamp()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        stamp = float(value)
        if math.isfinite(stamp):
            return stamp
    hint = ""
    if isinstance(value, timedelta):
        hint = " A timedelta is a delay, not a time: use time.time() + delay.total_seconds()."
    elif isinstance(value, date):
        hint = " A date has no time of day: use a datetime."
    elif isinstance(value, str):
        hint = " Strings are not accepted: give epoch seconds or a datetime."
    raise InitializationError(
        f"Invalid PERIOD at_time entry {value!r}: expected a POSIX timestamp (a finite int or "
        f"float, e.g. time.time() + 60) or a datetime.{hint}"
    )


def _utc_text(stamp: float) -> str:
    try:
        return datetime.fromtimestamp(stamp, timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return "out of the datetime range"


#: what a fetcher without a modifier uses (modifiers are frozen: one instance is shared)
_DEFAULT_FG = FG()
