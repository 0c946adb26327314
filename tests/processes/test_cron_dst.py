"""Cron schedules across daylight saving time, in real processes on a fake clock.

docs/scheduling.md promises Debian cron's rule for a schedule in a time zone with daylight
saving time: a job at a fixed time (``30 2 * * *``) runs once a day, at the end of the gap
on the night that skips its time and at the first pass on the night that repeats it; any
other job (``*/15 * * * *``, ``0 * * * *``) follows elapsed time, so it has nothing to run in
the skipped hour and runs in both passes of the repeated one. tests/unit/test_cron.py checks
the trigger and the scheduler on a mocked loop clock; this module checks the whole path
(requester, controller, executor, the system clock) in real processes.

Each case starts ``scheduling_programs/cron_dst_executor.py`` under ``faketime`` (Debian's
libfaketime): its clock starts a few fake minutes before one of Europe/Berlin's 2026
transitions and runs ``SPEED`` times faster than real time, so that two hours of schedule
take a minute. The program asks itself, through the public API, to run ``record`` on three
cron expressions in Europe/Berlin, prints every run's ``time.time()``, and exits at a given
fake time. Every case runs on asyncio and trio, and on a host whose zone is the schedule's
(Europe/Berlin) or another one (America/New_York, where the clocks change on other dates):
the schedule's zone decides, not the host's. The processes of a transition run in parallel.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from .conftest import Program, short_temp_dir

FAKETIME = shutil.which("faketime")

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(
        FAKETIME is None,
        reason="needs faketime (Debian/Ubuntu package 'faketime', libfaketime) to run the "
        "executor on a fake clock",
    ),
]

PROGRAM = Path(__file__).resolve().parent / "scheduling_programs" / "cron_dst_executor.py"
BERLIN = ZoneInfo("Europe/Berlin")
ZONE = "Europe/Berlin"  # the zone of every schedule
HOSTS = ["Europe/Berlin", "America/New_York"]  # the TZ of the executor process
BACKENDS = ["asyncio", "trio"]

#: how much faster than real time the fake clock runs: 1 ms real is 120 ms fake
SPEED = 120
#: a run may start this late (fake seconds: ~80 ms of real time at x120, the scheduling
#: latency of a loaded machine), or this early (rounding); runs of one job are >= 15 min apart
LATE = 10.0
EARLY = 1.0

DAILY = "30 2 * * *"  # fixed time: the wall clock decides
QUARTER = "*/15 * * * *"  # not fixed: elapsed time decides
HOURLY = "0 * * * *"  # not fixed either (its hour field is *)


def berlin(month: int, day: int, hour: int, minute: int, fold: int = 0) -> float:
    """The POSIX time of a 2026 Berlin wall-clock time (``fold=1``: its second pass)."""
    return datetime(2026, month, day, hour, minute, fold=fold, tzinfo=BERLIN).timestamp()


@dataclass(frozen=True)
class Transition:
    """A fake-clock window around a transition: the runs each job must make in it, and
    where each job's next run must be when the window ends."""

    name: str
    start: float  # where the fake clock starts
    until: float  # when the executor lists its schedules and exits
    runs: dict[str, list[float]]
    next_run: dict[str, float]

    @property
    def first_run(self) -> float:
        return min(min(times) for times in self.runs.values())


SPRING = Transition(
    # 29 March 2026: 02:00 CET -> 03:00 CEST (01:00 UTC); 02:00-02:59 does not exist.
    name="spring",
    start=berlin(3, 29, 1, 35),  # 00:35 UTC
    until=berlin(3, 29, 3, 35),  # 01:35 UTC: one real hour later
    runs={
        DAILY: [berlin(3, 29, 3, 0)],  # 02:30 does not exist: once, at the end of the gap
        QUARTER: [
            berlin(3, 29, 1, 45),
            berlin(3, 29, 3, 0),  # nothing at 02:00-02:45: 15 real minutes after 01:45
            berlin(3, 29, 3, 15),
            berlin(3, 29, 3, 30),
        ],
        HOURLY: [berlin(3, 29, 3, 0)],  # one real hour after 01:00, not at "02:00"
    },
    next_run={
        DAILY: berlin(3, 30, 2, 30),  # back at 02:30 the next night
        QUARTER: berlin(3, 29, 3, 45),
        HOURLY: berlin(3, 29, 4, 0),
    },
)

