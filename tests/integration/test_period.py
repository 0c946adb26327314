"""PERIOD between in-process nodes: schedules on the executor, handles on the requester.

Each test has a standalone controller, an executor node offering ``tick`` (and friends) from a
private registry, and a requester node; most run over the memory transport in the test's own
loop (asyncio and trio). Intervals are short and real (0.05-0.1 s); waits are on events set by
the callbacks, except where a test checks that *nothing* happens (see ``quiet_period``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import pytest

from daffi import PERIOD, Global, RemoteCallError, ScheduledTask, SchedulerTask
from daffi.decorators import alias, fetcher
from daffi.exceptions import ArgumentsError, InitializationError, UnableToFindCandidate
from daffi.registry import CallbackRegistry, Fetcher

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.fabrics("memory", "nats")]

INTERVAL = 0.05


# ---------------------------------------------------------------- fetchers


@fetcher
async def tick(n):
    pass


@alias("tick")
@fetcher(PERIOD(interval=INTERVAL))
async def tick_positional(n):
    pass


@alias("tick")
@fetcher(exec_modifier=PERIOD(interval="50ms"))
async def tick_keyword(n):
    pass


class Ticker(Fetcher):
    exec_modifier = PERIOD(interval=INTERVAL)

    async def tick(self, n):
        pass


@alias("tick")
@fetcher
def tick_blocking(n):
    pass


@fetcher
async def nap():
    pass


@fetcher
async def fail(n):
    pass


@fetcher
async def nobody_offers_this():
    pass


@fetcher
async def grind():
    pass


# ---------------------------------------------------------------- helpers


class Runs:
    """An async ``tick(n)`` callback recording each run; tests wait for the n-th run."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int]] = []
        self._waiters: list[tuple[int, anyio.Event]] = []

    async def tick(self, n: int) -> None:
        self.calls.append((time.time(), n))
        for count, event in self._waiters:
            if len(self.calls) >= count:
                event.set()

    def __len__(self) -> int:
        return len(self.calls)

    async def wait_for(self, count: int) -> None:
        if len(self.calls) >= count:
            return
        event = anyio.Event()
        self._waiters.append((count, event))
        await event.wait()


async def quiet_period(seconds: float = 4 * INTERVAL) -> None:
    """Let a cancelled schedule's would-be fire times pass.

    The one bounded wait in these tests: they check that *nothing* happens after a cancel,
    and no event signals the absence of a run. A few intervals is long enough for a leftover
    run to show up, and a missed one cannot make a passing test wrong, only a broken one pass
    by luck once.
    """
    await anyio.sleep(seconds)


async def eventually(check: Callable[[], Awaitable[bool]], step: float = 0.01) -> None:
    """Poll ``check`` until true; the caller bounds it with ``anyio.fail_after``."""
    while not await check():  # noqa: ASYNC110 (no event exists for these conditions)
        await anyio.sleep(step)


def uuids(listing: list[dict[str, Any]]) -> set[str]:
    return {item["uuid"] for item in listing}


# ---------------------------------------------------------------- interval


async def test_interval_schedule_runs_until_cancelled(make_node: NodeFactory) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            with req.as_current():
                task = await tick.call(7, exec_modifier=PERIOD(interval=INTERVAL))
            assert isinstance(task, ScheduledTask)
            assert SchedulerTask is ScheduledTask
            assert task.func_name == "tick"
            assert task.receiver == "exec"
            assert isinstance(task.uuid, str)
            assert task.uuid
            assert task.last_error is None

            await runs.wait_for(3)
            assert [n for _, n in runs.calls[:3]] == [7, 7, 7]
            assert await task.cancel_async() is True
            count = len(runs)
            await quiet_period()
            assert len(runs) == count
            assert await task.cancel_async() is False
            assert task.uuid not in uuids(await req.get_scheduled_tasks_async("exec"))


@pytest.mark.parametrize("form", ["positional", "keyword", "class attribute", "call"])
async def test_period_is_accepted_in_every_fetcher_form(make_node: NodeFactory, form: str) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            with req.as_current():
                if form == "positional":
                    task = await tick_positional(1)
                elif form == "keyword":
                    task = await tick_keyword(1)
                elif form == "class attribute":
                    task = await Ticker().tick(1)
                else:
                    task = await tick.call(1, exec_modifier=PERIOD(interval=INTERVAL))
            assert isinstance(task, ScheduledTask)
            assert task.receiver == "exec"
            await runs.wait_for(2)
            assert await task.cancel_async() is True


