"""daffi.metrics on its own: CallbackStats' counts, histogram and quantiles, its thread
safety, the records' immutability, and Global's check of ``metrics=``.

The records a running node makes are tested in tests/integration/test_metrics.py (streams,
schedules, BG, BROADCAST, a failing hook) and tests/parity/test_metrics.py (plain calls over
every route)."""

from __future__ import annotations

import dataclasses
import math
import threading
import uuid

import pytest

from daffi import Global
from daffi.exceptions import InitializationError
from daffi.metrics import DEFAULT_BUCKETS, CallbackStats, CallbackSummary, CallRecord, RunOutcome


def record(
    callback: str = "add",
    duration: float = 0.01,
    outcome: RunOutcome = "ok",
    error: str | None = None,
) -> CallRecord:
    return CallRecord(
        callback=callback,
        node="worker",
        caller="client",
        kind="call",
        outcome=outcome,
        error=error,
        started=1_700_000_000.0,
        duration=duration,
    )


# ---------------------------------------------------------------- counting


def test_runs_are_counted_by_callback_and_outcome() -> None:
    stats = CallbackStats()
    stats(record("add", 0.001))
    stats(record("add", 0.003))
    stats(record("add", 0.002, "error", "ValueError"))
    stats(record("add", 0.5, "cancelled"))
    stats(record("mul", 0.004))
    summary = stats.summary()
    assert sorted(summary) == ["add", "mul"]
    add = summary["add"]
    assert (add.runs, add.errors, add.cancelled) == (4, 1, 1)
    assert add.total_seconds == pytest.approx(0.506)
    assert add.max_seconds == 0.5
    assert add.mean_seconds == pytest.approx(0.506 / 4)
    mul = summary["mul"]
    assert (mul.runs, mul.errors, mul.cancelled) == (1, 0, 0)
    assert mul.mean_seconds == pytest.approx(0.004)


def test_summary_with_reset_hands_over_every_run_once() -> None:
    """Runs counted from many threads while summaries are taken with ``reset=True``: every
    run is in exactly one summary."""
    stats = CallbackStats()
    per_thread, threads = 2_000, 8
    taken: list[int] = []

    def count() -> None:
        for _ in range(per_thread):
            stats(record())

    workers = [threading.Thread(target=count) for _ in range(threads)]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        taken.append(sum(s.runs for s in stats.summary(reset=True).values()))
    for worker in workers:
        worker.join()
    taken.append(sum(s.runs for s in stats.summary(reset=True).values()))
    assert sum(taken) == per_thread * threads
    assert stats.summary() == {}


def test_a_summary_is_a_snapshot() -> None:
    stats = CallbackStats()
    stats(record())
    before = stats.summary()
    stats(record())
    assert before["add"].runs == 1
    assert stats.summary()["add"].runs == 2


def test_nothing_counted_is_an_empty_summary() -> None:
    stats = CallbackStats()
    assert stats.summary() == {}
    assert repr(stats) == "<CallbackStats of []>"


def test_reset_forgets_everything() -> None:
    stats = CallbackStats(buckets=[0.1])
    stats(record("add", 0.05))
    stats(record("mul", 0.2, "error", "KeyError"))
    assert repr(stats) == "<CallbackStats of ['add', 'mul']>"
    stats.reset()
    assert stats.summary() == {}
    stats(record("add", 0.2))
    add = stats.summary()["add"]
    assert (add.runs, add.errors, add.max_seconds) == (1, 0, 0.2)
    assert add.buckets == ((0.1, 0), (math.inf, 1))


# ---------------------------------------------------------------- histogram


def test_histogram_counts_are_cumulative_and_a_bound_is_inclusive() -> None:
    """As in Prometheus: bucket ``le`` counts the runs that took at most ``le`` seconds."""
    stats = CallbackStats(buckets=[0.1, 0.5, 1.0])
    for duration in [0.0, 0.1, 0.1000001, 0.5, 0.75, 1.0, 1.5, 30.0]:
        stats(record(duration=duration))
    summary = stats.summary()["add"]
    assert summary.buckets == ((0.1, 2), (0.5, 4), (1.0, 6), (math.inf, 8))
    assert summary.runs == 8


def test_default_buckets_end_with_an_open_bucket() -> None:
    stats = CallbackStats()
    stats(record(duration=0.00005))
    stats(record(duration=60.0))
    buckets = stats.summary()["add"].buckets
    assert [bound for bound, _ in buckets] == [*DEFAULT_BUCKETS, math.inf]
    assert buckets[0] == (DEFAULT_BUCKETS[0], 1)
    assert buckets[-2] == (DEFAULT_BUCKETS[-1], 1)
    assert buckets[-1] == (math.inf, 2)


def test_buckets_may_be_any_iterable_of_numbers() -> None:
    stats = CallbackStats(buckets=iter([1, 2]))
    stats(record(duration=1.5))
    assert stats.summary()["add"].buckets == ((1.0, 0), (2.0, 1), (math.inf, 1))