FALL = Transition(
    # 25 October 2026: 03:00 CEST -> 02:00 CET (01:00 UTC); 02:00-02:59 happens twice.
    name="fall",
    start=berlin(10, 25, 1, 50),  # 23:50 UTC on the 24th
    until=berlin(10, 25, 2, 50, fold=1),  # 01:50 UTC: two real hours later
    runs={
        DAILY: [berlin(10, 25, 2, 30, fold=0)],  # the first pass only (00:30 UTC)
        QUARTER: [
            berlin(10, 25, 2, minute, fold) for fold in (0, 1) for minute in range(0, 60, 15)
        ],
        HOURLY: [berlin(10, 25, 2, 0, fold=0), berlin(10, 25, 2, 0, fold=1)],
    },
    next_run={
        DAILY: berlin(10, 26, 2, 30),  # not 02:30 CET on the 25th: the next night
        QUARTER: berlin(10, 25, 3, 0),
        HOURLY: berlin(10, 25, 3, 0),
    },
)


def show(moment: float) -> str:
    """``01:00:00Z (03:00:00 CEST)``: a POSIX time in UTC and on Berlin's wall clock."""
    utc = datetime.fromtimestamp(moment, timezone.utc).strftime("%m-%d %H:%M:%SZ")
    wall = datetime.fromtimestamp(moment, BERLIN).strftime("%H:%M:%S %Z")
    return f"{utc} ({wall})"


def test_the_cases_are_on_the_transitions_they_claim() -> None:
    """The expected times above mean what their comments say (no process: zoneinfo only)."""
    gap = datetime(2026, 3, 29, 2, 30, tzinfo=BERLIN)
    assert datetime.fromtimestamp(gap.timestamp(), BERLIN).hour == 3  # 02:30 does not exist
    assert berlin(3, 29, 3, 0) == datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc).timestamp()
    assert berlin(10, 25, 2, 30, fold=1) - berlin(10, 25, 2, 30, fold=0) == 3600  # twice
    assert (
        berlin(10, 25, 2, 0, fold=1) == datetime(2026, 10, 25, 1, tzinfo=timezone.utc).timestamp()
    )
    for case in (SPRING, FALL):
        for job in (QUARTER, HOURLY):  # elapsed time: evenly spaced through the transition
            times = case.runs[job] + [case.next_run[job]]
            step = 900 if job == QUARTER else 3600
            assert {b - a for a, b in itertools.pairwise(times)} == {step}
        assert case.start < case.first_run - 5 * 60  # time to start before the first run
        assert max(max(times) for times in case.runs.values()) < case.until
        assert min(case.next_run.values()) > case.until
    # The other host zone is on summer time at both starts: its own changes (8 March,
    # 1 November 2026) are on other dates than Berlin's.
    new_york = ZoneInfo("America/New_York")
    assert {datetime.fromtimestamp(c.start, new_york).tzname() for c in (SPRING, FALL)} == {"EDT"}


# ------------------------------------------------------------------ the processes


class FakeClockProgram(Program):
    """The executor under ``faketime``.

    The faketime wrapper forks the program and waits for it, so stopping the wrapper alone
    would leave the program running: :meth:`stop` signals the program (the wrapper's child,
    by PID) and waits for the wrapper, which exits once it has reaped it. The wrapper leads
    its own process group, so a last SIGKILL to that group reaches both and nothing else.
    """

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return  # the wrapper exits after its program
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            pids = [int(pid) for pid in children.read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            self.popen.wait(3)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)  # the wrapper is alive: its group is ours
            self.popen.wait()


@dataclass
class Executor:
    backend: str
    host: str
    program: FakeClockProgram
    sock_dir: str

    @property
    def label(self) -> str:
        return f"{self.backend} on a host in {self.host}"


@pytest.fixture
def executors() -> Iterator[list[Executor]]:
    """Started executors (see :func:`start_executor`), stopped by PID at the end."""
    started: list[Executor] = []
    yield started
    try:
        for executor in started:
            executor.program.stop()
    finally:
        for executor in started:
            shutil.rmtree(executor.sock_dir, ignore_errors=True)


def start_executor(
    executors: list[Executor], tmp_path: Path, case: Transition, backend: str, host: str
) -> Executor:
    """Start the executor under faketime, its clock at ``case.start``, its TZ ``host``."""
    sock_dir = short_temp_dir()
    label = f"{case.name}-{backend}-{host.replace('/', '_')}"
    # faketime reads its start time in the zone of the process it starts.
    local_start = datetime.fromtimestamp(case.start, ZoneInfo(host)).strftime("%Y-%m-%d %H:%M:%S")
    assert FAKETIME is not None
    argv = [
        FAKETIME,
        "-m",  # the multi-threaded libfaketime: daffi's loop and callbacks run in threads
        "-f",
        f"@{local_start} x{SPEED}",
        sys.executable,
        str(PROGRAM),
        "--backend",
        backend,
        "--sock-dir",
        sock_dir,
        "--until",
        repr(case.until),
        "--timezone",
        ZONE,
        "--speed",
        str(SPEED),  # daffi's heartbeats keep their real-time length
    ]
    for job in case.runs:
        argv += ["--cron", job]
    env = {
        **os.environ,
        "TZ": host,
        "PYTHONUNBUFFERED": "1",
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    stdout_path = tmp_path / f"{label}.out"
    stderr_path = tmp_path / f"{label}.err"
    try:
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=tmp_path,
                start_new_session=True,  # see FakeClockProgram
            )
    except BaseException:
        shutil.rmtree(sock_dir, ignore_errors=True)
        raise
    program = FakeClockProgram(label, popen, stdout_path, stderr_path)
    executor = Executor(backend, host, program, sock_dir)
    executors.append(executor)
    return executor


