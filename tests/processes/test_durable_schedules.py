"""Durable schedules with real processes: the executor is killed with SIGKILL and started
again, and resumes its schedules from its store with the misfire policy applied; a kill at
any moment leaves a store that opens, with every schedule in it.

The controller and the requester are a ``Global`` in the test process; the executor is
``programs/durable_worker.py`` on asyncio and on trio, stopped by its PID.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daffi import PERIOD, Global, ScheduledTask
from daffi.decorators import fetcher
from daffi.registry import CallbackRegistry
from daffi.scheduling._store import STORE_FILE

from .conftest import Launcher, Program, short_temp_dir

pytestmark = [pytest.mark.processes, pytest.mark.timeout(120)]

INTERVAL = 0.2


@fetcher
def tick(tag: str) -> None: ...


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sock_dir(launch: Launcher) -> str:
    directory = short_temp_dir()
    launch.add_cleanup(lambda: __import__("shutil").rmtree(directory, ignore_errors=True))
    return directory


@pytest.fixture
def app(sock_dir: str) -> Iterator[Global]:
    """The controller and requester, in this process."""
    g = Global(
        process_name="app",
        init_controller=True,
        unix_sock_path=sock_dir,
        registry=CallbackRegistry(),
    )
    try:
        yield g
    finally:
        g.stop()


class Worker:
    """Starts ``durable_worker.py`` again and again with the same name and state."""

    def __init__(self, launch: Launcher, sock_dir: str, state: Path, backend: str) -> None:
        self.launch = launch
        self.argv = [sock_dir, str(state), backend, str(state.parent / "runs.txt")]
        self.runs_file = state.parent / "runs.txt"
        self.program: Program | None = None

    def start(self, app: Global) -> Program:
        self.program = self.launch("durable_worker.py", *self.argv, name="worker")
        self.program.wait_for_line(r"^READY", timeout=20)
        app.wait_process("worker", timeout=20)
        return self.program

    def kill(self) -> None:
        assert self.program is not None
        self.program.kill()  # SIGKILL, by PID

    def runs(self) -> list[tuple[str, float]]:
        if not self.runs_file.exists():
            return []
        lines = self.runs_file.read_text().splitlines()
        return [(tag, float(at)) for tag, at in (line.split() for line in lines)]

    def wait_runs(self, count: int, timeout: float = 10.0) -> list[tuple[str, float]]:
        deadline = time.monotonic() + timeout
        while len(runs := self.runs()) < count:
            if time.monotonic() > deadline:
                assert self.program is not None
                pytest.fail(f"{count} runs expected, got {len(runs)}\n{self.program.describe()}")
            time.sleep(0.01)
        return runs


def stored(state: Path) -> dict[str, int]:
    """uuid -> runs, read as another process would, after an integrity check."""
    db = sqlite3.connect(state / STORE_FILE)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return dict(db.execute("SELECT uuid, runs FROM schedules").fetchall())
    finally:
        db.close()


def test_a_durable_schedule_survives_sigkill_and_resumes_with_its_misfire_policy(
    app: Global, launch: Launcher, sock_dir: str, tmp_path: Path, backend: str
) -> None:
    state = tmp_path / "state"
    worker = Worker(launch, sock_dir, state, backend)
    worker.start(app)
    task = tick.call("a", exec_modifier=PERIOD(interval=INTERVAL, durable=True, misfire_grace=30))
    assert isinstance(task, ScheduledTask)
    assert task.durable
    before = worker.wait_runs(3)
    worker.kill()
    killed = time.time()
    assert stored(state)[task.uuid] >= len(before)  # each run committed before it started
    time.sleep(5 * INTERVAL)  # the executor stays down for several times of the schedule
    started = time.time()
    worker.start(app)
    runs = worker.wait_runs(len(before) + 2)
    late, following = runs[len(before)][1], runs[len(before) + 1][1]
    # Missed times within the grace make one run at once (coalesced), then the same grid.
    grid = before[0][1]
    assert started <= late < started + 2.0
    assert abs((following - grid) / INTERVAL - round((following - grid) / INTERVAL)) < 0.15
    assert not any(killed < at < started for _, at in runs)  # nothing ran while it was down
    assert task.refresh() is True
    assert task.runs is not None
    assert task.runs >= len(before) + 2
    assert task.skipped is not None
    assert task.skipped >= 3
    assert task.cancel() is True
    assert stored(state) == {}  # the cancel removed it from the store
    # Killed and started again: nothing is resumed.
    worker.kill()
    count = len(worker.runs())
    worker.start(app)
    assert app.get_scheduled_tasks("worker") == []
    time.sleep(3 * INTERVAL)
    assert len(worker.runs()) == count


def test_a_kill_at_any_moment_leaves_a_store_that_opens_with_every_schedule(
    app: Global, launch: Launcher, sock_dir: str, tmp_path: Path, backend: str
) -> None:
    """100 durable schedules firing every 10 ms keep the store busy; the executor is killed
    at random moments, eight times. Each time the file passes SQLite's integrity check,
    holds the 100 schedules, and no schedule's run count went back."""
    state = tmp_path / "state"
    worker = Worker(launch, sock_dir, state, backend)
    worker.start(app)
    tasks = [
        tick.call(f"s{i}", exec_modifier=PERIOD(interval=0.01, durable=True)) for i in range(100)
    ]
    uuids = {task.uuid for task in tasks}
    counts = dict.fromkeys(uuids, 0)
    chance = random.Random(20261205)
    for _ in range(8):
        time.sleep(chance.uniform(0.02, 0.4))
        worker.kill()
        now = stored(state)
        assert set(now) == uuids
        assert all(now[uuid] >= counts[uuid] for uuid in uuids)
        counts = now
        worker.start(app)
    assert sum(counts.values()) > 100  # the schedules really ran between the kills
    for task in tasks:
        assert task.cancel() is True
    assert stored(state) == {}
