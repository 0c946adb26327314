"""What ``PERIOD(at_time=...)`` reads from each kind of time, on hosts in three time zones.

A number is a POSIX timestamp; an aware datetime is exact; a naive datetime is the host's
local time (as Python reads it). A time computed with daffi 2's
``datetime.utcnow().timestamp()`` is off by the host's UTC offset off UTC: later than meant
(New York) is scheduled with a warning, in the past (Kolkata, +5:30) is refused, and both say
what to write instead. Each test runs with ``TZ`` set in this process (``time.tzset``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from daffi import PERIOD
from daffi.exceptions import InitializationError
from daffi.scheduling._wallclock import describe_offset, local_offset, utcnow_idiom_offset

ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]


@pytest.fixture(params=ZONES)
def zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This process runs in time zone ``request.param`` for the test."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    try:
        yield request.param
    finally:
        monkeypatch.undo()
        time.tzset()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_zones_have_the_offsets_the_tests_expect(zone: str) -> None:
    offset = local_offset(time.time())
    assert offset == {"UTC": 0, "America/New_York": offset, "Asia/Kolkata": 19800}[zone]
    if zone == "America/New_York":
        assert offset in (-5 * 3600, -4 * 3600)  # EST or EDT


def test_a_number_is_a_posix_timestamp(zone: str, caplog: pytest.LogCaptureFixture) -> None:
    stamp = time.time() + 60
    assert PERIOD(at_time=stamp).at_time == (stamp,)
    assert warnings_of(caplog) == []


def test_an_aware_datetime_is_exact(zone: str, caplog: pytest.LogCaptureFixture) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=60)
    assert PERIOD(at_time=when).at_time == (when.timestamp(),)
    berlin = when.astimezone(timezone(timedelta(hours=1)))
    assert PERIOD(at_time=berlin).at_time == (when.timestamp(),)
    assert warnings_of(caplog) == []


def test_a_naive_datetime_is_local_time(zone: str, caplog: pytest.LogCaptureFixture) -> None:
    before = time.time()
    (stamp,) = PERIOD(at_time=datetime.now() + timedelta(seconds=60)).at_time  # type: ignore[misc]
    assert before + 59 <= stamp <= time.time() + 61
    assert warnings_of(caplog) == []


def test_a_day_ahead_is_never_taken_for_the_idiom(
    zone: str, caplog: pytest.LogCaptureFixture
) -> None:
    stamp = time.time() + 86400
    assert PERIOD(at_time=stamp).at_time == (stamp,)
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("form", ["number", "naive datetime"])
def test_the_daffi_2_idiom_warns_or_is_refused_off_utc(
    zone: str, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    if form == "number":
        given: float | datetime = datetime.utcnow().timestamp() + 5
    else:
        given = datetime.utcnow() + timedelta(seconds=5)
    if zone == "UTC":
        (stamp,) = PERIOD(at_time=given).at_time  # type: ignore[misc]
        assert abs(stamp - (time.time() + 5)) < 1
        assert warnings_of(caplog) == []
    elif zone == "America/New_York":
        (stamp,) = PERIOD(at_time=given).at_time  # type: ignore[misc]
        offset = local_offset(time.time())
        assert abs(stamp - (time.time() + 5 - offset)) < 1  # scheduled as given: hours late
        (warning,) = warnings_of(caplog)
        assert "datetime.utcnow().timestamp()" in warning
        assert describe_offset(offset) in warning
        assert "If you meant 5 s from now, write time.time() + 5" in warning
    else:
        with pytest.raises(InitializationError) as info:
            PERIOD(at_time=given)
        message = str(info.value)
        assert "is in the past" in message
        assert "UTC+05:30" in message
        assert "datetime.utcnow().timestamp()" in message
        assert "time.time() + 5" in message


def test_the_idiom_is_recognised_only_near_the_offset(zone: str) -> None:
    now = time.time()
    offset = local_offset(now)
    if offset == 0:
        assert utcnow_idiom_offset(now + 30, now) is None
        return
    assert utcnow_idiom_offset(now - offset + 30, now) == offset
    assert utcnow_idiom_offset(now + 30, now) is None
    assert utcnow_idiom_offset(now - offset + 86400, now) is None