def tagged(program: Program, tag: str) -> list[dict[str, Any]]:
    """The JSON payloads of the program's ``TAG {...}`` lines."""
    prefix = f"{tag} "
    return [json.loads(line[len(prefix) :]) for line in program.lines() if line.startswith(prefix)]


def problems(executor: Executor, case: Transition) -> list[str]:
    """What the executor did that the documented rule does not say (empty: all of it)."""
    program = executor.program
    found: list[str] = []
    (ready,) = tagged(program, "READY")
    # The fake clock started where the test put it, read in the host's zone.
    zone = datetime.fromtimestamp(case.start, ZoneInfo(executor.host)).tzname()
    if ready["zone"] != zone:
        found.append(f"the host's zone is {ready['zone']!r}, not {zone!r}: TZ was not applied")
    if not case.start <= ready["now"] < case.first_run:
        found.append(
            f"the schedules were accepted at {show(ready['now'])}, not between the fake "
            f"clock's start {show(case.start)} and the first run {show(case.first_run)} "
            "(faketime not working, or the machine too slow to start the program)"
        )
    runs: dict[str, list[float]] = {job: [] for job in case.runs}
    for run in tagged(program, "RUN"):
        runs.setdefault(run["cron"], []).append(run["at"])
    for job, expected in case.runs.items():
        got = sorted(runs[job])
        on_time = len(got) == len(expected) and all(
            -EARLY <= at - want <= LATE for at, want in zip(got, expected, strict=True)
        )
        if not on_time:
            found.append(
                f"{job!r} ran {len(got)} time(s), at {[show(at) for at in got]}; expected "
                f"{len(expected)}, at {[show(at) for at in expected]}"
            )
    # The executor's own listing agrees: every run counted, none skipped, and the next run
    # is where the rule puts it (the daily job is done for the day).
    (done,) = tagged(program, "DONE")
    listing = {info["uuid"]: info for info in done["listing"]}
    for uuid, job in zip(ready["tasks"], case.runs, strict=True):
        info = listing.get(uuid)
        if info is None:
            found.append(f"{job!r} is missing from the listing {done['listing']}")
            continue
        seen = {key: info[key] for key in ("kind", "cron", "timezone", "runs", "skipped")}
        want = {
            "kind": "cron",
            "cron": job,
            "timezone": ZONE,
            "runs": len(case.runs[job]),
            "skipped": 0,
        }
        if seen != want:
            found.append(f"{job!r} is listed as {seen}, expected {want}")
        if info["next_run"] != case.next_run[job]:
            found.append(
                f"{job!r} lists its next run at {show(info['next_run'])}, expected "
                f"{show(case.next_run[job])}"
            )
    stderr = program.stderr()
    for sign in ("Traceback", "skipped", "ERROR", "WARNING"):
        if sign in stderr:
            found.append(f"its log has {sign!r}")
    return found


@pytest.mark.timeout(150)
@pytest.mark.parametrize("case", [SPRING, FALL], ids=lambda case: case.name)
def test_cron_in_a_zone_follows_debian_crons_dst_rule(
    executors: list[Executor], tmp_path: Path, case: Transition
) -> None:
    """Through a transition, on both backends and two host zones (four processes at once):
    each job runs exactly the expected number of times, each run at its expected instant."""
    for host in HOSTS:
        for backend in BACKENDS:
            start_executor(executors, tmp_path, case, backend, host)
    real_span = (case.until - case.start) / SPEED
    deadline = time.monotonic() + real_span + 30
    for executor in executors:
        executor.program.wait_for_line(r"^DONE ", timeout=max(deadline - time.monotonic(), 1))
        assert executor.program.wait_exit(timeout=10) == 0, executor.program.describe()
    report = []
    for executor in executors:
        found = problems(executor, case)
        if found:
            report.append(
                f"{executor.label}:\n  " + "\n  ".join(found) + f"\n{executor.program.describe()}"
            )
    assert not report, f"{case.name} transition:\n" + "\n\n".join(report)
