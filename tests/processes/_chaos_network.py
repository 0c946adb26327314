"""Chaos harness, the network under attack: a controller, a server and a legitimate client.

Issue 11 ("hostile input and faults"): the controller must survive hostile peers and faults
while a legitimate client loses no call. :class:`Chaos` starts, as separate processes (from
``chaos_programs/``, with ``subprocess.Popen``, stopped by PID: terminate, then kill, see
:class:`Proc`):

- a controller (``controller.py``) on asyncio or trio, listening on a Unix socket in a fresh
  short directory under /tmp, with ``frame_timeout=2`` (and, for the idle-connection flood,
  its RLIMIT_NOFILE lowered in the child only, so ``accept`` fails with EMFILE);
- a server node (``server.py``) offering ``echo``, a generator, a ``def`` that hangs, ...;
- the legitimate client (``client.py``), calling ``echo(i)`` in a loop (``FG(timeout=5)``)
  and counting successes and failures.

:meth:`Chaos.run` runs one attack (a function of ``_chaos_attacks.py``, which imports this
module, never the reverse): it reads the client's counts before and after, samples the
controller's RSS before, every 50 ms during, and ``settle`` seconds after the attack, checks
the controller process still runs and still routes (a fresh connection's ``echo`` round
trip), and returns an :class:`AttackRecord`. Attackers are processes of their own (started
with :meth:`Chaos.launch`) or raw sockets of this process that speak the protocol by hand
(``_chaos_probes.RawPeer``).

Used by ``tests/processes/test_chaos.py`` (assertions) and ``benchmarks/attacks.py`` (a
table). Nothing here asserts timings or memory: those are figures to report.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._chaos_probes import ChaosError, Sampler, echo_round_trip, rss_mib

__all__ = [
    "BACKENDS",
    "AttackRecord",
    "Chaos",
    "Counts",
    "Proc",
    "start_program",
]

PROGRAMS = Path(__file__).parent / "chaos_programs"
BACKENDS = ("asyncio", "trio")

#: the controller's ``frame_timeout``: how long a frame may take from first to last byte
FRAME_TIMEOUT = 2.0
#: the legitimate client's pause between two rounds of calls
CLIENT_PAUSE = 0.005
#: how long the check after an attack waits for the fresh node's echo round trip
PROBE_TIMEOUT = 5.0


# -- programs --------------------------------------------------------------------------------


@dataclass
class Proc:
    """A running chaos program: its output files and a cursor over its stdout lines."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    _cursor: int = field(default=0)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def lines(self) -> list[str]:
        return self.stdout_path.read_text(errors="replace").splitlines()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        stderr = self.stderr()
        if len(stderr) > 4000:
            stderr = "...\n" + stderr[-4000:]
        return (
            f"--- {self.name} (pid {self.pid}, returncode {self.popen.poll()}) stdout:\n"
            + "\n".join(self.lines()[-50:])
            + f"\n--- {self.name} stderr:\n{stderr}"
        )

    def wait_for_line(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """The next stdout line matching ``pattern`` (after the last one matched).

        Raises:
            ChaosError: at the deadline, or at once if the program exited without it.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.running
            lines = self.lines()
            for index in range(self._cursor, len(lines)):
                match = regex.search(lines[index])
                if match:
                    self._cursor = index + 1
                    return match
            if exited:
                raise ChaosError(
                    f"{self.name} exited before printing /{pattern}/\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                raise ChaosError(
                    f"{self.name} did not print /{pattern}/ in {timeout} s\n{self.describe()}"
                )
            time.sleep(0.01)

    def wait_for_count(self, prefix: str, count: int, timeout: float = 15.0) -> int:
        """Wait until ``count`` stdout lines start with ``prefix``; return how many did."""
        deadline = time.monotonic() + timeout
        while True:
            seen = sum(line.startswith(prefix) for line in self.lines())
            if seen >= count or time.monotonic() > deadline or not self.running:
                return seen
            time.sleep(0.02)

    def send_line(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text.encode() + b"\n")
        self.popen.stdin.flush()

    def stop(self) -> None:
        """Terminate by PID, wait 3 s, kill, wait: never leaves the process behind."""
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_program(
    workdir: Path, script: str, *args: str, name: str | None = None, stdin: bool = False
) -> Proc:
    """Start ``chaos_programs/<script>`` with ``args``; output goes to files in ``workdir``."""
    label = name or Path(script).stem
    index = len(list(workdir.glob("*.out")))
    stdout_path = workdir / f"{index:02d}-{label}.out"
    stderr_path = workdir / f"{index:02d}-{label}.err"
    environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        popen = subprocess.Popen(
            [sys.executable, str(PROGRAMS / script), *args],
            stdout=out,
            stderr=err,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            env=environ,
            cwd=workdir,
        )
    return Proc(label, popen, stdout_path, stderr_path)


# -- the network under attack ----------------------------------------------------------------


@dataclass
class Counts:
    """The legitimate client's cumulative counts."""

    ok: int
    failed: int
    errors: dict[str, int]
    #: calls started (the latest call id is about this)
    calls: int = 0

    def minus(self, earlier: Counts) -> Counts:
        errors = {
            kind: n - earlier.errors.get(kind, 0)
            for kind, n in self.errors.items()
            if n != earlier.errors.get(kind, 0)
        }
        return Counts(
            self.ok - earlier.ok, self.failed - earlier.failed, errors, self.calls - earlier.calls
        )


_COUNTS = re.compile(r"ok=(\d+) failed=(\d+) errors=(\{.*\}) calls=(\d+)")


def _parse_counts(text: str) -> Counts:
    match = _COUNTS.search(text)
    if match is None:
        raise ChaosError(f"not a count line: {text!r}")
    return Counts(int(match[1]), int(match[2]), json.loads(match[3]), int(match[4]))


@dataclass
class AttackRecord:
    """What one attack did to the network."""

    attack: str
    backend: str
    #: the controller's RLIMIT_NOFILE, if the harness lowered it
    nofile: int | None
    #: the legitimate client's calls while the attack ran (and until the checks after it)
    legit_ok: int
    legit_failed: int
    legit_errors: dict[str, int]
    #: the controller process still runs after the attack
    controller_running: bool
    #: None: a fresh node's echo round trip through the controller succeeded after the
    #: attack; else why not
    routing_problem: str | None
    rss_before: float
    rss_peak: float
    rss_after: float
    #: the controller's open descriptors: the most seen while sampling
    fds_peak: int
    #: seconds the attack itself took
    duration: float
    #: what the attack observed (the attacker's own outcomes)
    details: dict[str, Any] = field(default_factory=dict)
    #: set when the harness could not run the attack to its end
    harness_error: str | None = None

    @property
    def controller_alive(self) -> bool:
        """Still running and still routing."""
        return self.controller_running and self.routing_problem is None


class Chaos:
    """A controller, a server and a legitimate client, as processes; attacks run against them.

    Use as a context manager. ``workdir`` holds the programs' output (a temp dir removed
    afterwards if not given); the socket lives in a fresh short temp dir under /tmp, removed
    on close. ``settle``: seconds after an attack before the "after" RSS sample.
    """

    def __init__(
        self,
        backend: str,
        *,
        workdir: Path | None = None,
        nofile: int | None = None,
        frame_timeout: float = FRAME_TIMEOUT,
        settle: float = 2.0,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.backend = backend
        self.nofile = nofile
        self.frame_timeout = frame_timeout
        self.settle = settle
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(_temp_dir("dfchaos-out-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sock_dir = ""
        self.procs: list[Proc] = []
        self.controller: Proc | None = None
        self.server: Proc | None = None
        self.client: Proc | None = None
        self.final: Counts | None = None
        self._reports = itertools.count(1)

    # lifecycle

    def __enter__(self) -> Chaos:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.sock_dir = _temp_dir("dfc-")
        extra = ["--frame-timeout", str(self.frame_timeout)]
        if self.nofile is not None:
            extra += ["--nofile", str(self.nofile)]
        self.controller = self.launch("controller.py", *extra)
        self.controller.wait_for_line(r"^READY")
        self.server = self.launch("server.py")
        self.server.wait_for_line(r"^READY")
        self.client = self.launch("client.py", "--pause", str(CLIENT_PAUSE), stdin=True)
        self.client.wait_for_line(r"^READY")

    def launch(self, script: str, *args: str, name: str | None = None, stdin: bool = False) -> Proc:
        """Start a chaos program against this network; it is stopped in :meth:`close`."""
        proc = start_program(
            self.workdir, script, self.backend, self.sock_dir, *args, name=name, stdin=stdin
        )
        self.procs.append(proc)
        return proc

    def stop_client(self) -> Counts:
        """Tell the legitimate client to stop and return its final counts."""
        if self.final is None:
            client = self._need(self.client)
            client.send_line("stop")
            self.final = _parse_counts(client.wait_for_line(r"^FINAL ").string)
        return self.final

    def close(self) -> None:
        try:
            if self.client is not None and self.client.running and self.final is None:
                with contextlib.suppress(ChaosError, OSError):
                    self.stop_client()
            for proc in reversed(self.procs):
                proc.stop()
        finally:
            if self.sock_dir:
                shutil.rmtree(self.sock_dir, ignore_errors=True)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # observations

    def _need(self, proc: Proc | None) -> Proc:
        if proc is None:
            raise ChaosError("the network is not started")
        return proc

    def client_counts(self) -> Counts:
        """The legitimate client's cumulative counts, now."""
        client = self._need(self.client)
        if not client.running:
            raise ChaosError(f"the legitimate client exited\n{client.describe()}")
        tag = f"r{next(self._reports)}"
        client.send_line(f"report {tag}")
        return _parse_counts(client.wait_for_line(rf"^REPORT {tag} ").string)

    def controller_log_count(self, text: str) -> int:
        return self._need(self.controller).stderr().count(text)

    def describe(self) -> str:
        return "\n".join(proc.describe() for proc in self.procs)

    # attacks

    def run(self, attack: str, function: Callable[[Chaos], dict[str, Any]]) -> AttackRecord:
        """Run ``function`` (the attack named ``attack``) against this network; measure it.

        ``function`` returns what the attack observed (the record's ``details``); the
        attacks and their names are in ``_chaos_attacks.py`` (see ``run_attack`` there).
        """
        controller = self._need(self.controller)
        before = self.client_counts()
        rss_before = rss_mib(controller.pid) or 0.0
        details: dict[str, Any] = {}
        harness_error = None
        with Sampler(controller.pid) as sampler:
            started = time.monotonic()
            try:
                details = function(self)
            except (ChaosError, OSError, EOFError, TimeoutError) as exc:
                harness_error = f"{type(exc).__name__}: {exc}"
            duration = time.monotonic() - started
            time.sleep(self.settle)
        rss_after = rss_mib(controller.pid) or 0.0
        running = controller.running
        problem = (
            echo_round_trip(self.sock_dir, PROBE_TIMEOUT) if running else "the controller exited"
        )
        after = self.client_counts()
        legit = after.minus(before)
        return AttackRecord(
            attack=attack,
            backend=self.backend,
            nofile=self.nofile,
            legit_ok=legit.ok,
            legit_failed=legit.failed,
            legit_errors=legit.errors,
            controller_running=running,
            routing_problem=problem,
            rss_before=rss_before,
            rss_peak=max(sampler.peak_rss, rss_after),
            rss_after=rss_after,
            fds_peak=sampler.peak_fds,
            duration=duration,
            details=details,
            harness_error=harness_error,
        )


def _temp_dir(prefix: str) -> str:
    """A fresh private directory under /tmp (short enough for a socket path)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")
