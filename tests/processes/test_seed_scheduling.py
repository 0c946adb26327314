"""The seed document's scheduling programs, run verbatim as real processes (on this host's
time zone: they compute times with the daffi 2 idiom ``datetime.utcnow().timestamp()``,
right only on a UTC host; see test_time_zones.py for what other hosts get).

The seed's programs listen on and connect to ``localhost:8888``, so these tests run one after
another. Each reads the processes' output as it comes, with the time every line arrived, and
checks the timeline the seed promises.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[2]
#: the seed document's programs, verbatim (tests/unit/test_seed_copies.py checks them against
#: ../shared/seed/scheduling-tasks.md); docs/examples/scheduling has them in today's idiom
SEED = Path(__file__).resolve().parent / "seed_programs"
PROGRAMS = Path(__file__).resolve().parent / "scheduling_programs"


class Proc:
    """A child process whose merged output is collected line by line, with arrival times."""

    def __init__(self, *args: str, cwd: Path | None = None, tz: str | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if tz is not None:
            env["TZ"] = tz
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.lines: list[tuple[float, str]] = []
        self.exited_at: float | None = None
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        self.popen.wait()
        with self._cond:
            self.exited_at = time.monotonic()
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> tuple[float, re.Match[str]]:
        """Wait for the first line matching ``pattern``; its arrival time and match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, line in self.lines:
                    match = regex.search(line)
                    if match:
                        return at, match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.exited_at is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout} s; output:\n"
                        + "\n".join(line for _, line in self.lines[-40:])
                    )
                self._cond.wait(min(remaining, 0.2))

    def times_of(self, pattern: str) -> list[float]:
        regex = re.compile(pattern)
        with self._cond:
            return [at for at, line in self.lines if regex.search(line)]

    def wait_exit(self, timeout: float) -> float:
        """Wait for the process to exit; returns when it did."""
        self.popen.wait(timeout=timeout)
        self._reader.join(timeout=5)
        assert self.exited_at is not None
        return self.exited_at

    def output(self) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def stop(self) -> None:
        """Terminate by PID (kill if it does not go), never by name."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._reader.join(timeout=5)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def sock_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="daffi-t-", dir="/tmp")
    yield path
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


def start(procs: list[Proc], *args: str, cwd: Path | None = None, tz: str | None = None) -> Proc:
    proc = Proc(*args, cwd=cwd, tz=tz)
    procs.append(proc)
    return proc


def near(value: float, expected: float, tolerance: float) -> bool:
    return abs(value - expected) <= tolerance


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("server", "client"),
    [
        ("class_based_scheduler.py", "class_based_scheduler_client.py"),
        ("decorator_based_scheduler.py", "decorator_based_scheduler_service.py"),
    ],
    ids=["class-based", "decorator-based"],
)
def test_seed_programs_run_as_written(procs: list[Proc], server: str, client: str) -> None:
    scheduler = start(procs, str(SEED / server), cwd=SEED)
    scheduler.wait_for(r"listening on tcp://localhost:8888", timeout=15)
    requester = start(procs, str(SEED / client), cwd=SEED)

    # Task 1 every 5 s while the client sleeps 30 s.
    scheduled, _ = scheduler.wait_for(r"scheduled 'long_running_task1'", timeout=15)
    scheduled2, _ = scheduler.wait_for(r"scheduled 'long_running_task2'", timeout=45)
    client_exit = requester.wait_exit(timeout=15)
    assert requester.popen.returncode == 0, requester.output()
    # The client stops right after scheduling task 2 (it only says goodbye).
    assert client_exit - scheduled2 < 2.0

    # Task 2 runs 10 s and 30 s after it was scheduled, although the client has stopped.
    scheduler.wait_for(r"Task 2 complete", timeout=20)
    deadline = time.monotonic() + 30
    while len(scheduler.times_of(r"Task 2 complete")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    task2 = scheduler.times_of(r"Start long running task 2")
    assert len(task2) == 2, scheduler.output()
    assert near(task2[0] - scheduled2, 10, 1.0), task2[0] - scheduled2
    assert near(task2[1] - scheduled2, 30, 1.0), task2[1] - scheduled2

    task1 = scheduler.times_of(r"Start long running task 1")
    offsets = [at - scheduled for at in task1]
    # Runs at +5, +10, ... +25, and possibly +30 (the cancel races that tick).
    assert len(task1) in (5, 6), offsets
    for k, offset in enumerate(offsets, start=1):
        assert near(offset, 5 * k, 0.75), offsets
    # Never after the cancel: nothing in the 30 s the test kept watching.
    assert all(at < scheduled2 for at in task1), (offsets, scheduled2 - scheduled)


@pytest.mark.timeout(60)
def test_seed_at_time_snippet_runs_exactly_once(procs: list[Proc], tmp_path: Path) -> None:
    server = start(procs, str(PROGRAMS / "some_func_server.py"))
    server.wait_for(r"listening on tcp://localhost:8888", timeout=15)
    # The snippet as printed, followed by the seed's "sleep 3 s, then cancel" fragment.
    snippet = (SEED / "at_time_snippet.py").read_text()
    program = tmp_path / "at_time_with_cancel.py"
    program.write_text(snippet + "\nimport time\ntime.sleep(3)\ntask.cancel()\n")
    client = start(procs, str(program))
    scheduled, _ = server.wait_for(r"scheduled 'some_func'", timeout=15)
    client.wait_exit(timeout=20)
    assert client.popen.returncode == 0, client.output()
    # Watch past the second entry (+10 s): only the first (+2 s) may have fired.
    remaining = scheduled + 11.5 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)  # nothing to wait for: we check that nothing happens
    runs = server.times_of(r"some_func ran")
    assert len(runs) == 1, server.output()
    assert near(runs[0] - scheduled, 2, 0.75), runs[0] - scheduled
    assert "cancelled after 1 runs" in server.output()


@pytest.mark.timeout(60)
def test_listing_cancel_by_uuid_interrupt_and_errors(procs: list[Proc], sock_dir: str) -> None:
    controller = start(procs, str(PROGRAMS / "controller.py"), sock_dir)
    controller.wait_for(r"READY", timeout=15)
    executor = start(procs, str(PROGRAMS / "executor.py"), sock_dir)
    executor.wait_for(r"node 'executor' connected", timeout=15)
    requester = start(procs, str(PROGRAMS / "requester.py"), sock_dir)

    _, uuids = requester.wait_for(r"UUIDS tick=(\w+) slow=(\w+) failing=(\w+)", timeout=15)
    tick_uuid, slow_uuid, failing_uuid = uuids.groups()

    # A failing scheduled callback keeps its schedule and the requester sees the error.
    _, error = requester.wait_for(r"LAST_ERROR (.*)", timeout=15)
    assert "scheduled failure" in error.group(1)
    assert "ValueError" in error.group(1)
    requester.wait_for(r"a scheduled run of uuid \w+ failed", timeout=5)
    executor.wait_for(r"slow_task started", timeout=5)
    # The positional @fetcher(PERIOD(interval=1)) form ran too.
    executor.wait_for(r"tick requester", timeout=5)
    failures_before = len(executor.times_of(r"failing_task ran"))
    executor.wait_for(r"failing_task ran", timeout=5)
    deadline = time.monotonic() + 5
    while len(executor.times_of(r"failing_task ran")) < failures_before + 2:
        assert time.monotonic() < deadline, executor.output()
        time.sleep(0.1)

    # A third process lists the schedules and cancels two of them by uuid.
    operator = start(
        procs, str(PROGRAMS / "operator_cli.py"), sock_dir, slow_uuid, failing_uuid, "nope"
    )
    _, listing = operator.wait_for(r"LISTING (.*)", timeout=15)
    schedules = {item["uuid"]: item for item in json.loads(listing.group(1))}
    assert set(schedules) == {tick_uuid, slow_uuid, failing_uuid}
    assert schedules[slow_uuid]["func_name"] == "slow_task"
    assert schedules[slow_uuid]["kind"] == "interval"
    assert schedules[slow_uuid]["requester"] == "requester"
    assert schedules[failing_uuid]["runs"] >= 2
    assert schedules[failing_uuid]["last_error"].startswith("ValueError")
    operator.wait_for(rf"CANCEL {slow_uuid} True", timeout=10)
    operator.wait_for(rf"CANCEL {failing_uuid} True", timeout=10)
    operator.wait_for(r"CANCEL nope unknown: LookupError: .*no schedule 'nope'", timeout=10)
    _, after = operator.wait_for(r"AFTER (.*)", timeout=10)
    assert [item["uuid"] for item in json.loads(after.group(1))] == [tick_uuid]
    operator.wait_exit(timeout=10)

    # The async run in progress was interrupted by the cancel, not completed.
    executor.wait_for(r"slow_task left", timeout=5)
    assert "slow_task completed" not in executor.output()
    assert executor.times_of(r"slow_task started") == executor.times_of(r"slow_task started")[:1]

    assert requester.popen.stdin is not None
    requester.popen.stdin.write("\n")
    requester.popen.stdin.flush()
    requester.wait_exit(timeout=10)


# ------------------------------------------------------------------ other time zones
# The seed's at_time snippet computes its times with datetime.utcnow().timestamp(): right on a
# UTC host only. On other hosts it must warn (later than meant) or refuse (in the past); the
# documentation's version (time.time()) fires on time everywhere.

DOCS = ROOT / "docs" / "examples" / "scheduling"


def _snippet(tmp_path: Path, source: Path) -> Path:
    program = tmp_path / f"tz_{source.name}"
    program.write_text(source.read_text() + "\nimport time\ntime.sleep(3)\ntask.cancel()\n")
    return program


@pytest.mark.timeout(60)
def test_the_seed_snippet_in_new_york_warns_instead_of_firing_silently_late(
    procs: list[Proc], tmp_path: Path
) -> None:
    server = start(procs, str(PROGRAMS / "some_func_server.py"), tz="America/New_York")
    server.wait_for(r"listening on tcp://localhost:8888", timeout=15)
    client = start(
        procs, str(_snippet(tmp_path, SEED / "at_time_snippet.py")), tz="America/New_York"
    )
    client.wait_for(r"looks computed with datetime\.utcnow\(\)\.timestamp\(\)", timeout=15)
    client.wait_exit(timeout=20)
    assert client.popen.returncode == 0, client.output()
    assert "If you meant 2 s from now, write time.time() + 2" in client.output()
    assert not server.times_of(r"some_func ran"), server.output()


@pytest.mark.timeout(60)
def test_the_seed_snippet_in_kolkata_is_refused_with_the_reason(
    procs: list[Proc], tmp_path: Path
) -> None:
    server = start(procs, str(PROGRAMS / "some_func_server.py"), tz="Asia/Kolkata")
    server.wait_for(r"listening on tcp://localhost:8888", timeout=15)
    client = start(procs, str(_snippet(tmp_path, SEED / "at_time_snippet.py")), tz="Asia/Kolkata")
    client.wait_exit(timeout=20)
    assert client.popen.returncode != 0
    output = client.output()
    assert "InitializationError" in output, output
    assert "is in the past" in output, output
    assert "UTC+05:30" in output, output
    assert "datetime.utcnow().timestamp()" in output, output


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_the_documented_snippet_fires_on_time_in_every_zone(
    procs: list[Proc], tmp_path: Path, tz: str
) -> None:
    server = start(procs, str(PROGRAMS / "some_func_server.py"), tz=tz)
    server.wait_for(r"listening on tcp://localhost:8888", timeout=15)
    client = start(procs, str(_snippet(tmp_path, DOCS / "at_time_snippet.py")), tz=tz)
    scheduled, _ = server.wait_for(r"scheduled 'some_func'", timeout=15)
    ran, _ = server.wait_for(r"some_func ran", timeout=10)
    client.wait_exit(timeout=20)
    assert client.popen.returncode == 0, client.output()
    assert near(ran - scheduled, 2, 0.75), ran - scheduled
    assert "utcnow" not in client.output()


# ------------------------------------------------------------------ cancel return values


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["sync", "asyncio", "trio"])
def test_cancel_returns_whether_it_cancelled_in_every_case(
    procs: list[Proc], sock_dir: str, mode: str
) -> None:
    """An active schedule: True, and no run after it; cancelled already, an ``at_time``
    schedule that has finished, or an executor that was killed: False, never an exception
    (the last one with a log line). From a plain script, and from asyncio and trio apps, where
    ``cancel()`` on daffi's loop thread answers from the handle."""
    controller = start(procs, str(PROGRAMS / "controller.py"), sock_dir)
    controller.wait_for(r"READY", timeout=15)
    executor = start(procs, str(PROGRAMS / "executor.py"), sock_dir)
    executor.wait_for(r"node 'executor' connected", timeout=15)
    canceller = start(procs, str(PROGRAMS / "cancel_cases.py"), sock_dir, mode)

    def case(name: str) -> str:
        return canceller.wait_for(rf"CASE {name} (\S+)", timeout=15)[1].group(1)

    assert case("active") == "True"
    assert case("again") == "False"
    cancelled_at = time.monotonic()
    if mode != "sync":
        assert case("again_on_loop_thread") == "False"
        assert case("active_on_loop_thread") == "True"
    assert case("finished_at_time") == "False"
    if mode != "sync":
        assert case("finished_at_time_on_loop_thread") == "False"
    canceller.wait_for(r"KILL_EXECUTOR", timeout=15)
    # No run of the cancelled schedules after their cancel (c1: cancel_async/cancel; c4: the
    # loop thread's cancel reached the executor too).
    assert all(at <= cancelled_at for at in executor.times_of(r"tick c1"))
    executor.popen.kill()  # SIGKILL, by PID
    executor.wait_exit(timeout=10)
    controller.wait_for(r"node 'executor' (left|disconnected)", timeout=10)
    late_c4 = [at for at in executor.times_of(r"tick c4") if at > cancelled_at + 1.0]
    assert late_c4 == []
    assert canceller.popen.stdin is not None
    canceller.popen.stdin.write("\n")
    canceller.popen.stdin.flush()
    assert case("executor_gone") == "False"
    canceller.wait_for(r"was not cancelled: the executor is gone", timeout=5)
    canceller.wait_for(r"^DONE", timeout=10)
    canceller.wait_exit(timeout=10)