async def test_the_same_fetcher_still_calls_once_without_period(make_node: NodeFactory) -> None:
    """A PERIOD given to .call() is for that call only; the fetcher stays FG."""
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            with req.as_current():
                task = await tick.call(1, exec_modifier=PERIOD(interval=10))
                assert await tick(2) is None
            assert runs.calls[0][1] == 2
            assert await task.cancel_async() is True


# ---------------------------------------------------------------- at_time


async def test_at_time_fires_each_entry_once_in_order(make_node: NodeFactory) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            now = time.time()
            at_time = [now + 0.3, now + 0.1, now + 0.2]  # out of order on purpose
            with req.as_current():
                task = await tick.call(5, exec_modifier=PERIOD(at_time=at_time))
            listing = await req.get_scheduled_tasks_async("exec")
            (info,) = [item for item in listing if item["uuid"] == task.uuid]
            assert info["kind"] == "at_time"
            assert info["condition"] == "at_time"
            assert info["at_time"] == pytest.approx(sorted(at_time))

            await runs.wait_for(3)
            # A finished schedule leaves the executor's list; no event says so, so poll it.
            await eventually(
                lambda: _absent(req, "exec", task.uuid),
            )
            assert len(runs) == 3
            fired = [t for t, _ in runs.calls]
            assert fired == sorted(fired)
            for fired_at, due in zip(fired, sorted(at_time), strict=True):
                assert fired_at >= due - 0.01  # never early (timer resolution aside)
            assert await task.cancel_async() is False  # finished: nothing to cancel


async def _absent(g: Global, process: str, uuid: str) -> bool:
    return uuid not in uuids(await g.get_scheduled_tasks_async(process))


async def test_cancelling_an_at_time_schedule_after_its_first_fire_stops_the_rest(
    make_node: NodeFactory,
) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            now = time.time()
            with req.as_current():
                task = await tick.call(
                    1, exec_modifier=PERIOD(at_time=[now + 0.1, now + 0.4, now + 0.5])
                )
            await runs.wait_for(1)
            assert await task.cancel_async() is True
            await quiet_period(max(now + 0.7 - time.time(), 0))
            assert len(runs) == 1


# ---------------------------------------------------------------- lifetime, listing


async def test_schedule_outlives_its_requester(make_node: NodeFactory) -> None:
    runs = Runs()
    requester_left = anyio.Event()

    async def on_disconnect(g: Global, name: str) -> None:
        if name == "req":
            requester_left.set()

    with anyio.fail_after(10):
        async with (
            make_node("exec", {"tick": runs.tick}, on_node_disconnect=on_disconnect),
            make_node("obs") as observer,
        ):
            async with make_node("req") as req:
                await req.wait_function_async("tick", timeout=5)
                with req.as_current():
                    task = await tick.call(3, exec_modifier=PERIOD(interval=INTERVAL))
                await runs.wait_for(1)
            await requester_left.wait()
            after_leaving = len(runs)
            await runs.wait_for(after_leaving + 3)
            listing = await observer.get_scheduled_tasks_async("exec")
            (info,) = [item for item in listing if item["uuid"] == task.uuid]
            assert info["requester"] == "req"
            assert await observer.cancel_scheduled_task_by_uuid_async("exec", task.uuid) is True


async def test_listing_and_cancel_by_uuid_from_a_third_node(make_node: NodeFactory) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with (
            make_node("exec", {"tick": runs.tick}),
            make_node("req") as req,
            make_node("obs") as observer,
        ):
            await req.wait_function_async("tick", timeout=5)
            with req.as_current():
                task = await tick.call(1, exec_modifier=PERIOD(interval=INTERVAL))
            await runs.wait_for(2)
            before = time.time()
            listing = await observer.get_scheduled_tasks_async("exec")
            after = time.time()
            (info,) = listing
            assert info["uuid"] == task.uuid
            assert info["func_name"] == "tick"
            assert info["kind"] == "interval"
            assert info["condition"] == "period"  # daffi 2's key, kept
            assert info["interval"] == INTERVAL
            assert info["runs"] >= 2
            assert info["requester"] == "req"
            assert info["last_error"] is None
            assert isinstance(info["next_run"], float)
            # the coming grid point (a busy loop may be a little late waking up for it)
            assert before - 1.0 <= info["next_run"] <= after + INTERVAL + 1e-3

            # An unknown uuid is an error, as in daffi 2; an ended schedule is just False.
            with pytest.raises(RemoteCallError, match="no schedule 'no-such'") as unknown:
                await observer.cancel_scheduled_task_by_uuid_async("exec", "no-such")
            assert isinstance(unknown.value, LookupError)
            assert await observer.cancel_scheduled_task_by_uuid_async("exec", task.uuid) is True
            assert await observer.cancel_scheduled_task_by_uuid_async("exec", task.uuid) is False
            assert await observer.get_scheduled_tasks_async("exec") == []
            count = len(runs)
            await quiet_period()
            assert len(runs) == count
            # the requester's handle agrees: the executor no longer has it
            assert await task.cancel_async() is False


