"""Durable schedules (``PERIOD(durable=True)``): kept in the executor's store, resumed when
it starts again with the same state directory, with the misfire policy applied to the times
it was down for; removed by a cancel or their end. A store that cannot be used is logged,
never fatal: the node runs on and its other schedules work.

In-process nodes over the memory transport, asyncio and trio; the executor is stopped (its
``async with`` ends) and started again under the same name and state directory. The process
tests (``tests/processes/test_durable_schedules.py``) kill it with SIGKILL instead.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from daffi import PERIOD, Global, ScheduledTask
from daffi.decorators import fetcher
from daffi.exceptions import GlobalContextError
from daffi.scheduling._store import STORE_FILE

from .conftest import NodeFactory

pytestmark = pytest.mark.anyio


@fetcher
async def tick(tag: str) -> None:
    pass


class Runs:
    """The start times of the runs of ``tick``, by tag, and a way to wait for a count."""

    def __init__(self, fail_on: frozenset[int] = frozenset()) -> None:
        self.times: list[float] = []
        self.fail_on = fail_on
        self._changed = anyio.Event()

    async def tick(self, tag: str) -> None:
        self.times.append(time.time())
        self._changed.set()
        self._changed = anyio.Event()
        if len(self.times) in self.fail_on:
            raise ValueError(f"run {len(self.times)} of {tag} failed")

    async def wait_for(self, count: int) -> None:
        while len(self.times) < count:
            await self._changed.wait()


def rows(state_dir: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(state_dir / STORE_FILE) as db:
        return db.execute("SELECT uuid, runs FROM schedules").fetchall()


async def schedule(req: Global, modifier: PERIOD, tag: str = "t") -> ScheduledTask:
    await req.wait_function_async("tick", timeout=5)
    with req.as_current():
        task = await tick.call(tag, exec_modifier=modifier)
    assert isinstance(task, ScheduledTask)
    return task


async def test_a_durable_interval_resumes_after_a_restart_and_a_cancel_removes_it(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    runs = Runs()
    with anyio.fail_after(15):
        async with make_node("req") as req:
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path):
                task = await schedule(req, PERIOD(interval=0.05, durable=True))
                assert task.durable is True
                await runs.wait_for(3)
            stored = rows(tmp_path)
            assert [uuid for uuid, _ in stored] == [task.uuid]
            assert stored[0][1] >= 3  # each run was committed before it started
            before = len(runs.times)
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path):
                await runs.wait_for(before + 2)
                assert await task.refresh_async() is True
                assert task.runs is not None
                assert task.runs >= before + 2
                assert await task.cancel_async() is True
            assert rows(tmp_path) == []
            # Started again: nothing to resume.
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path) as ex:
                assert await ex.get_scheduled_tasks_async("exec") == []


async def _stop_and_restart(
    make_node: NodeFactory, req: Global, runs: Runs, state_dir: Path, modifier: PERIOD
) -> tuple[float, float]:
    """Schedule ``modifier``, stop the executor after two runs, start it again just after a
    grid point four intervals later; returns (that grid point, when the restart began)."""
    interval = modifier.interval
    assert interval is not None
    async with make_node("exec", {"tick": runs.tick}, state_dir=state_dir):
        await schedule(req, modifier)
        await runs.wait_for(2)
    grid = runs.times[1] + 4 * interval  # runs start a little after their grid point
    await anyio.sleep(max(grid + 0.02 - time.time(), 0))
    return grid, time.time()


async def test_times_missed_while_down_make_one_late_run_within_the_grace(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """With ``misfire_grace`` and ``coalesce`` (the default), the times missed while the
    executor was down make one run, at once, when it resumes; the others are skipped."""
    runs = Runs()
    with anyio.fail_after(15):
        async with make_node("req") as req:
            modifier = PERIOD(interval=0.25, durable=True, misfire_grace=30)
            grid, restarted = await _stop_and_restart(make_node, req, runs, tmp_path, modifier)
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path) as ex:
                await runs.wait_for(3)
                late = runs.times[2]
                # The late run comes before the next grid point (grid + 0.25).
                assert restarted <= late < grid + 0.2
                [info] = await ex.get_scheduled_tasks_async("exec")
                assert info["runs"] == 3
                assert info["skipped"] >= 3  # the other missed times


async def test_times_missed_while_down_are_skipped_without_a_grace(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """Without ``misfire_grace`` (the default for ``interval``), every missed time is
    skipped: the next run is at the next point of the same grid."""
    runs = Runs()
    with anyio.fail_after(15):
        async with make_node("req") as req:
            modifier = PERIOD(interval=0.25, durable=True)
            grid, _ = await _stop_and_restart(make_node, req, runs, tmp_path, modifier)
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path) as ex:
                await runs.wait_for(3)
                assert runs.times[2] >= grid + 0.25 - 0.005  # on the grid, not at once
                assert runs.times[2] - (runs.times[1] + 5 * 0.25) < 0.1  # the same grid
                [info] = await ex.get_scheduled_tasks_async("exec")
                assert info["runs"] == 3
                assert info["skipped"] >= 4


async def test_a_durable_at_time_runs_a_missed_time_on_resume_and_ends(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """``at_time`` runs each time however late (its default policy), also after a restart;
    after its last time the schedule ends and leaves the store."""
    runs = Runs()
    with anyio.fail_after(15):
        async with make_node("req") as req:
            now = time.time()
            times = [now + 0.3, now + 0.6, now + 1.4]
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path):
                task = await schedule(req, PERIOD(at_time=times, durable=True))
                await runs.wait_for(1)
            await anyio.sleep(max(times[1] + 0.2 - time.time(), 0))  # down at the 2nd time
            restarted = time.time()
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path):
                await runs.wait_for(2)
                assert restarted <= runs.times[1] < times[2]  # missed: run at once
                await runs.wait_for(3)
                assert runs.times[2] >= times[2]
                # until the schedule has ended (a remote state: polled)
                while await task.refresh_async():  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            assert len(runs.times) == 3
            assert rows(tmp_path) == []


async def test_max_runs_counts_the_runs_before_a_restart(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    runs = Runs()
    with anyio.fail_after(15):
        async with make_node("req") as req:
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path):
                await schedule(req, PERIOD(interval=0.1, durable=True, max_runs=4))
                await runs.wait_for(2)
            done = len(runs.times)
            assert done in (2, 3)
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path) as ex:
                await runs.wait_for(4)
                while await ex.get_scheduled_tasks_async("exec"):  # noqa: ASYNC110 (remote)
                    await anyio.sleep(0.05)
            assert len(runs.times) == 4
            assert rows(tmp_path) == []


async def test_a_node_with_a_generated_name_refuses_durable_schedules(
    make_node: NodeFactory, address: str
) -> None:
    from daffi.registry import CallbackRegistry

    runs = Runs()
    registry = CallbackRegistry()
    registry.add(runs.tick, "tick")
    with anyio.fail_after(10):
        async with make_node("req") as req, Global(address=address, registry=registry) as ex:
            assert ex.state_dir is None
            with pytest.raises(GlobalContextError, match="process name was generated"):
                await schedule(req, PERIOD(interval=0.05, durable=True, receiver=ex.process_name))
            # Not durable: works.
            task = await schedule(req, PERIOD(interval=0.05, receiver=ex.process_name))
            await runs.wait_for(1)
            assert await task.cancel_async() is True


async def test_a_corrupt_store_is_logged_and_left_as_it_is(
    make_node: NodeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / STORE_FILE
    garbage = b"this is not an SQLite database\n" * 100
    store.write_bytes(garbage)
    runs = Runs()
    caplog.set_level(logging.INFO, logger="daffi")
    with anyio.fail_after(10):
        async with (
            make_node("req") as req,
            make_node("exec", {"tick": runs.tick}, state_dir=tmp_path),
        ):
            with pytest.raises(GlobalContextError, match="corrupt"):
                await schedule(req, PERIOD(interval=0.05, durable=True))
            task = await schedule(req, PERIOD(interval=0.05))  # other schedules work
            await runs.wait_for(2)
            assert await task.cancel_async() is True
    assert store.read_bytes() == garbage  # nothing lost: the file is left for the user
    [line] = [r.getMessage() for r in caplog.records if "durable schedules are off" in r.message]
    assert str(store) in line
    assert "corrupt" in line
    assert "move the file away" in line


async def test_an_unwritable_state_dir_is_logged_and_durable_requests_say_why(
    make_node: NodeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    runs = Runs()
    caplog.set_level(logging.INFO, logger="daffi")
    with anyio.fail_after(10):
        async with (
            make_node("req") as req,
            make_node("exec", {"tick": runs.tick}, state_dir=blocker / "state"),
        ):
            with pytest.raises(GlobalContextError, match="cannot make the state directory"):
                await schedule(req, PERIOD(interval=0.05, durable=True))
            task = await schedule(req, PERIOD(interval=0.05))
            await runs.wait_for(1)
            assert await task.cancel_async() is True
    assert any("durable schedules are off" in r.getMessage() for r in caplog.records)


async def test_a_store_locked_by_another_process_is_logged_and_runs_go_on(
    make_node: NodeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock held elsewhere makes the writes fail (logged); the schedule keeps running from
    memory, and its progress is saved again once the lock is released."""
    runs = Runs()
    caplog.set_level(logging.INFO, logger="daffi")
    with anyio.fail_after(15):
        async with (
            make_node("req") as req,
            make_node("exec", {"tick": runs.tick}, state_dir=tmp_path),
        ):
            task = await schedule(req, PERIOD(interval=0.05, durable=True))
            await runs.wait_for(1)
            other = sqlite3.connect(tmp_path / STORE_FILE, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            try:
                count = len(runs.times)
                await runs.wait_for(count + 3)  # the runs go on while the store is locked
            finally:
                other.execute("ROLLBACK")
                other.close()
            count = len(runs.times)
            await runs.wait_for(count + 2)
            assert await task.cancel_async() is True
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not save" in m and "locked by another process" in m for m in messages)
    assert any("is written again" in m for m in messages)
    assert rows(tmp_path) == []


async def test_a_store_locked_at_start_is_logged_and_the_node_runs(
    make_node: NodeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = Runs()
    with anyio.fail_after(15):
        async with make_node("req") as req:
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path):
                task = await schedule(req, PERIOD(interval=0.05, durable=True))
                await runs.wait_for(1)
            caplog.set_level(logging.INFO, logger="daffi")
            other = sqlite3.connect(tmp_path / STORE_FILE, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            try:
                async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path) as ex:
                    assert await ex.get_scheduled_tasks_async("exec") == []
                    with pytest.raises(GlobalContextError, match="locked by another process"):
                        await schedule(req, PERIOD(interval=0.05, durable=True))
            finally:
                other.execute("ROLLBACK")
                other.close()
            # The schedule was not lost: the next start resumes it.
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path):
                count = len(runs.times)
                await runs.wait_for(count + 1)
                assert await task.cancel_async() is True
    assert any("durable schedules are off" in r.getMessage() for r in caplog.records)


