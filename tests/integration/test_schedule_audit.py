"""Who cancelled a schedule: the executor logs every cancel and tells the requester.

A requester ``req`` schedules ``tick`` on an executor ``exec``; an observer ``obs`` (a third
node) may cancel it by uuid. The executor logs each cancel (WARNING when the canceller is not
the requester, INFO otherwise) and reports a cancel by another node to the requester, whose
``ScheduledTask`` then shows ``cancelled_by`` and ``cancelled_at``. Only the executor a handle
points at may report about it. In-process nodes over the memory transport, asyncio and trio.
"""

from __future__ import annotations

import logging
import time

import anyio
import msgspec
import pytest

from daffi import PERIOD, Global, ScheduledTask
from daffi._schedule_host import SYSTEM_SCHEDULE_CANCELLED, SYSTEM_SCHEDULE_ERROR
from daffi.decorators import fetcher
from daffi.exceptions import daffi_error_info

from .conftest import NodeFactory

pytestmark = pytest.mark.anyio

INTERVAL = 0.05


@fetcher
async def tick(n: int) -> None:
    pass


class Runs:
    """An async ``tick(n)`` callback counting its runs; tests wait for the n-th run."""

    def __init__(self) -> None:
        self.count = 0
        self._waiters: list[tuple[int, anyio.Event]] = []

    async def tick(self, n: int) -> None:
        self.count += 1
        for count, event in self._waiters:
            if self.count >= count:
                event.set()

    async def wait_for(self, count: int) -> None:
        if self.count >= count:
            return
        event = anyio.Event()
        self._waiters.append((count, event))
        await event.wait()


async def schedule_tick(req: Global, receiver: str | None = None) -> ScheduledTask:
    with req.as_current():
        task = await tick.call(1, exec_modifier=PERIOD(interval=INTERVAL, receiver=receiver))
    assert isinstance(task, ScheduledTask)
    return task


async def cancelled_by_set(task: ScheduledTask) -> None:
    """Wait until the report of a cancel reached ``task``.

    The executor's report is a one-way message; no public event fires when it lands, so this
    polls the handle (callers bound it with ``anyio.fail_after``).
    """
    while task.cancelled_by is None:  # noqa: ASYNC110
        await anyio.sleep(0.01)


def cancel_lines(
    caplog: pytest.LogCaptureFixture, task: ScheduledTask, executor: str
) -> list[logging.LogRecord]:
    """The executor's log lines about cancelling ``task`` (not what a requester logs when it
    is told: that line names no requester)."""
    return [
        r
        for r in caplog.records
        if r.name == "daffi.node"
        and r.getMessage().startswith(f"node {executor!r}:")
        and task.uuid in r.getMessage()
        and "requested by" in r.getMessage()
        and "cancelled by" in r.getMessage()
    ]


# ---------------------------------------------------------------- a third node cancels


async def test_a_cancel_by_a_third_node_is_logged_and_reaches_the_requester(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="daffi")
    runs = Runs()
    with anyio.fail_after(10):
        async with (
            make_node("exec", {"tick": runs.tick}),
            make_node("req") as req,
            make_node("obs") as observer,
        ):
            await req.wait_function_async("tick", timeout=5)
            task = await schedule_tick(req)
            await runs.wait_for(2)
            assert task.cancelled_by is None
            assert task.cancelled_at is None

            before = time.time()
            assert await observer.cancel_scheduled_task_by_uuid_async("exec", task.uuid) is True
            await cancelled_by_set(task)
            after = time.time()

            assert task.cancelled_by == "obs"
            assert task.cancelled_at is not None
            assert before <= task.cancelled_at <= after
            # Nothing is left to cancel, and a cancel that finds nothing keeps the record.
            assert await task.cancel_async() is False
            assert task.cancelled_by == "obs"

    (line,) = cancel_lines(caplog, task, "exec")
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert "'obs'" in message
    assert "'req'" in message
    assert "'tick'" in message
    # The requester logs what it was told, naming the executor and the canceller.
    told = [
        r
        for r in caplog.records
        if r.getMessage().startswith("node 'req':") and task.uuid in r.getMessage()
    ]
    assert len(told) == 1
    assert told[0].levelno == logging.WARNING
    assert "'exec'" in told[0].getMessage()
    assert "'obs'" in told[0].getMessage()


async def test_the_executor_cancelling_is_a_third_party_too(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The executor cancelling a schedule that another node requested (by uuid, through its
    own Global) is reported like any other node's cancel."""
    caplog.set_level(logging.INFO, logger="daffi")
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}) as executor, make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            task = await schedule_tick(req)
            await runs.wait_for(1)
            before = time.time()
            assert await executor.cancel_scheduled_task_by_uuid_async("exec", task.uuid) is True
            await cancelled_by_set(task)
            assert task.cancelled_by == "exec"
            assert task.cancelled_at is not None
            assert before <= task.cancelled_at <= time.time()

    (line,) = cancel_lines(caplog, task, "exec")
    assert line.levelno == logging.WARNING
    assert "requested by 'req'" in line.getMessage()
    assert "cancelled by 'exec'" in line.getMessage()


