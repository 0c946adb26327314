"""Programs run as child processes by the NATS mode tests.

A :class:`Program` collects its stdout and stderr line by line, with the time each line
arrived, so tests wait for a line with a deadline instead of sleeping, and check timelines
(scheduled runs). :class:`Programs` starts them and stops every one by its PID at the end
(terminate, then kill), never by name. (tests/processes/conftest.py has the same helpers for
controller mode; test packages do not import each other, hence this small copy.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from ._servers import Cluster, NatsServer

STDOUT = "stdout"
STDERR = "stderr"


class Program:
    """A running program: its output as ``(arrival time, stream, line)`` records."""

    def __init__(
        self, name: str, argv: list[str], *, cwd: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=environ,
        )
        self.records: list[tuple[float, str, str]] = []
        self._cursor = 0  # stdout lines consumed by wait_for_line
        #: when the program's exit was seen (its stdout closed and it was reaped)
        self.exited_at: float | None = None
        self._cond = threading.Condition()
        assert self.popen.stdout is not None
        assert self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream, label), daemon=True)
            for stream, label in ((self.popen.stdout, STDOUT), (self.popen.stderr, STDERR))
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self, stream: IO[str], label: str) -> None:
        for line in stream:
            with self._cond:
                self.records.append((time.monotonic(), label, line.rstrip("\n")))
                self._cond.notify_all()
        if label == STDOUT:
            self.popen.wait()
        with self._cond:
            if label == STDOUT:
                self.exited_at = time.monotonic()
            self._cond.notify_all()

    def _finished(self) -> bool:
        """The program exited and all of its output was read."""
        return self.popen.poll() is not None and not any(r.is_alive() for r in self._readers)

    def lines(self) -> list[str]:
        """The stdout lines so far."""
        with self._cond:
            return [line for _, stream, line in self.records if stream == STDOUT]

    def stderr(self) -> str:
        with self._cond:
            return "\n".join(line for _, stream, line in self.records if stream == STDERR)

    def output(self) -> str:
        """Both streams, in the order the lines arrived."""
        with self._cond:
            return "\n".join(line for _, _, line in self.records)

    def describe(self) -> str:
        return (
            f"--- {self.name} (pid {self.pid}, returncode {self.popen.poll()}) stdout:\n"
            + "\n".join(self.lines())
            + f"\n--- {self.name} stderr:\n{self.stderr()}"
        )

    def wait_for(
        self, pattern: str, timeout: float = 10.0, *, also: Program | None = None
    ) -> tuple[float, re.Match[str]]:
        """The first line of either stream matching ``pattern`` (re.search): when it arrived
        and the match. Fails the test at the deadline, or at once if the program exits
        without printing it (showing the output of ``also`` too: the peer it waits on)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, _, line in self.records:
                    match = regex.search(line)
                    if match:
                        return at, match
                self._wait(pattern, deadline, also)

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The next stdout line matching ``pattern``, after the last one this matched (lines
        are consumed as pexpect does)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                out = [line for _, stream, line in self.records if stream == STDOUT]
                for index in range(self._cursor, len(out)):
                    match = regex.search(out[index])
                    if match:
                        self._cursor = index + 1
                        return match
                self._wait(pattern, deadline)

    def wait_for_count(self, pattern: str, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` lines (either stream) match ``pattern``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.times_of(pattern)) < count:
                self._wait(f"{pattern} (x{count})", deadline)

    def watch_until(self, moment: float) -> None:
        """Let the program run until ``moment`` (time.monotonic()): for checks that
        something does *not* happen before then."""
        with self._cond:
            while (remaining := moment - time.monotonic()) > 0:
                self._cond.wait(remaining)

    def _wait(self, pattern: str, deadline: float, also: Program | None = None) -> None:
        """Wait for more output (the condition is held); fail if none can come in time."""
        context = self.describe() + ("" if also is None else "\n" + also.describe())
        if self._finished():
            pytest.fail(f"{self.name} exited before printing /{pattern}/\n{context}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"{self.name} did not print /{pattern}/ in time\n{context}")
        self._cond.wait(min(remaining, 0.2))

    def times_of(self, pattern: str) -> list[float]:
        """When each line (either stream) matching ``pattern`` arrived."""
        regex = re.compile(pattern)
        with self._cond:
            return [at for at, _, line in self.records if regex.search(line)]

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the program to exit and its output to be read; its return code."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout} s\n{self.describe()}")
        for reader in self._readers:
            reader.join(5)
        return code

    def run_to_end(self, timeout: float = 30.0) -> list[str]:
        """Wait for a client to finish: exit 0 without a traceback. Its stdout lines."""
        code = self.wait_exit(timeout)
        assert code == 0, self.describe()
        assert "Traceback" not in self.stderr(), self.describe()
        return self.lines()

    def interrupt(self, timeout: float = 30.0) -> None:
        """Ctrl+C by PID; the program must stop cleanly (exit 0, no traceback)."""
        os.kill(self.pid, signal.SIGINT)
        self.run_to_end(timeout)

    def stop(self) -> None:
        """Terminate by PID, wait 3 s, kill, wait: never leaves the process behind."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        for reader in self._readers:
            reader.join(5)


class Programs:
    """Starts programs (output read as it comes) and stops all of them in :meth:`close`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: list[Program] = []

    def start(
        self, name: str, program: Path, *args: str, env: Mapping[str, str] | None = None
    ) -> Program:
        """Run ``python program *args`` in the test's directory, as ``name``."""
        started = Program(name, [str(program), *args], cwd=self.directory, env=env)
        self.running.append(started)
        return started

    def close(self) -> None:
        for program in reversed(self.running):
            program.stop()


def programs_in(directory: Path) -> Iterator[Programs]:
    """For a fixture: the programs of one test, stopped by PID when it ends."""
    running = Programs(directory)
    try:
        yield running
    finally:
        running.close()


# ------------------------------------------------------------------ shared by the tests

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLES = ROOT / "docs" / "examples" / "basics"
SEED = ROOT / "tests" / "processes" / "seed_programs"
SCHEDULING_PROGRAMS = ROOT / "tests" / "processes" / "scheduling_programs"
START_TIMEOUT = 20.0
#: what a node logs (DAFFI_LOG_LEVEL=INFO, or the seed's logging.basicConfig) once it joined
JOINED = r"node '[^']+' connected to .* at nats://"


@dataclass(frozen=True)
class Fabric:
    """Where the processes of a test attach: the same server, or A, C, B of a cluster in
    turn (the first process on A, the second on C, ...)."""

    kind: str
    attach: tuple[str, ...]
    servers: tuple[NatsServer, ...]

    def address(self, index: int) -> str:
        """The address of the ``index``-th process of a program."""
        return self.attach[index % len(self.attach)]

    def connections(self) -> list[int]:
        """Client connections on each server, in the order processes attach to them."""
        return [int(str(server.varz()["connections"])) for server in self.servers]


def one_server(server: NatsServer) -> Fabric:
    return Fabric("one server", (f"nats://{server.url}",), (server,))


def across_cluster(cluster: Cluster) -> Fabric:
    order = ("A", "C", "B")
    return Fabric(
        "cluster",
        tuple(cluster.address_of(name) for name in order),
        tuple(cluster.server(name) for name in order),
    )


def with_address(source: str, old: str, address: str) -> str:
    """``source`` with its one ``old`` (host and port arguments) replaced by the address."""
    assert source.count(old) == 1, f"expected {old!r} once in:\n{source}"
    return source.replace(old, f'address="{address}"')
