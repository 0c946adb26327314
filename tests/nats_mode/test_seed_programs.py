"""The seed's scheduling programs pass with ``address="nats://..."`` (tests/processes/
seed_programs, with only ``host="localhost", port=8888`` replaced), over one nats-server and
over a three-server cluster; what tests/processes/test_seed_scheduling.py checks in
controller mode. A file of its own: its timeline takes about a minute, which the other
program tests need not wait for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ._programs import (
    JOINED,
    SCHEDULING_PROGRAMS,
    SEED,
    START_TIMEOUT,
    Program,
    Programs,
    across_cluster,
    one_server,
    with_address,
)
from ._servers import Cluster, NatsServer

pytestmark = [pytest.mark.processes, pytest.mark.timeout(120)]

# ------------------------------------------------------------------ the seed's scheduling programs
# First in the file: the longest test (a minute of the seed's timeline) starts first on a
# worker of pytest -n, while the others run beside it.

SEED_ADDRESS = 'host="localhost", port=8888'
SEED_PAIRS = {
    "class-based": ("class_based_scheduler.py", "class_based_scheduler_client.py"),
    "decorator-based": ("decorator_based_scheduler.py", "decorator_based_scheduler_service.py"),
}
#: the seed computes times with datetime.utcnow().timestamp(): right on a UTC host only
#: (tests/processes/test_seed_scheduling.py covers the other zones)
UTC = {"TZ": "UTC"}


@dataclass
class SeedRun:
    """One seed program (a scheduler and its client) over one fabric, in a subject
    namespace of its own."""

    label: str
    scheduler: Program
    client_source: Path
    client: Program | None = None


def seed_copy(directory: Path, source: Path, address: str) -> Path:
    """The seed program with only its host and port replaced by ``address``."""
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / source.name
    copy.write_text(with_address(source.read_text(), SEED_ADDRESS, address), encoding="utf-8")
    return copy


def start_seed_run(
    programs: Programs,
    label: str,
    directory: Path,
    scheduler: Path,
    client: Path,
    addresses: tuple[str, str],
) -> SeedRun:
    """Start the scheduler (on ``addresses[0]``); the client (on ``addresses[1]``) is
    started by :func:`start_client` once the scheduler has joined."""
    started = programs.start(
        f"{label}: {scheduler.stem}", seed_copy(directory, scheduler, addresses[0]), env=UTC
    )
    return SeedRun(label, started, seed_copy(directory / "client", client, addresses[1]))


def start_client(programs: Programs, run: SeedRun, snippet_tail: str = "") -> None:
    if snippet_tail:
        source = run.client_source.read_text(encoding="utf-8")
        run.client_source.write_text(source + snippet_tail, encoding="utf-8")
    run.client = programs.start(
        f"{run.label}: {run.client_source.stem}", run.client_source, env=UTC
    )


def near(value: float, expected: float, tolerance: float) -> bool:
    return abs(value - expected) <= tolerance


def check_seed_pair(run: SeedRun) -> None:
    """What test_seed_programs_run_as_written checks in controller mode."""
    scheduler, requester = run.scheduler, run.client
    assert requester is not None
    where = f"[{run.label}]"
    # Task 1 every 5 s while the client sleeps 30 s.
    scheduled, _ = scheduler.wait_for(r"scheduled 'long_running_task1'", timeout=15, also=requester)
    scheduled2, _ = scheduler.wait_for(
        r"scheduled 'long_running_task2'", timeout=45, also=requester
    )
    assert requester.wait_exit(timeout=15) == 0, requester.describe()
    client_exit = requester.exited_at
    assert client_exit is not None
    # The client stops right after scheduling task 2 (it only says goodbye).
    assert client_exit - scheduled2 < 2.0, (where, client_exit - scheduled2)

    # Task 2 runs 10 s and 30 s after it was scheduled, although the client has stopped.
    scheduler.wait_for(r"Task 2 complete", timeout=20)  # the first, 10 s after
    scheduler.wait_for_count(r"Task 2 complete", 2, timeout=30)
    task2 = scheduler.times_of(r"Start long running task 2")
    assert len(task2) == 2, (where, scheduler.output())
    assert near(task2[0] - scheduled2, 10, 1.0), (where, task2[0] - scheduled2)
    assert near(task2[1] - scheduled2, 30, 1.0), (where, task2[1] - scheduled2)

    task1 = scheduler.times_of(r"Start long running task 1")
    offsets = [at - scheduled for at in task1]
    # Runs at +5, +10, ... +25, and possibly +30 (the cancel races that tick).
    assert len(task1) in (5, 6), (where, offsets)
    for k, offset in enumerate(offsets, start=1):
        assert near(offset, 5 * k, 0.75), (where, offsets)
    # Never after the cancel: nothing in the 30 s the test kept watching.
    assert all(at < scheduled2 for at in task1), (where, offsets, scheduled2 - scheduled)


def check_at_time_snippet(run: SeedRun) -> None:
    """What test_seed_at_time_snippet_runs_exactly_once checks in controller mode."""
    server, client = run.scheduler, run.client
    assert client is not None
    where = f"[{run.label}]"
    scheduled, _ = server.wait_for(r"scheduled 'some_func'", timeout=15, also=client)
    assert client.wait_exit(timeout=20) == 0, client.describe()
    # Watch past the second entry (+10 s): only the first (+2 s) may have fired. (Called
    # after the pairs' checks, which watched for about 60 s: nothing is left to wait.)
    server.watch_until(scheduled + 11.5)
    runs = server.times_of(r"some_func ran")
    assert len(runs) == 1, (where, server.output())
    assert near(runs[0] - scheduled, 2, 0.75), (where, runs[0] - scheduled)
    assert "cancelled after 1 runs" in server.output(), (where, server.output())


#: the seed's "sleep 3 s, then cancel" fragment, after the at_time snippet as printed
AT_TIME_TAIL = "\nimport time\ntime.sleep(3)\ntask.cancel()\n"


@pytest.mark.timeout(150)
def test_seed_scheduling_programs(
    programs: Programs, nats_server: NatsServer, nats_cluster: Cluster, tmp_path: Path
) -> None:
    """The seed's two scheduling programs and its at_time snippet, over one server and over
    the cluster (scheduler on A, client on C). All of them run at once, each in a subject
    namespace of its own (``nats://host:port/<namespace>``: they do not see each other), so
    the seed's minute-long timeline is waited for once."""
    pairs: list[SeedRun] = []
    snippets: list[SeedRun] = []
    for fabric in (one_server(nats_server), across_cluster(nats_cluster)):
        place = fabric.kind.replace(" ", "-")
        for kind, (scheduler, client) in SEED_PAIRS.items():
            addresses = (f"{fabric.address(0)}/{kind}", f"{fabric.address(1)}/{kind}")
            pairs.append(
                start_seed_run(
                    programs,
                    f"{kind} over {fabric.kind}",
                    tmp_path / f"{kind}-{place}",
                    SEED / scheduler,
                    SEED / client,
                    addresses,
                )
            )
        addresses = (f"{fabric.address(0)}/at-time", f"{fabric.address(1)}/at-time")
        snippets.append(
            start_seed_run(
                programs,
                f"at_time snippet over {fabric.kind}",
                tmp_path / f"at-time-{place}",
                SCHEDULING_PROGRAMS / "some_func_server.py",
                SEED / "at_time_snippet.py",
                addresses,
            )
        )
    for run in pairs + snippets:
        run.scheduler.wait_for(JOINED, timeout=START_TIMEOUT)
    # One client at a time (each has joined before the next starts): a dozen processes
    # starting at once on a small machine make the join race of NATS mode likely (see
    # test_readme_first_program_with_a_server_paused_while_the_client_joins).
    for run in pairs + snippets:
        start_client(programs, run, AT_TIME_TAIL if run in snippets else "")
        assert run.client is not None
        run.client.wait_for(JOINED, timeout=START_TIMEOUT)
    for run in pairs:
        check_seed_pair(run)
    for run in snippets:
        check_at_time_snippet(run)