async def test_a_node_that_never_scheduled_lists_and_cancels_nothing(
    make_node: NodeFactory,
) -> None:
    """Its scheduler starts with its first schedule: before that, it has nothing to list,
    and a uuid to cancel is unknown there (RemoteCallError, as in daffi 2)."""
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": Runs().tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            assert await req.get_scheduled_tasks_async("exec") == []
            with pytest.raises(RemoteCallError, match="no schedule"):
                await req.cancel_scheduled_task_by_uuid_async("exec", "no-such")


async def test_first_schedules_requested_at_once_all_run(make_node: NodeFactory) -> None:
    """Several schedules reaching a node that has none yet: its scheduler starts once and
    runs every one of them."""
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            tasks: list[ScheduledTask] = []

            async def schedule(n: int) -> None:
                with req.as_current():
                    tasks.append(await tick.call(n, exec_modifier=PERIOD(interval=INTERVAL)))

            async with anyio.create_task_group() as tg:
                for n in range(4):
                    tg.start_soon(schedule, n)

            async def every_one_ran() -> bool:
                return {n for _, n in runs.calls} == set(range(4))

            await eventually(every_one_ran)
            listing = await req.get_scheduled_tasks_async("exec")
            assert uuids(listing) == {task.uuid for task in tasks}
            for task in tasks:
                assert await task.cancel_async() is True


