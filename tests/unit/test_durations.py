"""`parse_duration`: every accepted form, and clear errors for everything else."""

from __future__ import annotations

import math
from datetime import timedelta
from fractions import Fraction

import pytest

from daffi.exceptions import InitializationError
from daffi.scheduling import parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        # numbers
        (5, 5.0),
        (2.5, 2.5),
        (0.001, 0.001),
        (Fraction(1, 4), 0.25),
        # timedelta
        (timedelta(seconds=3), 3.0),
        (timedelta(minutes=1, milliseconds=500), 60.5),
        # numeric strings
        ("5", 5.0),
        ("2.5", 2.5),
        (".5", 0.5),
        (" 7 ", 7.0),
        ("+3", 3.0),
        # single units, short and long names
        ("5s", 5.0),
        ("90 sec", 90.0),
        ("90 secs", 90.0),
        ("3 seconds", 3.0),
        ("1 second", 1.0),
        ("2m", 120.0),
        ("2 min", 120.0),
        ("2 mins", 120.0),
        ("1 minute", 60.0),
        ("1.2 minutes", 72.0),
        ("2h", 7200.0),
        ("2hr", 7200.0),
        ("2 hrs", 7200.0),
        ("1 hour", 3600.0),
        ("1.5h", 5400.0),
        ("1.5 hours", 5400.0),
        ("1d", 86400.0),
        ("2 days", 172800.0),
        ("1 day", 86400.0),
        ("1w", 604800.0),
        ("1 week", 604800.0),
        ("2 weeks", 1209600.0),
        ("250ms", 0.25),
        ("250 msec", 0.25),
        ("1 millisecond", 0.001),
        ("250 milliseconds", 0.25),
        ("100us", 0.0001),
        ("100\u00b5s", 0.0001),  # micro sign
        ("100\u03bcs", 0.0001),  # greek mu
        ("1 microsecond", 1e-6),
        ("100 microseconds", 0.0001),
        ("5000ns", 5e-6),
        ("1 nanosecond", 1e-9),
        ("5 nanoseconds", 5e-9),
        (".5s", 0.5),
        ("1.s", 1.0),
        # combinations
        ("1m24s", 84.0),
        ("1m 24s", 84.0),
        ("1m, 24s", 84.0),
        ("1m,24s", 84.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1 hour 30 minutes", 5400.0),
        ("1 hour, 30 minutes", 5400.0),
        ("1d 2h 3m 4s 5ms 6us 7ns", 93784.005006007),
        ("2h3m4s5ms6us7ns", 7384.005006007),
        ("1w1d", 691200.0),
        # order is free
        ("24s1m", 84.0),
        ("30 minutes 1 hour", 5400.0),
        # case-insensitive, surrounding space ignored
        ("10S", 10.0),
        ("1H30M", 5400.0),
        ("1 Hour 30 MINUTES", 5400.0),
        ("  5s  ", 5.0),
        ("\t1m\n24s ", 84.0),
    ],
)
def test_accepted_forms(value: int | float | timedelta | str, seconds: float) -> None:
    result = parse_duration(value)
    assert type(result) is float
    assert result == pytest.approx(seconds, rel=1e-12, abs=0)


def test_decimal_fractions_are_exact_where_floats_allow() -> None:
    # 1.2 * 60 in float arithmetic would give 71.99999999999999.
    assert parse_duration("1.2 minutes") == 72.0
    assert parse_duration("0.1h") == 360.0


def test_zero_allowed_only_on_request() -> None:
    for zero in (0, 0.0, "0", "0s", "0h 0m", timedelta(0)):
        with pytest.raises(InitializationError, match="greater than 0"):
            parse_duration(zero)
        assert parse_duration(zero, allow_zero=True) == 0.0


def test_error_is_a_value_error_naming_what_and_input() -> None:
    with pytest.raises(ValueError, match=r"Invalid timeout '5 parsecs'") as info:
        parse_duration("5 parsecs", what="timeout")
    assert isinstance(info.value, InitializationError)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # wrong types
        (True, r"Invalid duration True of type bool"),
        (False, r"Invalid duration False of type bool"),
        (None, r"Invalid duration None of type NoneType"),
        ([5], r"Invalid duration \[5\] of type list"),
        (b"5s", r"of type bytes"),
        (object, r"of type type"),
        # not finite
        (math.nan, r"Invalid duration nan: it must be a finite number"),
        (math.inf, r"Invalid duration inf: it must be a finite number"),
        (-math.inf, r"Invalid duration -inf: it must be a finite number"),
        # negative
        (-1, r"Invalid duration -1: it must be greater than 0 seconds"),
        (-0.5, r"it must be greater than 0 seconds"),
        ("-5", r"Invalid duration '-5': it must be greater than 0 seconds"),
        ("-5s", r"Invalid duration '-5s': it must be greater than 0 seconds"),
        ("- 1m 24s", r"it must be greater than 0 seconds"),
        (timedelta(seconds=-1), r"it must be greater than 0 seconds"),
        # unparseable strings
        ("", r"Invalid duration '': it is empty"),
        ("   ", r"it is empty"),
        ("-", r"Invalid duration '-': expected"),
        ("s", r"cannot parse 's'"),
        ("s5", r"cannot parse 's5'"),
        ("nan", r"cannot parse 'nan'"),
        ("inf", r"cannot parse 'inf'"),
        ("1.2.3s", r"cannot parse '1.2.3s'"),
        ("1m24", r"cannot parse '24'"),
        ("5 s x", r"cannot parse 'x'"),
        ("1h and 30m", r"cannot parse 'and 30m'"),
        (",1m", r"cannot parse ',1m'"),
        ("1m,,2s", r"cannot parse ',2s'"),
        ("1m,", r"ends with a separator"),
        ("1m 2s,", r"ends with a separator"),
        ("\u0665s", r"cannot parse"),  # a non-ASCII digit
        # unknown units
        ("5 parsecs", r"unknown time unit 'parsecs'; known units are w, d, h, m, s, ms, us, ns"),
        ("1e3s", r"unknown time unit 'e'"),
        ("3 months", r"unknown time unit 'months'"),
        ("1y", r"unknown time unit 'y'"),
        # repeated units, however spelled
        ("1m1m", r"minutes are given twice \('m' and 'm'\)"),
        ("1m 2min", r"minutes are given twice \('m' and 'min'\)"),
        ("1s 2 seconds", r"seconds are given twice"),
        ("1us 2\u00b5s", r"microseconds are given twice"),
        # too large
        (10**400, r"too large"),
        ("9" * 400 + "w", r"too large"),
        ("1" * 5000 + "s", r"too large"),
    ],
)
def test_rejected(value: object, message: str) -> None:
    with pytest.raises(InitializationError, match=message):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["5 parsecs", "1.2.3s", "", "-5s", True, math.nan, "1m,"])
def test_every_error_shows_valid_examples(value: object) -> None:
    with pytest.raises(InitializationError) as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert "'5s', '1m24s', '1m 24s', '1.2 minutes', '90 sec', '2h'" in str(info.value)


def test_long_input_is_shortened_in_the_message() -> None:
    with pytest.raises(InitializationError) as info:
        parse_duration("x" * 10_000)
    assert len(str(info.value)) < 400
