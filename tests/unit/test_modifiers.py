"""Execution modifiers: validation, normalisation and value semantics."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import types
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

import daffi.execution_modifiers as modifiers_module
from daffi.exceptions import InitializationError
from daffi.execution_modifiers import (
    ALL_EXEC_MODIFIERS,
    AT_TIME_PAST_TOLERANCE,
    BG,
    BROADCAST,
    FG,
    MAX_AT_TIMES,
    PERIOD,
    is_exec_modifier,
    is_exec_modifier_type,
    normalize_modifier,
)

# A fixed "now" (2030-01-01T00:00:00Z) so that at_time checks never depend on the real clock.
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(modifiers_module, "time", types.SimpleNamespace(time=lambda: NOW))
    return NOW


# --- FG / BG / BROADCAST ---------------------------------------------------------------------


def test_defaults() -> None:
    assert (FG().timeout, FG().receiver) == (None, None)
    bg = BG()
    assert (bg.timeout, bg.eta, bg.return_result, bg.receiver) == (None, None, True, None)
    broadcast = BROADCAST()
    assert (broadcast.eta, broadcast.timeout, broadcast.return_result) == (None, None, True)


def test_durations_are_normalised_to_float_seconds() -> None:
    assert FG(timeout="1m 24s").timeout == 84.0
    assert FG(timeout=5).timeout == 5.0
    assert type(FG(timeout=5).timeout) is float
    assert BG(timeout=timedelta(minutes=2), eta="1.5s").timeout == 120.0
    assert BG(eta="1.5s").eta == 1.5
    assert BROADCAST(eta=2, timeout="1.2 minutes").timeout == 72.0


def test_positional_arguments_follow_daffi2_order() -> None:
    assert FG(5, "worker") == FG(timeout=5, receiver="worker")
    assert BG(1, 2, False, "w") == BG(timeout=1, eta=2, return_result=False, receiver="w")
    assert BROADCAST(1, 2, False) == BROADCAST(eta=1, timeout=2, return_result=False)


def test_eta_may_be_zero_but_timeout_may_not() -> None:
    assert BG(eta=0).eta == 0.0
    assert BROADCAST(eta="0s").eta == 0.0
    with pytest.raises(
        InitializationError, match="Invalid FG timeout 0: it must be greater than 0"
    ):
        FG(timeout=0)
    with pytest.raises(InitializationError, match="Invalid BG timeout"):
        BG(timeout=0)
    with pytest.raises(InitializationError, match="Invalid BROADCAST timeout"):
        BROADCAST(timeout="0s")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FG(timeout=-1), r"Invalid FG timeout -1"),
        (lambda: FG(timeout="soon"), r"Invalid FG timeout 'soon'"),
        (lambda: FG(timeout=True), r"Invalid FG timeout True"),
        (lambda: FG(timeout=float("nan")), r"Invalid FG timeout nan"),
        (lambda: BG(eta=-1), r"Invalid BG eta -1: it must be 0 or more seconds"),
        (lambda: BG(eta="later"), r"Invalid BG eta 'later'"),
        (lambda: BG(return_result=0), r"Invalid BG return_result 0: expected True or False"),
        (lambda: BG(return_result=None), r"Invalid BG return_result None"),
        (lambda: BROADCAST(eta=-0.5), r"Invalid BROADCAST eta -0.5"),
        (lambda: BROADCAST(return_result="yes"), r"Invalid BROADCAST return_result 'yes'"),
        (lambda: FG(receiver=""), r"Invalid FG receiver '': expected the name of a process"),
        (lambda: FG(receiver="  "), r"Invalid FG receiver '  '"),
        (lambda: BG(receiver=5), r"Invalid BG receiver 5"),
        (lambda: PERIOD(interval=1, receiver=b"w"), r"Invalid PERIOD receiver b'w'"),
    ],
)
def test_invalid_arguments(build: Any, message: str) -> None:
    with pytest.raises(InitializationError, match=message) as info:
        build()
    assert isinstance(info.value, ValueError)


def test_broadcast_has_no_receiver() -> None:
    with pytest.raises(TypeError):
        BROADCAST(receiver="w")  # type: ignore[call-arg]


# --- value semantics -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "modifier",
    [FG(), BG(eta=1), BROADCAST(), PERIOD(interval=3)],
    ids=repr,
)
def test_immutable(modifier: Any) -> None:
    field = dataclasses.fields(modifier)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(modifier, field, 1)
    with pytest.raises((AttributeError, TypeError)):
        modifier.extra = 1


def test_equal_values_are_equal_and_hash_alike() -> None:
    same = [FG(timeout=5), FG(timeout="5s"), FG(timeout=timedelta(seconds=5)), FG(5.0)]
    assert all(modifier == same[0] for modifier in same)
    assert len({hash(modifier) for modifier in same}) == 1
    assert len(set(same)) == 1
    assert FG() != BG()
    assert BG() != BROADCAST()
    assert FG(timeout=5) != FG(timeout=6)
    assert FG(receiver="a") != FG(receiver="b")
    assert {FG(): "fg", BG(): "bg"}[FG()] == "fg"
    assert PERIOD(interval="1m") == PERIOD(interval=60)
    assert hash(PERIOD(interval="1m")) == hash(PERIOD(interval=60))


def test_repr_shows_normalised_fields(frozen_now: float) -> None:
    assert repr(FG(timeout="5s")) == "FG(timeout=5.0, receiver=None)"
    assert repr(BG(eta=2, return_result=False, receiver="w")) == (
        "BG(timeout=None, eta=2.0, return_result=False, receiver='w')"
    )
    assert repr(BROADCAST()) == "BROADCAST(eta=None, timeout=None, return_result=True)"
    assert repr(PERIOD(interval="1m")) == "PERIOD(at_time=None, interval=60.0, receiver=None)"
    assert repr(PERIOD(at_time=NOW + 5)) == (
        f"PERIOD(at_time=({NOW + 5!r},), interval=None, receiver=None)"
    )


@pytest.mark.parametrize(
    "modifier",
    [FG(timeout=5, receiver="w"), BG(1, 2, False, "w"), BROADCAST(eta=1), PERIOD(interval=2)],
    ids=repr,
)
def test_copy_pickle_and_replace(modifier: Any) -> None:
    assert copy.copy(modifier) == modifier
    assert copy.deepcopy(modifier) == modifier
    assert pickle.loads(pickle.dumps(modifier)) == modifier


def test_replace_revalidates() -> None:
    assert dataclasses.replace(FG(timeout=5), timeout="1m") == FG(timeout=60)
    with pytest.raises(InitializationError):
        dataclasses.replace(FG(), receiver="")


def test_pickled_at_time_survives_the_time_passing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(modifiers_module, "time", types.SimpleNamespace(time=lambda: NOW))
    period = PERIOD(at_time=NOW + 10)
    data = pickle.dumps(period)
    monkeypatch.setattr(modifiers_module, "time", types.SimpleNamespace(time=lambda: NOW + 60))
    assert pickle.loads(data) == period


# --- PERIOD ----------------------------------------------------------------------------------


def test_period_needs_exactly_one_of_at_time_interval_and_cron(frozen_now: float) -> None:
    with pytest.raises(
        InitializationError, match="PERIOD needs one of 'at_time', 'interval' or 'cron'"
    ):
        PERIOD()
    with pytest.raises(InitializationError, match="PERIOD needs one of"):
        PERIOD(receiver="w")
    with pytest.raises(InitializationError, match="not at_time and interval"):
        PERIOD(at_time=NOW + 10, interval=5)
    with pytest.raises(InitializationError, match="not interval and cron"):
        PERIOD(interval=5, cron="* * * * *")
    with pytest.raises(InitializationError, match="timezone applies to cron schedules only"):
        PERIOD(interval=5, timezone="UTC")


def test_period_cron(frozen_now: float) -> None:
    period = PERIOD(cron="  */5 *  * * * ", timezone="Europe/Berlin", receiver="w")
    assert (period.cron, period.timezone, period.kind) == ("*/5 * * * *", "Europe/Berlin", "cron")
    assert PERIOD(cron="0 3 * * MON").timezone == "UTC"
    with pytest.raises(InitializationError, match="malformed cron expression '\\* \\* \\*'"):
        PERIOD(cron="* * *")
    with pytest.raises(InitializationError, match="Bad minute"):
        PERIOD(cron="61 * * * *")
    with pytest.raises(InitializationError, match="unknown time zone 'Mars/Base'"):
        PERIOD(cron="* * * * *", timezone="Mars/Base")


def test_period_interval(frozen_now: float) -> None:
    period = PERIOD(interval="1m 30s", receiver="w")
    assert period.interval == 90.0
    assert period.at_time is None
    assert period.receiver == "w"
    assert period.kind == "interval"
    assert PERIOD(interval=timedelta(hours=1)).interval == 3600.0
    for bad in (0, -1, "0s", "never", True):
        with pytest.raises(InitializationError, match="Invalid PERIOD interval"):
            PERIOD(interval=bad)


def test_period_single_epoch(frozen_now: float) -> None:
    period = PERIOD(at_time=NOW + 60)
    assert period.at_time == (NOW + 60,)
    assert period.interval is None
    assert period.kind == "at_time"
    assert PERIOD(at_time=int(NOW) + 60).at_time == (NOW + 60,)
    assert type(PERIOD(at_time=int(NOW) + 60).at_time[0]) is float  # type: ignore[index]


def test_period_many_timestamps_sorted_and_deduplicated(frozen_now: float) -> None:
    period = PERIOD(at_time=[NOW + 30, NOW + 10, NOW + 20, NOW + 10])
    assert period.at_time == (NOW + 10, NOW + 20, NOW + 30)
    assert PERIOD(at_time=(NOW + 2, NOW + 1)).at_time == (NOW + 1, NOW + 2)
    assert PERIOD(at_time={NOW + 2, NOW + 1}).at_time == (NOW + 1, NOW + 2)
    assert PERIOD(at_time=frozenset({NOW + 1})).at_time == (NOW + 1,)
    # An epoch and a datetime for the same instant are one entry.
    same_instant = datetime.fromtimestamp(NOW + 5, timezone.utc)
    assert PERIOD(at_time=[NOW + 5, same_instant]).at_time == (NOW + 5,)


def test_period_datetimes(frozen_now: float) -> None:
    utc_noon = datetime(2030, 1, 1, 12, tzinfo=timezone.utc)
    plus_two = timezone(timedelta(hours=2))
    # 14:00 at UTC+2 is 12:00 UTC.
    assert PERIOD(at_time=datetime(2030, 1, 1, 14, tzinfo=plus_two)).at_time == (
        utc_noon.timestamp(),
    )
    # Naive datetimes are the host's local time, as Python reads them (see
    # test_time_zones.py for hosts off UTC).
    local_noon = datetime(2030, 1, 1, 12)
    assert PERIOD(at_time=local_noon).at_time == (local_noon.timestamp(),)
    mixed = PERIOD(at_time=[datetime(2030, 1, 1, 13), utc_noon, NOW + 1])
    assert mixed.at_time == tuple(
        sorted({NOW + 1, utc_noon.timestamp(), datetime(2030, 1, 1, 13).timestamp()})
    )


def test_period_at_time_must_be_in_the_future(frozen_now: float) -> None:
    with pytest.raises(InitializationError, match=r"is in the past .*must be in the future"):
        PERIOD(at_time=NOW - 60)
    with pytest.raises(InitializationError, match=r"2029-12-31T23:59:00\+00:00\) is in the past"):
        PERIOD(at_time=[NOW + 60, NOW - 60])
    with pytest.raises(InitializationError, match="is in the past"):
        PERIOD(at_time=datetime(2029, 12, 31, tzinfo=timezone.utc))
    with pytest.raises(InitializationError, match="is in the past"):
        PERIOD(at_time=0)
    with pytest.raises(InitializationError, match="is in the past"):
        PERIOD(at_time=-1e300)


def test_period_tolerates_a_timestamp_that_was_now_a_moment_ago(frozen_now: float) -> None:
    just_now = NOW - AT_TIME_PAST_TOLERANCE / 2
    assert PERIOD(at_time=just_now).at_time == (just_now,)
    assert PERIOD(at_time=NOW).at_time == (NOW,)
    with pytest.raises(InitializationError, match="is in the past"):
        PERIOD(at_time=NOW - AT_TIME_PAST_TOLERANCE)


def test_period_with_the_real_clock() -> None:
    import time

    assert PERIOD(at_time=time.time() + 30).kind == "at_time"
    with pytest.raises(InitializationError, match="is in the past"):
        PERIOD(at_time=time.time() - 3600)


def test_period_at_most_1000_timestamps(frozen_now: float) -> None:
    allowed = [NOW + 1 + i for i in range(MAX_AT_TIMES)]
    assert len(PERIOD(at_time=allowed).at_time or ()) == MAX_AT_TIMES
    with pytest.raises(InitializationError, match="has 1001 timestamps; at most 1000 are allowed"):
        PERIOD(at_time=[*allowed, NOW + 5000])


def test_period_empty_at_time(frozen_now: float) -> None:
    for empty in ([], (), set()):
        with pytest.raises(InitializationError, match="at_time is empty"):
            PERIOD(at_time=empty)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (True, r"Invalid PERIOD at_time entry True"),
        (float("nan"), r"Invalid PERIOD at_time entry nan"),
        (float("inf"), r"Invalid PERIOD at_time entry inf"),
        ("2030-01-02", r"Strings are not accepted"),
        ("5s", r"Strings are not accepted"),
        (b"123", r"Invalid PERIOD at_time entry b'123'"),
        (timedelta(seconds=5), r"A timedelta is a delay, not a time"),
        (date(2031, 1, 1), r"A date has no time of day"),
        (object(), r"expected a POSIX timestamp"),
    ],
    # (an object()'s repr holds its address: the same id in every run and pytest-xdist worker)
    ids=lambda value: "object()" if type(value) is object else repr(value),
)
def test_period_invalid_at_time_entries(frozen_now: float, entry: Any, message: str) -> None:
    with pytest.raises(InitializationError, match=message):
        PERIOD(at_time=entry)
    with pytest.raises(InitializationError, match=message):
        PERIOD(at_time=[NOW + 5, entry])


# --- helpers ---------------------------------------------------------------------------------


def test_all_exec_modifiers() -> None:
    assert ALL_EXEC_MODIFIERS == (FG, BG, BROADCAST, PERIOD)


@pytest.mark.parametrize("value", [FG, BG, BROADCAST, PERIOD, FG(), BG(eta=1), BROADCAST()])
def test_is_exec_modifier_true(value: object) -> None:
    assert is_exec_modifier(value)


@pytest.mark.parametrize("value", [None, 5, "FG", FG.__init__, object, int, [FG]])
def test_is_exec_modifier_false(value: object) -> None:
    assert not is_exec_modifier(value)


def test_is_exec_modifier_type() -> None:
    assert is_exec_modifier_type(BG, BG)
    assert is_exec_modifier_type(BG(eta=1), BG)
    assert not is_exec_modifier_type(FG(), BG)
    assert not is_exec_modifier_type(FG, BG)
    assert not is_exec_modifier_type(None, BG)
    assert is_exec_modifier_type(PERIOD(interval=1), PERIOD)


def test_normalize_classes_to_default_instances() -> None:
    assert normalize_modifier(FG) == FG()
    assert normalize_modifier(BG) == BG()
    assert normalize_modifier(BROADCAST) == BROADCAST()


def test_normalize_keeps_instances() -> None:
    for modifier in (FG(timeout=1), BG(eta=2), BROADCAST(timeout=3), PERIOD(interval=4)):
        assert normalize_modifier(modifier) is modifier


def test_normalize_rejects_bare_period() -> None:
    with pytest.raises(InitializationError, match="PERIOD cannot be used without arguments"):
        normalize_modifier(PERIOD)


@pytest.mark.parametrize("value", [None, 5, "FG", int, object(), [FG], FG.__init__])
def test_normalize_rejects_other_values(value: object) -> None:
    with pytest.raises(
        InitializationError,
        match=r"Invalid execution modifier .*expected one of FG, BG, BROADCAST, PERIOD",
    ) as info:
        normalize_modifier(value)
    assert isinstance(info.value, ValueError)
