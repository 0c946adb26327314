"""Parse durations given as numbers, `timedelta`s or strings such as ``"1m 24s"``."""

from __future__ import annotations

import math
import numbers
import re
from datetime import timedelta

from daffi.exceptions import InitializationError

__all__ = ["parse_duration"]

# Seconds per unit as (numerator, denominator), and every spelling of each unit (matched
# after lower-casing). Text is summed exactly, with fractions.Fraction, imported on first use.
_UNIT_SECONDS: dict[str, tuple[int, int]] = {
    "weeks": (7 * 24 * 3600, 1),
    "days": (24 * 3600, 1),
    "hours": (3600, 1),
    "minutes": (60, 1),
    "seconds": (1, 1),
    "milliseconds": (1, 10**3),
    "microseconds": (1, 10**6),
    "nanoseconds": (1, 10**9),
}
_UNIT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "weeks": ("w", "week", "weeks"),
    "days": ("d", "day", "days"),
    "hours": ("h", "hr", "hrs", "hour", "hours"),
    "minutes": ("m", "min", "mins", "minute", "minutes"),
    "seconds": ("s", "sec", "secs", "second", "seconds"),
    "milliseconds": ("ms", "msec", "msecs", "millisecond", "milliseconds"),
    # U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU both appear in the wild.
    "microseconds": ("us", "\u00b5s", "\u03bcs", "usec", "usecs", "microsecond", "microseconds"),
    "nanoseconds": ("ns", "nsec", "nsecs", "nanosecond", "nanoseconds"),
}
_UNITS: dict[str, str] = {
    spelling: unit for unit, spellings in _UNIT_SPELLINGS.items() for spelling in spellings
}

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_BARE_NUMBER = re.compile(rf"[+-]?{_NUMBER}")
_PART = re.compile(rf"(?P<number>{_NUMBER})\s*(?P<unit>[^\W\d_]+)")
# Between parts: nothing ("1m24s"), spaces ("1m 24s") or one comma ("1m, 24s").
_SEPARATOR = re.compile(r"\s*,\s*|\s*")

_EXAMPLES = (
    "a number of seconds (5, 2.5, '5'), a datetime.timedelta, or a string such as "
    "'5s', '1m24s', '1m 24s', '1.2 minutes', '90 sec', '2h', '1h30m', '250ms' or '1d'"
)
_KNOWN_UNITS = "w, d, h, m, s, ms, us, ns, or their names (weeks, days, hours, minutes, ...)"
_MAX_SHOWN = 60


def parse_duration(
    value: int | float | timedelta | str,
    *,
    what: str = "duration",
    allow_zero: bool = False,
) -> float:
    """Convert a duration to seconds.

    Accepted forms: an int or float of seconds (not a bool), a `datetime.timedelta`, a numeric
    string (``"5"``, ``"2.5"``), or a string of ``<number><unit>`` parts, case-insensitive,
    optionally separated by spaces or commas, each unit at most once, in any order:
    ``"5s"``, ``"1m24s"``, ``"1m 24s"``, ``"1.2 minutes"``, ``"90 sec"``, ``"1h, 30m"``,
    ``"250ms"``, ``"100us"``, ``"5000ns"``, ``"1d"``, ``"1w"``.

    Units: w/week(s), d/day(s), h/hr(s)/hour(s), m/min(s)/minute(s), s/sec(s)/second(s),
    ms/msec(s)/millisecond(s), us/µs/usec(s)/microsecond(s), ns/nsec(s)/nanosecond(s).

    Args:
        value: The duration.
        what: What the duration is for, used in error messages (e.g. ``"timeout"``).
        allow_zero: Accept a zero duration (negative durations are always rejected).

    Returns:
        The duration in seconds, finite and greater than zero (or equal to zero when
        ``allow_zero`` is true).

    Raises:
        InitializationError: ``value`` has another type, cannot be parsed, is NaN or
            infinite, negative, or zero while ``allow_zero`` is false.
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, timedelta, str)):
        raise InitializationError(
            f"Invalid {what} {_show(value)} of type {type(value).__name__}: expected {_EXAMPLES}."
        )
    try:
        if isinstance(value, str):
            seconds = _parse_text(value, what)
        elif isinstance(value, timedelta):
            seconds = value.total_seconds()
        else:
            seconds = float(value)
    except OverflowError:
        raise InitializationError(
            f"Invalid {what} {_show(value)}: the number is too large or too long."
        ) from None
    if not math.isfinite(seconds):
        raise InitializationError(
            f"Invalid {what} {_show(value)}: it must be a finite number of seconds; "
            f"expected {_EXAMPLES}."
        )
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise InitializationError(
            f"Invalid {what} {_show(value)}: it must be {bound} seconds; expected {_EXAMPLES}."
        )
    return seconds


def _parse_text(value: str, what: str) -> float:
    text = value.strip().lower()
    if _BARE_NUMBER.fullmatch(text):
        return float(text)
    # A sign is parsed so that "-5s" is reported as negative rather than as unparseable.
    sign = -1 if text.startswith("-") else 1
    if text.startswith(("+", "-")):
        text = text[1:].lstrip()
    from fractions import Fraction

    total = Fraction(0)
    seen: dict[str, str] = {}
    pos = 0
    while True:
        part = _PART.match(text, pos)
        if part is None:
            raise _unparseable(value, what, text, pos)
        spelling = part.group("unit")
        unit = _UNITS.get(spelling)
        if unit is None:
            raise InitializationError(
                f"Invalid {what} {_show(value)}: unknown time unit {spelling!r}; "
                f"known units are {_KNOWN_UNITS}. Expected {_EXAMPLES}."
            )
        if unit in seen:
            raise InitializationError(
                f"Invalid {what} {_show(value)}: {unit} are given twice "
                f"({seen[unit]!r} and {spelling!r}); give each unit at most once."
            )
        seen[unit] = spelling
        try:
            total += Fraction(part.group("number")) * Fraction(*_UNIT_SECONDS[unit])
        except ValueError:  # a number with more digits than int() accepts
            raise OverflowError from None
        pos = part.end()
        if pos == len(text):
            return sign * float(total)
        separator = _SEPARATOR.match(text, pos)
        if separator is not None:  # always, as the pattern also matches ""
            pos = separator.end()


def _unparseable(value: str, what: str, text: str, pos: int) -> InitializationError:
    if not value.strip():
        return InitializationError(
            f"Invalid {what} {_show(value)}: it is empty; expected {_EXAMPLES}."
        )
    if 0 < pos == len(text):
        return InitializationError(
            f"Invalid {what} {_show(value)}: it ends with a separator; expected {_EXAMPLES}."
        )
    rest = f" (cannot parse {_show(text[pos:])})" if pos < len(text) else ""
    return InitializationError(f"Invalid {what} {_show(value)}{rest}: expected {_EXAMPLES}.")


def _show(value: object) -> str:
    shown = repr(value)
    if len(shown) > _MAX_SHOWN:
        shown = f"{shown[: _MAX_SHOWN - 4]}...{shown[-1]}"
    return shown