async def test_listings_show_the_trigger_whether_durable_and_the_progress(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    runs = Runs()
    with anyio.fail_after(10):
        async with (
            make_node("req") as req,
            make_node("exec", {"tick": runs.tick}, state_dir=tmp_path) as ex,
        ):
            cron = await schedule(
                req, PERIOD(cron="0 3 * * *", timezone="Asia/Kolkata", durable=True)
            )
            plain = await schedule(req, PERIOD(interval=60))
            listing = {i["uuid"]: i for i in await req.get_scheduled_tasks_async("exec")}
            assert listing[cron.uuid]["kind"] == "cron"
            assert listing[cron.uuid]["cron"] == "0 3 * * *"
            assert listing[cron.uuid]["timezone"] == "Asia/Kolkata"
            assert listing[cron.uuid]["durable"] is True
            assert listing[plain.uuid]["durable"] is False
            assert listing[plain.uuid]["interval"] == 60.0
            for info in listing.values():
                assert info["runs"] == 0
                assert info["skipped"] == 0
                assert info["next_run"] > time.time()
            assert [uuid for uuid, _ in rows(tmp_path)] == [cron.uuid]
            assert await ex.cancel_scheduled_task_by_uuid_async("exec", cron.uuid) is True
            assert await plain.cancel_async() is True
            assert rows(tmp_path) == []


async def test_the_last_error_is_fetched_and_survives_a_restart(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    runs = Runs(fail_on=frozenset({2}))
    with anyio.fail_after(15):
        async with make_node("req") as req:
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path):
                task = await schedule(req, PERIOD(interval=0.05, durable=True), tag="x")
                await runs.wait_for(3)
                task.last_error = None  # forget the pushed report: refresh fetches it
                assert await task.refresh_async() is True
                assert isinstance(task.last_error, ValueError)
                assert "run 2 of x failed" in str(task.last_error)
            async with make_node("exec", {"tick": runs.tick}, state_dir=tmp_path) as ex:
                [info] = await ex.get_scheduled_tasks_async("exec")
                assert info["last_error"] == "ValueError: run 2 of x failed"
                task.last_error = None
                assert await task.refresh_async() is True
                assert isinstance(task.last_error, ValueError)
                assert await task.cancel_async() is True