@pytest.mark.parametrize(
    ("buckets", "message"),
    [
        ([], "increasing and not empty"),
        ([0.5, 0.1], "increasing and not empty"),
        ([0.1, 0.1], "increasing and not empty"),
        ([0.0, 0.1], "positive and finite"),
        ([-1.0, 0.1], "positive and finite"),
        ([0.1, math.inf], "positive and finite"),
        ([math.nan], "positive and finite"),
        ([0.1, math.nan, 0.5], "positive and finite"),
    ],
)
def test_bad_buckets_are_refused(buckets: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        CallbackStats(buckets=buckets)
    assert "buckets must be" in str(info.value)


# ---------------------------------------------------------------- quantiles, mean


def test_quantile_is_the_smallest_bound_holding_that_share() -> None:
    stats = CallbackStats(buckets=[0.1, 0.5, 1.0])
    for duration in [0.05, 0.05, 0.05, 0.3, 0.3, 0.3, 0.3, 0.8, 0.9, 4.0]:
        stats(record(duration=duration))
    summary = stats.summary()["add"]
    assert summary.quantile(0.1) == 0.1
    assert summary.quantile(0.3) == 0.1  # 3 of 10 within 0.1 s
    assert summary.quantile(0.31) == 0.5
    assert summary.quantile(0.5) == 0.5
    assert summary.quantile(0.7) == 0.5
    assert summary.quantile(0.9) == 1.0
    # the open last bucket: the longest run is the best bound there is
    assert summary.quantile(0.95) == 4.0
    assert summary.quantile(1.0) == 4.0


def test_quantile_of_runs_all_in_the_open_bucket_is_the_longest() -> None:
    stats = CallbackStats(buckets=[0.001])
    stats(record(duration=2.0))
    stats(record(duration=3.0))
    assert stats.summary()["add"].quantile(0.5) == 3.0


def test_quantile_and_mean_without_runs_are_zero() -> None:
    empty = CallbackSummary(
        runs=0,
        errors=0,
        cancelled=0,
        refused=0,
        total_seconds=0.0,
        max_seconds=0.0,
        buckets=((0.1, 0), (math.inf, 0)),
    )
    assert empty.quantile(0.5) == 0.0
    assert empty.quantile(1.0) == 0.0
    assert empty.mean_seconds == 0.0


@pytest.mark.parametrize("q", [0.0, -0.5, 1.01, 50, math.nan, math.inf])
def test_quantile_outside_zero_to_one_is_refused(q: float) -> None:
    stats = CallbackStats()
    stats(record())
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\]"):
        stats.summary()["add"].quantile(q)


# ---------------------------------------------------------------- threads


def test_many_threads_counting_at_once_lose_nothing() -> None:
    """Hooks run in worker threads and on event loops at once: every record is counted."""
    stats = CallbackStats(buckets=[0.01, 0.1])
    threads_count, per_thread = 16, 2_000
    start = threading.Barrier(threads_count)

    def feed(index: int) -> None:
        start.wait()
        name = f"cb{index % 4}"
        for i in range(per_thread):
            if i % 10 == 0:
                stats(record(name, 0.05, "error", "ValueError"))
            elif i % 10 == 1:
                stats(record(name, 0.5, "cancelled"))
            else:
                stats(record(name, 0.001))
            if i % 500 == 0:
                stats.summary()  # readers while writing

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    summary = stats.summary()
    assert sorted(summary) == ["cb0", "cb1", "cb2", "cb3"]
    runs = threads_count // 4 * per_thread
    for name, counted in summary.items():
        assert counted.runs == runs, name
        assert counted.errors == runs // 10, name
        assert counted.cancelled == runs // 10, name
        assert counted.buckets == (
            (0.01, runs * 8 // 10),
            (0.1, runs * 9 // 10),
            (math.inf, runs),
        ), name
        assert counted.total_seconds == pytest.approx(runs * (0.8 * 0.001 + 0.1 * 0.05 + 0.1 * 0.5))
        assert counted.max_seconds == 0.5


# ---------------------------------------------------------------- records


def test_a_record_cannot_be_changed() -> None:
    made = record()
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.outcome = "error"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        made.extra = 1  # type: ignore[attr-defined]
    assert made == record()
    assert hash(made) == hash(record())


def test_a_summary_cannot_be_changed() -> None:
    stats = CallbackStats()
    stats(record())
    summary = stats.summary()["add"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.runs = 0  # type: ignore[misc]


# ---------------------------------------------------------------- Global(metrics=...)


def test_global_refuses_a_hook_that_is_not_callable() -> None:
    with pytest.raises(InitializationError, match="metrics") as info:
        Global("metrics-check", init_controller=True, metrics="not callable")  # type: ignore[arg-type]
    assert "callable" in str(info.value)
    assert "'not callable'" in str(info.value)


def test_global_keeps_the_hook_it_was_given() -> None:
    stats = CallbackStats()
    g = Global(
        "metrics-kept",
        init_controller=True,
        address=f"memory://daffi-unit-{uuid.uuid4().hex}",
        metrics=stats,
    )
    try:
        assert g.metrics is stats
    finally:
        g.stop()
