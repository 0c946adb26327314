"""What ``ScheduledTask.cancel()`` and ``cancel_async()`` return, in every case.

They return whether this call cancelled something: True for an active schedule, False for
one cancelled already, for an ``at_time`` schedule that has finished, and for one whose
executor has gone (with a log line, not an exception). ``cancel()`` is tried from a plain
thread and from daffi's own loop thread (an ``async with`` app), where it cannot wait for
the executor and answers from what the handle knows. In-process nodes over the memory
transport, asyncio and trio.
"""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from daffi import PERIOD, Global, ScheduledTask
from daffi.decorators import fetcher

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.fabrics("memory", "nats")]


@fetcher
async def tick() -> None:
    pass


class Runs:
    def __init__(self) -> None:
        self.count = 0
        self.changed = anyio.Event()

    async def tick(self) -> None:
        self.count += 1
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, count: int) -> None:
        while self.count < count:
            await self.changed.wait()


async def schedule(req: Global, modifier: PERIOD) -> ScheduledTask:
    with req.as_current():
        task = await tick.call(exec_modifier=modifier)
    assert isinstance(task, ScheduledTask)
    return task


async def test_an_active_interval_schedule_is_cancelled_once(make_node: NodeFactory) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            task = await schedule(req, PERIOD(interval=0.05))
            await runs.wait_for(1)
            assert await task.cancel_async() is True
            assert await task.cancel_async() is False  # cancelled already
            assert await anyio.to_thread.run_sync(task.cancel) is False


async def test_cancel_on_the_loop_thread_answers_from_the_handle(make_node: NodeFactory) -> None:
    """In an async app, ``cancel()`` runs on daffi's loop thread: True for a schedule the
    handle believes active (and it is cancelled), False once it was cancelled."""
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            task = await schedule(req, PERIOD(interval=0.05))
            await runs.wait_for(1)
            assert task.cancel() is True
            assert task.cancel() is False
            # The cancel really reached the executor: no more runs.
            await anyio.sleep(0.2)
            count = runs.count
            await anyio.sleep(0.2)
            assert runs.count == count


async def test_a_finished_at_time_schedule_cancels_nothing(make_node: NodeFactory) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            task = await schedule(req, PERIOD(at_time=time.time() + 0.1))
            await runs.wait_for(1)
            # Past its last time by more than the handle's second of slack.
            await anyio.sleep(1.2)
            assert task.cancel() is False  # on the loop thread: the handle knows
            assert await anyio.to_thread.run_sync(task.cancel) is False
            assert await task.cancel_async() is False


async def test_an_executor_that_has_gone_cancels_nothing_and_says_so(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    runs = Runs()
    with anyio.fail_after(15):
        async with make_node("req") as req:
            async with make_node("exec", {"tick": runs.tick}):
                await req.wait_function_async("tick", timeout=5)
                task = await schedule(req, PERIOD(interval=0.05))
                await runs.wait_for(1)
            with caplog.at_level(logging.INFO, logger="daffi"):
                assert await task.cancel_async() is False
                assert await anyio.to_thread.run_sync(task.cancel) is False
            lines = [
                r.getMessage() for r in caplog.records if "was not cancelled" in r.getMessage()
            ]
            assert len(lines) == 2
            assert all(task.uuid in line and "'exec'" in line for line in lines)


async def test_a_cron_schedule_runs_lists_and_cancels(make_node: NodeFactory) -> None:
    """``PERIOD(cron=..., timezone=...)`` end to end: every second (six fields), listed with
    its expression and zone, stopped by a cancel."""
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            task = await schedule(req, PERIOD(cron="* * * * * *", timezone="Asia/Kolkata"))
            await runs.wait_for(2)
            (listed,) = await req.get_scheduled_tasks_async("exec")
            assert listed["kind"] == "cron"
            assert listed["cron"] == "* * * * * *"
            assert listed["timezone"] == "Asia/Kolkata"
            assert await task.cancel_async() is True
            count = runs.count
            await anyio.sleep(1.5)
            assert runs.count == count


async def test_bounds_travel_to_the_executor(make_node: NodeFactory) -> None:
    """``max_runs`` and ``start`` reach the executor: the schedule waits for its start, runs
    three times and ends (it leaves the listing; a cancel then cancels nothing)."""
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            start = time.time() + 0.5
            task = await schedule(req, PERIOD(interval=0.05, start=start, max_runs=3))
            (listed,) = await req.get_scheduled_tasks_async("exec")
            assert (listed["max_runs"], listed["start"]) == (3, start)
            await runs.wait_for(3)
            assert time.time() >= start
            await anyio.sleep(0.3)
            assert runs.count == 3
            assert await req.get_scheduled_tasks_async("exec") == []
            assert await task.cancel_async() is False


async def test_refresh_fetches_next_run_runs_and_skipped(make_node: NodeFactory) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            task = await schedule(req, PERIOD(interval=0.1))
            assert (task.next_run, task.runs, task.skipped) == (None, None, None)
            await runs.wait_for(2)
            assert await task.refresh_async() is True
            assert task.runs is not None
            assert task.runs >= 2
            assert task.skipped == 0
            assert task.next_run is not None
            assert time.time() - 1 < task.next_run < time.time() + 1
            # From a plain thread, the blocking twin.
            assert await anyio.to_thread.run_sync(task.refresh) is True
            assert await task.cancel_async() is True
            assert await task.refresh_async() is False
            assert task.next_run is None