# ------------------------------------------------------------------ each form in each zone

#: the requester's zone -> the executor's (another one: only the requester's zone matters)
_EXECUTOR_ZONE = {
    "UTC": "Asia/Kolkata",
    "America/New_York": "UTC",
    "Asia/Kolkata": "America/New_York",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_each_form_of_time_in_each_zone(procs: list[Proc], sock_dir: str, tz: str) -> None:
    """A number (``time.time() + 1.5``), an aware datetime (UTC or another zone) and a naive
    one (local time) fire 1.5 s later on every host; daffi 2's ``utcnow().timestamp()`` idiom
    fires on time on a UTC host, is scheduled with a warning saying what to write in New York
    (hours late, so it does not fire here), and is refused in Kolkata (in the past)."""
    controller = start(procs, str(PROGRAMS / "controller.py"), sock_dir)
    controller.wait_for(r"READY", timeout=15)
    executor = start(procs, str(PROGRAMS / "executor.py"), sock_dir, tz=_EXECUTOR_ZONE[tz])
    executor.wait_for(r"node 'executor' connected", timeout=15)
    requester = start(procs, str(PROGRAMS / "tz_forms.py"), sock_dir, tz=tz)
    requester.wait_for(r"^DONE", timeout=30)
    requester.wait_exit(timeout=10)
    assert requester.popen.returncode == 0, requester.output()
    on_time = ["number", "aware_utc", "aware_tokyo", "naive_local"]
    if tz == "UTC":
        on_time.append("utcnow_idiom")
    for form in on_time:
        scheduled, _ = requester.wait_for(rf"^SCHEDULED {form}$", timeout=1)
        ran, _ = executor.wait_for(rf"^tick {form}$", timeout=5)
        assert near(ran - scheduled, 1.5, 0.6), (form, ran - scheduled)
    idiom = requester.output()
    if tz == "America/New_York":
        requester.wait_for(r"^SCHEDULED utcnow_idiom$", timeout=1)
        assert "looks computed with datetime.utcnow().timestamp()" in idiom
        assert "write time.time() + 1.5" in idiom
        assert not executor.times_of(r"^tick utcnow_idiom$")
    elif tz == "Asia/Kolkata":
        _, refused = requester.wait_for(r"^REFUSED utcnow_idiom (.*)", timeout=1)
        assert "is in the past" in refused.group(1)
        assert "datetime.utcnow().timestamp()" in refused.group(1)
    else:
        assert "utcnow" not in idiom.replace("utcnow_idiom", "")
