"""The metrics hook on the paths besides a plain call (those are in tests/parity/
test_metrics.py): streams out of generator callbacks and streams of arguments in, the runs
of PERIOD schedules, BG and BROADCAST, a hook that raises, and a Global in an async
application. In-process nodes on the memory transport, each test on asyncio and trio.

A ``def`` callback's record is made in its worker thread, possibly just after its caller has
the reply; the tests wait for the records they expect (``RecordedRuns.wait_for_async``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from daffi import BG, BROADCAST, PERIOD, Global, ScheduledTask
from daffi.decorators import alias, fetcher
from daffi.exceptions import GlobalContextError, RemoteCallError
from daffi.metrics import CallbackStats, CallRecord
from daffi.registry import CallbackRegistry
from daffi.testing import RecordedRuns

from .conftest import NodeFactory

pytestmark = pytest.mark.anyio

STEP = 0.05  # seconds between a stream's items, and a schedule's interval


def summary(record: CallRecord) -> tuple[str, str, str, str, str, str | None]:
    return (
        record.callback,
        record.node,
        record.caller,
        record.kind,
        record.outcome,
        record.error,
    )


# ---------------------------------------------------------------- fetchers


@fetcher
async def numbers(n):
    pass


@fetcher
async def upload(n):
    for i in range(n):
        await anyio.sleep(STEP)
        yield i


@alias("upload")
@fetcher
async def upload_failing(n):
    for i in range(n):
        yield i


@fetcher
async def tick(n):
    pass


@fetcher(BG)
async def work(x):
    pass


@alias("work")
@fetcher(BG(return_result=False))
async def work_and_forget(x):
    pass


@alias("work")
@fetcher(BROADCAST)
async def work_everywhere(x):
    pass


@alias("work")
@fetcher
async def work_now(x):
    pass


# ---------------------------------------------------------------- callbacks


def generator(kind: str, *, fail_at: int | None = None, pause: float = STEP) -> Callable[..., Any]:
    """``numbers(n)``: 0..n-1, ``pause`` seconds apart; ValueError at ``fail_at``."""

    def numbers_sync(n: int) -> Iterator[int]:
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"failed at {i}")
            time.sleep(pause)
            yield i

    async def numbers_async(n: int) -> AsyncIterator[int]:
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"failed at {i}")
            await anyio.sleep(pause)
            yield i

    return numbers_sync if kind == "def" else numbers_async


def receiver(kind: str, into: list[int], fail_on: int | None = None) -> Callable[..., Any]:
    """``upload(x)``: keeps each ``x``; ValueError on ``fail_on``."""

    def upload_sync(x: int) -> None:
        if x == fail_on:
            raise ValueError(f"cannot take {x}")
        into.append(x)

    async def upload_async(x: int) -> None:
        upload_sync(x)

    return upload_sync if kind == "def" else upload_async


# ---------------------------------------------------------------- streams out


@pytest.mark.parametrize("kind", ["def", "async"])
async def test_a_generator_callback_is_one_stream_record(make_node: NodeFactory, kind: str) -> None:
    records = RecordedRuns()
    with anyio.fail_after(15):
        async with (
            make_node("worker", {"numbers": generator(kind)}, metrics=records),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("numbers", timeout=5)
            with caller.as_current():
                before = time.time()
                received = [x async for x in await numbers(4)]
                after = time.time()
            [record] = await records.wait_for_async("numbers", 1)
    assert received == [0, 1, 2, 3]
    assert summary(record) == ("numbers", "worker", "caller", "stream", "ok", None)
    # the whole stream, not its first item: four pauses
    assert 4 * STEP <= record.duration < 4 * STEP + 3.0, record
    assert before <= record.started <= after
    assert records.all() == [record]  # no record per item


@pytest.mark.parametrize("kind", ["def", "async"])
async def test_a_generator_that_raises_is_an_error_record(
    make_node: NodeFactory, kind: str
) -> None:
    records = RecordedRuns()
    received: list[int] = []
    with anyio.fail_after(15):
        async with (
            make_node("worker", {"numbers": generator(kind, fail_at=2)}, metrics=records),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("numbers", timeout=5)

            async def drain() -> None:
                async for x in await numbers(5):
                    received.append(x)

            with caller.as_current(), pytest.raises(RemoteCallError, match="failed at 2"):
                await drain()
            [record] = await records.wait_for_async("numbers", 1)
    assert received == [0, 1]
    assert summary(record) == ("numbers", "worker", "caller", "stream", "error", "ValueError")
    assert record.duration >= 2 * STEP


@pytest.mark.parametrize("kind", ["def", "async"])
async def test_a_stream_its_consumer_leaves_is_a_cancelled_record(
    make_node: NodeFactory, kind: str
) -> None:
    """The consumer closed the stream before its end: the generator was stopped and did not
    finish for its caller."""
    records = RecordedRuns()
    with anyio.fail_after(15):
        async with (
            make_node("worker", {"numbers": generator(kind, pause=0.001)}, metrics=records),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("numbers", timeout=5)
            with caller.as_current():
                stream = await numbers(10**9)
                first = [await stream.__anext__() for _ in range(3)]
                await stream.aclose()
                [record] = await records.wait_for_async("numbers", 1)
                # the node goes on serving streams, and records them
                assert [x async for x in await numbers(2)] == [0, 1]
            await records.wait_for_async("numbers", 2)
    assert first == [0, 1, 2]
    assert summary(record) == ("numbers", "worker", "caller", "stream", "cancelled", None)
    assert [r.outcome for r in records.of("numbers")] == ["cancelled", "ok"]


# ---------------------------------------------------------------- streams in


@pytest.mark.parametrize("kind", ["def", "async"])
async def test_a_stream_of_arguments_is_one_stream_record(
    make_node: NodeFactory, kind: str
) -> None:
    records = RecordedRuns()
    taken: list[int] = []
    with anyio.fail_after(15):
        async with (
            make_node("worker", {"upload": receiver(kind, taken)}, metrics=records),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("upload", timeout=5)
            with caller.as_current():
                assert await upload(4) is None
            [record] = await records.wait_for_async("upload", 1)
    assert taken == [0, 1, 2, 3]
    assert summary(record) == ("upload", "worker", "caller", "stream", "ok", None)
    # from the call's arrival to the stream's end: the caller paused before each item
    assert 3 * STEP <= record.duration < 4 * STEP + 3.0, record
    assert records.all() == [record]


@pytest.mark.parametrize("kind", ["def", "async"])
async def test_a_stream_of_arguments_that_fails_is_an_error_record(
    make_node: NodeFactory, kind: str
) -> None:
    records = RecordedRuns()
    taken: list[int] = []
    with anyio.fail_after(15):
        async with (
            make_node("worker", {"upload": receiver(kind, taken, fail_on=3)}, metrics=records),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("upload", timeout=5)
            with caller.as_current(), pytest.raises(ValueError, match="cannot take 3"):
                await upload_failing(100)
            [record] = await records.wait_for_async("upload", 1)
    assert taken == [0, 1, 2]
    assert summary(record) == ("upload", "worker", "caller", "stream", "error", "ValueError")


# ---------------------------------------------------------------- schedules


class Ticks:
    """``tick(n)`` (``def`` or ``async``): counts its runs, raises ValueError on ``fail_on``
    runs (1-based)."""

    def __init__(self, kind: str, fail_on: frozenset[int] = frozenset()) -> None:
        self.kind = kind
        self.fail_on = fail_on
        self.runs = 0
        self._lock = threading.Lock()

    def _run(self, n: int) -> int:
        with self._lock:
            self.runs += 1
            run = self.runs
        if run in self.fail_on:
            raise ValueError(f"run {run} failed")
        return n

    def callback(self) -> Callable[[int], Any]:
        def tick_sync(n: int) -> int:
            return self._run(n)

        async def tick_async(n: int) -> int:
            return self._run(n)

        return tick_sync if self.kind == "def" else tick_async


@pytest.mark.parametrize("kind", ["def", "async"])
async def test_each_run_of_an_interval_schedule_is_a_schedule_record(
    make_node: NodeFactory, kind: str
) -> None:
    records = RecordedRuns()
    ticks = Ticks(kind, fail_on=frozenset({2}))
    with anyio.fail_after(15):
        async with (
            make_node("exec", {"tick": ticks.callback()}, metrics=records),
            make_node("req") as req,
        ):
            await req.wait_function_async("tick", timeout=5)
            with req.as_current():
                task = await tick.call(7, exec_modifier=PERIOD(interval=STEP))
            assert isinstance(task, ScheduledTask)
            await records.wait_for_async("tick", 4)
            assert await task.cancel_async() is True
            # a run under way when the cancel came still ends with its record
            runs = ticks.runs
            found = await records.wait_for_async("tick", runs)
    # one record per run: none for the request that made the schedule, none for the cancel
    assert len(found) == runs
    assert {(r.callback, r.node, r.caller, r.kind) for r in found} == {
        ("tick", "exec", "req", "schedule")
    }
    # the runs follow each other (a tick during a run is skipped): records in run order
    assert [(r.outcome, r.error) for r in found[:4]] == [
        ("ok", None),
        ("error", "ValueError"),
        ("ok", None),
        ("ok", None),
    ]
    assert [r.started for r in found] == sorted(r.started for r in found)
    assert all(0.0 <= r.duration < 2.0 for r in found), found


async def test_each_at_time_run_is_a_schedule_record(make_node: NodeFactory) -> None:
    records = RecordedRuns()
    ticks = Ticks("async")
    with anyio.fail_after(15):
        async with (
            make_node("exec", {"tick": ticks.callback()}, metrics=records),
            make_node("req") as req,
        ):
            await req.wait_function_async("tick", timeout=5)
            now = time.time()
            at_time = [now + 0.1, now + 0.2, now + 0.3]
            with req.as_current():
                await tick.call(1, exec_modifier=PERIOD(at_time=at_time))
            found = await records.wait_for_async("tick", 3)
    assert [summary(r) for r in found] == [("tick", "exec", "req", "schedule", "ok", None)] * 3
    for record, due in zip(found, at_time, strict=True):
        assert record.started >= due - 0.01  # timed from the fire, not from the request


async def test_runs_of_a_resumed_durable_schedule_are_schedule_records(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """A durable schedule resumed from the store after a restart: its runs are recorded by
    the new node's hook, for the process that requested it (which made no new request)."""
    before_restart, after_restart = RecordedRuns(), RecordedRuns()
    ticks = Ticks("async")
    with anyio.fail_after(15):
        async with make_node("req") as req:
            async with make_node(
                "exec", {"tick": ticks.callback()}, state_dir=tmp_path, metrics=before_restart
            ):
                await req.wait_function_async("tick", timeout=5)
                with req.as_current():
                    task = await tick.call(3, exec_modifier=PERIOD(interval=STEP, durable=True))
                assert isinstance(task, ScheduledTask)
                await before_restart.wait_for_async("tick", 2)
            async with make_node(
                "exec", {"tick": ticks.callback()}, state_dir=tmp_path, metrics=after_restart
            ):
                resumed = await after_restart.wait_for_async("tick", 2)
                assert await task.cancel_async() is True
    assert {summary(r) for r in resumed} == {("tick", "exec", "req", "schedule", "ok", None)}