async def test_a_requester_that_is_gone_is_not_told_and_the_cancel_works(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="daffi")
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
                task = await schedule_tick(req)
                await runs.wait_for(1)
            await requester_left.wait()
            assert await observer.cancel_scheduled_task_by_uuid_async("exec", task.uuid) is True
            assert await observer.get_scheduled_tasks_async("exec") == []

    (line,) = cancel_lines(caplog, task, "exec")
    assert line.levelno == logging.WARNING
    assert "requested by 'req'" in line.getMessage()
    assert "cancelled by 'obs'" in line.getMessage()
    assert any(
        r.getMessage().startswith("node 'exec':")
        and "not connected" in r.getMessage()
        and task.uuid in r.getMessage()
        for r in caplog.records
    )
    # The handle of the requester that left was never told.
    assert task.cancelled_by is None
    assert task.cancelled_at is None


# ---------------------------------------------------------------- the requester cancels


@pytest.mark.parametrize(
    "way", ["cancel_async", "cancel from a thread", "cancel on the loop", "uuid"]
)
async def test_a_cancel_by_the_requester_is_logged_at_info(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture, way: str
) -> None:
    caplog.set_level(logging.INFO, logger="daffi")
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}), make_node("req") as req:
            await req.wait_function_async("tick", timeout=5)
            task = await schedule_tick(req)
            await runs.wait_for(1)
            assert task.cancelled_by is None
            before = time.time()
            if way == "cancel_async":
                assert await task.cancel_async() is True
            elif way == "cancel from a thread":
                assert await anyio.to_thread.run_sync(task.cancel) is True
            elif way == "cancel on the loop":
                assert task.cancel() is True  # sent without waiting for the answer
                await cancelled_by_set(task)
            else:
                assert await req.cancel_scheduled_task_by_uuid_async("exec", task.uuid) is True
            after = time.time()
            assert task.cancelled_by == "req"
            assert task.cancelled_at is not None
            assert before <= task.cancelled_at <= after
            assert await task.cancel_async() is False
            # A second cancel that found nothing keeps the first record.
            assert task.cancelled_by == "req"

    (line,) = cancel_lines(caplog, task, "exec")
    assert line.levelno == logging.INFO
    assert "requested by 'req'" in line.getMessage()
    assert "cancelled by 'req'" in line.getMessage()
    assert "'tick'" in line.getMessage()


async def test_a_schedule_requested_on_the_node_itself(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A node that runs its own schedule: another node's cancel reaches its handle without
    crossing the wire."""
    caplog.set_level(logging.INFO, logger="daffi")
    runs = Runs()
    with anyio.fail_after(10):
        async with make_node("exec", {"tick": runs.tick}) as executor, make_node("obs") as observer:
            task = await schedule_tick(executor, receiver="exec")
            assert task.receiver == "exec"
            await runs.wait_for(1)
            before = time.time()
            assert await observer.cancel_scheduled_task_by_uuid_async("exec", task.uuid) is True
            after = time.time()
            # Recorded before the executor answered the cancel.
            assert task.cancelled_by == "obs"
            assert task.cancelled_at is not None
            assert before <= task.cancelled_at <= after

    (line,) = cancel_lines(caplog, task, "exec")
    assert line.levelno == logging.WARNING
    assert "requested by 'exec'" in line.getMessage()
    assert "cancelled by 'obs'" in line.getMessage()


# ---------------------------------------------------------------- forged reports


async def test_a_report_from_a_node_that_is_not_the_executor_is_ignored(
    make_node: NodeFactory,
) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with (
            make_node("exec", {"tick": runs.tick}),
            make_node("req") as req,
            make_node("obs") as observer,
        ):
            await req.wait_function_async("tick", timeout=5)
            task = await schedule_tick(req)
            await runs.wait_for(1)
            # The observer sends the executor's report itself, naming itself and the
            # executor as the canceller, for the real uuid and for one req never requested.
            # A round trip: once it returns, req has handled the report.
            for by in ("obs", "exec"):
                for schedule_uuid in (task.uuid, "no-such"):
                    answer = await observer._execution.schedules.system_call(
                        "req", SYSTEM_SCHEDULE_CANCELLED, schedule_uuid, by, time.time()
                    )
                    assert answer is None
            assert task.cancelled_by is None
            assert task.cancelled_at is None
            # The schedule was never cancelled: it keeps running, and a real cancel is
            # recorded as usual.
            count = runs.count
            await runs.wait_for(count + 2)
            assert await task.cancel_async() is True
            assert task.cancelled_by == "req"


async def test_an_error_report_from_a_node_that_is_not_the_executor_is_ignored(
    make_node: NodeFactory,
) -> None:
    """A failed-run report (``last_error``) is taken only from the handle's executor."""
    runs = Runs()
    with anyio.fail_after(10):
        async with (
            make_node("exec", {"tick": runs.tick}),
            make_node("req") as req,
            make_node("obs") as observer,
        ):
            await req.wait_function_async("tick", timeout=5)
            task = await schedule_tick(req)
            await runs.wait_for(1)
            info = daffi_error_info("ValueError", "forged failure", "obs")
            answer = await observer._execution.schedules.system_call(
                "req", SYSTEM_SCHEDULE_ERROR, task.uuid, msgspec.to_builtins(info)
            )
            assert answer is None
            assert task.last_error is None
            await task.cancel_async()