async def test_listing_an_unknown_process_fails(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("req") as req:
            with pytest.raises(UnableToFindCandidate):
                await req.get_scheduled_tasks_async("nobody")


# ---------------------------------------------------------------- cancellation of a run


async def test_cancel_interrupts_an_async_run_in_progress(make_node: NodeFactory) -> None:
    started = anyio.Event()
    finished = anyio.Event()
    outcome: list[str] = []

    async def nap_cb() -> None:
        outcome.append("started")
        started.set()
        try:
            await anyio.sleep(30)
            outcome.append("slept")
        except anyio.get_cancelled_exc_class():
            outcome.append("cancelled")
            raise
        finally:
            finished.set()

    with anyio.fail_after(10):
        async with make_node("exec", {"nap": nap_cb}), make_node("req") as req:
            await req.wait_function_async("nap", timeout=5)
            with req.as_current():
                task = await nap.call(exec_modifier=PERIOD(interval=INTERVAL))
            await started.wait()
            assert await task.cancel_async() is True
            await finished.wait()
            await quiet_period()
    assert outcome == ["started", "cancelled"]


async def test_sync_cancel_from_daffis_own_loop_thread(make_node: NodeFactory) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            with req.as_current():
                task = await tick.call(1, exec_modifier=PERIOD(interval=INTERVAL))
            await runs.wait_for(2)
            began = time.perf_counter()
            assert task.cancel() is True  # on the loop thread: sends, does not wait
            assert time.perf_counter() - began < 1.0
            assert task.cancel() is False  # the handle knows it asked already
            # The request travels in the background; nothing signals its arrival: poll.
            await eventually(lambda: _absent(req, "exec", task.uuid))
            count = len(runs)
            await quiet_period()
            assert len(runs) == count


async def test_cancel_lets_a_sync_run_finish_in_its_thread_and_nothing_follows(
    make_node: NodeFactory,
) -> None:
    entered, release, ended = threading.Event(), threading.Event(), threading.Event()
    calls: list[str] = []

    def grind_cb() -> None:  # sync: runs in a worker thread, cannot be interrupted
        calls.append("start")
        entered.set()
        release.wait(5)
        calls.append("end")
        ended.set()

    with anyio.fail_after(10):
        async with make_node("exec", {"grind": grind_cb}), make_node("req") as req:
            await req.wait_function_async("grind", timeout=5)
            with req.as_current():
                task = await grind.call(exec_modifier=PERIOD(interval=INTERVAL))
            assert await anyio.to_thread.run_sync(entered.wait, 5)
            assert await task.cancel_async() is True
            release.set()
            assert await anyio.to_thread.run_sync(ended.wait, 5)
            await quiet_period()
    assert calls == ["start", "end"]


async def test_blocking_cancel_from_another_thread(make_node: NodeFactory) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            with req.as_current():
                task = await tick.call(1, exec_modifier=PERIOD(interval=INTERVAL))
            await runs.wait_for(1)
            # A worker thread gets the executor's answer, like a sync app would.
            assert await anyio.to_thread.run_sync(task.cancel) is True
            assert await anyio.to_thread.run_sync(task.cancel) is False
            assert await req.get_scheduled_tasks_async("exec") == []


async def test_receiver_pins_the_executor(make_node: NodeFactory) -> None:
    on_a, on_b = Runs(), Runs()
    with anyio.fail_after(10):
        async with (
            make_node("a", {"tick": on_a.tick}),
            make_node("b", {"tick": on_b.tick}),
            make_node("req") as req,
        ):
            await req.wait_process_async("a", timeout=5)
            await req.wait_process_async("b", timeout=5)
            with req.as_current():
                task = await tick.call(1, exec_modifier=PERIOD(interval=INTERVAL, receiver="b"))
            assert task.receiver == "b"
            await on_b.wait_for(3)
            assert await task.cancel_async() is True
            assert len(on_a) == 0
            assert await req.get_scheduled_tasks_async("a") == []


async def test_schedules_end_when_the_executor_stops(make_node: NodeFactory) -> None:
    runs = Runs()
    executor_left = anyio.Event()

    async def on_disconnect(g: Global, name: str) -> None:
        if name == "exec":
            executor_left.set()

    with anyio.fail_after(10):
        async with make_node("req", on_node_disconnect=on_disconnect) as req:
            async with make_node("exec", {"tick": runs.tick}):
                await req.wait_function_async("tick", timeout=5)
                with req.as_current():
                    task = await tick.call(1, exec_modifier=PERIOD(interval=INTERVAL))
                await runs.wait_for(2)
            count = len(runs)
            await executor_left.wait()
            # Not connected: nothing is cancelled (False, and a log line; see
            # test_schedule_cancel.py), rather than an exception.
            assert await task.cancel_async() is False
            # A new process with the same name starts with no schedules.
            async with make_node("exec", {"tick": runs.tick}):
                await req.wait_process_async("exec", timeout=5)
                assert await req.get_scheduled_tasks_async("exec") == []
                assert await task.cancel_async() is False
            await quiet_period()
            assert len(runs) == count


@pytest.mark.fabrics("memory")  # a controller of its own
async def test_schedule_survives_a_controller_restart(address: str, anyio_backend: str) -> None:
    """Schedules live on the executor: they run while the controller is down, and the
    requester can cancel them once everyone has reconnected to the new controller."""
    runs = Runs()
    registry = CallbackRegistry()
    registry.add(runs.tick, "tick")

    async def serve_controller(
        stop: anyio.Event, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with Global("ctrl", init_controller=True, init_node=False, address=address):
            task_status.started()
            await stop.wait()

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            first_stop = anyio.Event()
            await tg.start(serve_controller, first_stop)
            async with (
                Global("exec", address=address, registry=registry),
                Global("req", address=address, registry=CallbackRegistry()) as req,
            ):
                await req.wait_function_async("tick", timeout=5)
                with req.as_current():
                    task = await tick.call(1, exec_modifier=PERIOD(interval=INTERVAL))
                await runs.wait_for(1)

                first_stop.set()  # the controller goes away ...
                await runs.wait_for(len(runs) + 3)  # ... and the schedule keeps running
                second_stop = anyio.Event()
                await tg.start(serve_controller, second_stop)
                await req.wait_process_async("exec", timeout=10)
                listing = await req.get_scheduled_tasks_async("exec")
                assert task.uuid in uuids(listing)
                assert await task.cancel_async() is True
            second_stop.set()


# ---------------------------------------------------------------- errors


async def test_failing_runs_keep_the_schedule_and_reach_the_requester(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daffi")
    runs = Runs()

    async def fail_cb(n: int) -> None:
        await runs.tick(n)
        raise ValueError(f"boom {n}")

    with anyio.fail_after(10):
        async with make_node("exec", {"fail": fail_cb}), make_node("req") as req:
            await req.wait_function_async("fail", timeout=5)
            with req.as_current():
                task = await fail.call(4, exec_modifier=PERIOD(interval=INTERVAL))
            await runs.wait_for(3)
            # The report is a one-way message to the requester; no public event fires when it
            # lands, so poll the handle (bounded by fail_after).
            while task.last_error is None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            error = task.last_error
            assert isinstance(error, RemoteCallError)
            assert isinstance(error, ValueError)
            assert error.remote_type == "ValueError"
            assert "boom 4" in error.remote_message
            assert error.process_name == "exec"

            count = len(runs)
            await runs.wait_for(count + 2)  # still running
            listing = await req.get_scheduled_tasks_async("exec")
            (info,) = listing
            assert info["runs"] >= 5
            assert info["last_error"] == "ValueError: boom 4"
            assert await task.cancel_async() is True
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(task.uuid in r.getMessage() and "boom 4" in r.getMessage() for r in warnings)
    errors = [r for r in caplog.records if r.name == "daffi.scheduling"]
    assert any(r.levelno == logging.ERROR and "boom 4" in r.getMessage() for r in errors)


async def test_unknown_callback_raises_at_the_call(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": Runs().tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            with req.as_current(), pytest.raises(UnableToFindCandidate):
                await nobody_offers_this.call(exec_modifier=PERIOD(interval=INTERVAL))
            assert await req.get_scheduled_tasks_async("exec") == []


async def test_unbindable_arguments_raise_at_the_call(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": Runs().tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            with req.as_current():
                with pytest.raises(ArgumentsError, match="tick"):
                    await tick.call(1, 2, exec_modifier=PERIOD(interval=INTERVAL))
                with pytest.raises(ArgumentsError):
                    await tick.call(exec_modifier=PERIOD(at_time=time.time() + 60))
            assert await req.get_scheduled_tasks_async("exec") == []


# ---------------------------------------------------------------- the sync face


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A short private directory for the Unix socket (AF_UNIX paths are ~104 bytes at most)."""
    path = tempfile.mkdtemp(prefix="daffi-p-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_face_schedules_and_cancels(sock_dir: str, backend: str) -> None:
    """Globals started outside any loop (background threads), over a Unix socket."""
    lock = threading.Lock()
    calls: list[int] = []
    three = threading.Event()

    def tick_cb(n: int) -> None:  # sync: runs in a worker thread of the executor
        with lock:
            calls.append(n)
            if len(calls) >= 3:
                three.set()

    registry = CallbackRegistry()
    registry.add(tick_cb, "tick")
    common: dict[str, Any] = {"unix_sock_path": sock_dir, "backend": backend, "connect_timeout": 5}
    started: list[Global] = []
    try:
        started.append(Global("ctrl", init_controller=True, init_node=False, **common))
        started.append(Global("exec", registry=registry, **common))
        req = Global("req", registry=CallbackRegistry(), **common)
        started.append(req)
        req.wait_function("tick", timeout=5)
        with req.as_current():
            task = tick_blocking.call(9, exec_modifier=PERIOD(interval=INTERVAL))
        assert isinstance(task, ScheduledTask)
        assert task.receiver == "exec"
        assert three.wait(5)
        assert task.cancel() is True
        assert req.get_scheduled_tasks("exec") == []
        # A sync run already handed to a worker thread may still finish; after that, nothing.
        time.sleep(2 * INTERVAL)
        with lock:
            count = len(calls)
        time.sleep(4 * INTERVAL)  # the bounded "nothing happens" wait, see quiet_period
        with lock:
            assert len(calls) == count
        assert set(calls) == {9}
        assert task.cancel() is False
        assert req.cancel_scheduled_task_by_uuid("exec", task.uuid) is False
    finally:
        for g in reversed(started):
            g.stop()


# ---------------------------------------------------------------- the minimum interval


def test_a_period_below_one_millisecond_is_refused_by_the_requester() -> None:
    """Issue 11, D8: PERIOD(interval='1ns') was accepted and run 5,000 times a second."""
    for too_fast in ("1ns", 0.0005, "999us"):
        with pytest.raises(InitializationError, match=r"below the minimum of 0\.001 s"):
            PERIOD(interval=too_fast)
    assert PERIOD(interval="1ms").interval == 0.001


def test_min_period_interval_must_be_positive() -> None:
    with pytest.raises(InitializationError, match="min_period_interval"):
        Global("x", init_controller=True, min_period_interval=0)


@pytest.mark.parametrize("minimum", [None, 0.5])
async def test_the_executor_refuses_a_schedule_below_its_minimum(
    make_node: NodeFactory, minimum: float | None
) -> None:
    """A requester that skips PERIOD's check (a hostile or older one) is refused too; a node
    may raise its own minimum."""
    runs = Runs()
    options = {} if minimum is None else {"min_period_interval": minimum}
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}, **options), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            fast = PERIOD(interval=0.1 if minimum else 1.0)
            if minimum is None:
                object.__setattr__(fast, "interval", 1e-6)  # as a hostile requester sends it
            with req.as_current(), pytest.raises(ArgumentsError, match="min_period_interval"):
                await tick.call(1, exec_modifier=fast)
            assert await req.get_scheduled_tasks_async("exec") == []
            await anyio.sleep(0.05)
            assert runs.calls == []