# ---------------------------------------------------------------- BG, BROADCAST


@pytest.mark.parametrize("kind", ["def", "async"])
async def test_bg_runs_are_call_records_with_or_without_a_result(
    make_node: NodeFactory, kind: str
) -> None:
    records = RecordedRuns()
    done = threading.Event()

    def work_sync(x: int) -> int:
        if x < 0:
            done.set()
        return x * 2

    async def work_async(x: int) -> int:
        return work_sync(x)

    callback = work_sync if kind == "def" else work_async
    with anyio.fail_after(15):
        async with (
            make_node("worker", {"work": callback}, metrics=records),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("work", timeout=5)
            with caller.as_current():
                result = await work(21)
                assert await result.get_async() == 42
                assert await work_and_forget(-1) is None  # nobody waits for this one
            found = await records.wait_for_async("work", 2)
    assert done.is_set()
    assert [summary(r) for r in found] == [("work", "worker", "caller", "call", "ok", None)] * 2


@pytest.mark.parametrize("kind", ["def", "async"])
async def test_a_call_refused_by_an_overloaded_node_is_a_refused_record(
    make_node: NodeFactory, kind: str
) -> None:
    """At ``max_concurrent_calls``, a node refuses a call without running it: ``refused``,
    counted apart from runs by CallbackStats (no run, no duration in the histogram)."""
    records = RecordedRuns()
    stats = CallbackStats()
    release = threading.Event()
    started = threading.Event()

    def work_sync(x: int) -> int:
        started.set()
        release.wait(10)
        return x * 2

    async def work_async(x: int) -> int:
        started.set()
        await anyio.to_thread.run_sync(release.wait, 10)
        return x * 2

    def hook(record: CallRecord) -> None:
        records(record)
        stats(record)

    callback = work_sync if kind == "def" else work_async
    with anyio.fail_after(15):
        async with (
            make_node("worker", {"work": callback}, metrics=hook, max_concurrent_calls=1),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("work", timeout=5)
            with caller.as_current():
                first = await work(1)
                await anyio.to_thread.run_sync(started.wait, 5)
                with pytest.raises(GlobalContextError, match="overloaded"):
                    await work_now(2)
                [refused] = await records.wait_for_async("work", 1)
                assert summary(refused) == ("work", "worker", "caller", "call", "refused", None)
                release.set()
                assert await first.get_async() == 2
            found = await records.wait_for_async("work", 2)
    assert [r.outcome for r in found] == ["refused", "ok"]
    counted = stats.summary()["work"]
    assert (counted.runs, counted.refused, counted.errors) == (1, 1, 0)
    assert counted.buckets[-1][1] == 1  # the refusal is not in the histogram


async def test_each_node_records_its_own_part_of_a_broadcast(make_node: NodeFactory) -> None:
    seen = {name: RecordedRuns() for name in ("n1", "n2", "n3")}

    def work_sync(x: int) -> int:
        return x + 1

    async def work_async(x: int) -> int:
        if x < 0:
            raise KeyError(x)
        return x + 1

    with anyio.fail_after(15):
        async with (
            make_node("n1", {"work": work_sync}, metrics=seen["n1"]),
            make_node("n2", {"work": work_async}, metrics=seen["n2"]),
            make_node("n3", {"work": work_async}, metrics=seen["n3"]),
            make_node("caller") as caller,
        ):
            for name in seen:
                await caller.wait_process_async(name, timeout=5)
            with caller.as_current():
                assert await work_everywhere(1) == {"n1": 2, "n2": 2, "n3": 2}
                with pytest.raises(KeyError):
                    await work_everywhere(-1)
            for records in seen.values():
                await records.wait_for_async("work", 2)
    assert [summary(r) for r in seen["n1"].all()] == [
        ("work", "n1", "caller", "call", "ok", None)
    ] * 2
    for name in ("n2", "n3"):
        assert [summary(r) for r in seen[name].all()] == [
            ("work", name, "caller", "call", "ok", None),
            ("work", name, "caller", "call", "error", "KeyError"),
        ]


# ---------------------------------------------------------------- a hook that raises


@pytest.mark.parametrize("kind", ["def", "async"])
async def test_a_hook_that_raises_changes_nothing_for_the_calls(
    make_node: NodeFactory, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def broken_hook(record: CallRecord) -> None:
        calls.append(record)
        raise RuntimeError("hook is broken")

    def work_sync(x: int) -> int:
        return x * 3

    async def work_async(x: int) -> int:
        return x * 3

    callback = work_sync if kind == "def" else work_async
    caplog.set_level(logging.DEBUG, logger="daffi.metrics")
    with anyio.fail_after(15):
        async with (
            make_node("worker", {"work": callback}, metrics=broken_hook),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("work", timeout=5)
            with caller.as_current():
                results = [await work_now(x) for x in range(3)]
            while len(calls) < 3:  # noqa: ASYNC110 (a def callback's hook runs in its thread)
                await anyio.sleep(0.01)
    assert results == [0, 3, 6]
    logged = [r for r in caplog.records if r.name == "daffi.metrics"]
    assert [r.levelno for r in logged] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    first = logged[0]
    assert "node 'worker'" in first.getMessage()
    assert "'work'" in first.getMessage()
    assert "later failures are logged at DEBUG" in first.getMessage()
    assert first.exc_info is not None
    assert isinstance(first.exc_info[1], RuntimeError)


# ---------------------------------------------------------------- async applications


async def test_globals_in_an_async_app_count_with_callback_stats() -> None:
    """``async with Global(...)`` in the application's own loop (asyncio or trio): a
    controller, a worker with CallbackStats as its hook (an ``async def`` and a ``def``
    callback), and the application calling them."""
    stats = CallbackStats()
    registry = CallbackRegistry()

    async def double(x: int) -> int:
        return 2 * x

    def halve(x: int) -> float:
        if x == 0:
            raise ZeroDivisionError("nothing to halve")
        return x / 2

    registry.add(double, "double")
    registry.add(halve, "halve")

    @alias("double")
    @fetcher
    async def double_remote(x): ...

    @alias("halve")
    @fetcher
    async def halve_remote(x): ...

    def counted(name: str) -> int:
        found = stats.summary().get(name)
        return 0 if found is None else found.runs

    address = f"memory://daffi-it-{uuid.uuid4().hex}"
    with anyio.fail_after(15):
        async with (
            Global("ctrl", init_controller=True, init_node=False, address=address),
            Global("worker", address=address, registry=registry, metrics=stats),
            Global("app", address=address, registry=CallbackRegistry()) as app,
        ):
            await app.wait_function_async("halve", timeout=5)
            with app.as_current():
                assert [await double_remote(x) for x in range(5)] == [0, 2, 4, 6, 8]
                assert await halve_remote(4) == 2.0
                with pytest.raises(ZeroDivisionError):
                    await halve_remote(0)
            while counted("halve") < 2:  # noqa: ASYNC110 (a def callback's hook: its thread)
                await anyio.sleep(0.01)
    summary = stats.summary()
    assert sorted(summary) == ["double", "halve"]
    assert (summary["double"].runs, summary["double"].errors) == (5, 0)
    assert (summary["halve"].runs, summary["halve"].errors) == (2, 1)
    assert summary["double"].buckets[-1][1] == 5
    assert summary["double"].quantile(1.0) >= summary["double"].max_seconds > 0.0


async def test_a_node_without_a_hook_records_nothing_and_works(make_node: NodeFactory) -> None:
    """The hook is per node: the caller, which has one, records nothing for a callback it
    did not run."""
    records = RecordedRuns()

    async def work_async(x: int) -> int:
        return x + 100

    with anyio.fail_after(15):
        async with (
            make_node("worker", {"work": work_async}),
            make_node("caller", metrics=records) as caller,
        ):
            await caller.wait_function_async("work", timeout=5)
            with caller.as_current():
                assert await work_now(1) == 101
                assert await (await work(2)).get_async() == 102
            assert caller.metrics is records
    assert records.all() == []
