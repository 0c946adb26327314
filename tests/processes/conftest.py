"""Helpers for process-level tests: start daffi programs, read their output, clean up.

Every program is started with ``subprocess.Popen`` and stopped by its PID in a fixture
finalizer (terminate, then kill), so no test leaves a process behind. Programs print marker
lines; tests wait for those lines with a deadline instead of sleeping.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PROGRAMS = Path(__file__).parent / "programs"
TRANSPORTS = ["tcp", "unix"]


def free_tcp_port() -> int:
    """A loopback port that was free a moment ago (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def short_temp_dir() -> str:
    """A fresh directory under /tmp whose socket paths fit AF_UNIX's ~100 char limit."""
    return tempfile.mkdtemp(prefix="dfp-", dir="/tmp")


@dataclass
class Endpoint:
    """Where a controller listens: ``argv`` for programs, ``options`` for ``Global(...)``."""

    kind: str
    argv: list[str]
    options: dict[str, Any]
    directory: str | None = None

    def remove(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def make_endpoint(kind: str) -> Endpoint:
    if kind == "tcp":
        port = free_tcp_port()
        return Endpoint("tcp", ["tcp", "127.0.0.1", str(port)], {"host": "127.0.0.1", "port": port})
    directory = short_temp_dir()
    return Endpoint("unix", ["unix", directory], {"unix_sock_path": directory}, directory)


@dataclass
class Program:
    """A running program: its output files and a cursor over its stdout lines."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    _cursor: int = field(default=0)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def lines(self) -> list[str]:
        return self.stdout_path.read_text(errors="replace").splitlines()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        return (
            f"--- {self.name} (pid {self.pid}, returncode {self.popen.poll()}) stdout:\n"
            + "\n".join(self.lines())
            + f"\n--- {self.name} stderr:\n{self.stderr()}"
        )

    def wait_for_line(
        self, pattern: str, timeout: float = 10.0, *, fail_on: str | None = None
    ) -> re.Match[str]:
        """Wait for a stdout line matching ``pattern`` (re.search) after the last one matched.

        Lines are consumed like pexpect does: the next call starts after the matching line.
        Fails the test at the deadline, at once if the program exits without printing it, or
        at once if a line matching ``fail_on`` comes first.
        """
        return self._wait(pattern, timeout, consume=True, fail_on=fail_on)

    def find_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Like :meth:`wait_for_line`, but searches all output and consumes nothing.

        For lines whose order is not promised (hooks run concurrently).
        """
        return self._wait(pattern, timeout, consume=False)

    def _wait(
        self, pattern: str, timeout: float, *, consume: bool, fail_on: str | None = None
    ) -> re.Match[str]:
        regex = re.compile(pattern)
        failure = re.compile(fail_on) if fail_on is not None else None
        deadline = time.monotonic() + timeout
        while True:
            exited = self.popen.poll() is not None
            lines = self.lines()
            for index in range(self._cursor if consume else 0, len(lines)):
                match = regex.search(lines[index])
                if match:
                    if consume:
                        self._cursor = index + 1
                    return match
                if failure is not None and failure.search(lines[index]):
                    pytest.fail(
                        f"{self.name} printed {lines[index]!r} while waiting for /{pattern}/\n"
                        f"{self.describe()}"
                    )
            if exited:
                pytest.fail(f"{self.name} exited before printing /{pattern}/\n{self.describe()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{self.name} did not print /{pattern}/ in {timeout} s\n{self.describe()}"
                )
            time.sleep(0.01)

    def wait_for_stderr(self, text: str, timeout: float = 10.0) -> None:
        """Wait until ``text`` appears in the program's stderr (e.g. a log line)."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not log {text!r}\n{self.describe()}")
            time.sleep(0.01)

    def wait_exit(self, timeout: float = 10.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout} s\n{self.describe()}")

    def send_line(self, text: str = "") -> None:
        """Write a line to the program's stdin (programs that wait for it to exit)."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(text.encode() + b"\n")
        self.popen.stdin.flush()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.kill(self.pid, sig)
        self.popen.wait(5)

    def stop(self) -> None:
        """Terminate by PID, wait 3 s, kill, wait: never leaves the process behind."""
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Launcher:
    """Starts programs from ``programs/`` and stops all of them in :meth:`close`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.programs: list[Program] = []
        self._cleanups: list[Callable[[], None]] = []

    def add_cleanup(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` in :meth:`close`, after every program has stopped."""
        self._cleanups.append(cleanup)

    def __call__(
        self,
        program: str,
        *args: str,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bool = False,
    ) -> Program:
        label = name or Path(program).stem
        index = len(self.programs)
        stdout_path = self.directory / f"{index:02d}-{label}.out"
        stderr_path = self.directory / f"{index:02d}-{label}.err"
        environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            popen = subprocess.Popen(
                [sys.executable, str(PROGRAMS / program), *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                env=environ,
                cwd=self.directory,
            )
        started = Program(label, popen, stdout_path, stderr_path)
        self.programs.append(started)
        return started

    def close(self) -> None:
        try:
            for program in reversed(self.programs):
                program.stop()
        finally:
            for cleanup in reversed(self._cleanups):
                cleanup()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """``launch("prog.py", *args, name=..., env=..., stdin=...)`` -> :class:`Program`."""
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture(params=TRANSPORTS)
def endpoint(request: pytest.FixtureRequest, launch: Launcher) -> Endpoint:
    """A fresh controller address: loopback TCP with a free port, or a Unix socket dir.

    The socket directory is removed after the programs of the test have stopped.
    """
    made = make_endpoint(str(request.param))
    launch.add_cleanup(made.remove)
    return made


@dataclass
class Server:
    """A running ``server.py`` (controller + callbacks) and where it listens."""

    name: str
    endpoint: Endpoint
    program: Program


@pytest.fixture(scope="module", params=TRANSPORTS)
def callback_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One ``server.py`` per module and transport, shared by the clients of that module."""
    made = make_endpoint(str(request.param))
    launcher = Launcher(tmp_path_factory.mktemp(f"server-{request.param}"))
    try:
        program = launcher("server.py", *made.argv, "server", name="server")
        program.wait_for_line(r"^READY", timeout=15)
        yield Server("server", made, program)
    finally:
        launcher.close()
        made.remove()


def parse_results(program: Program) -> dict[str, str]:
    """``RESULT key value...`` lines of a program as ``{key: "value..."}``."""
    results: dict[str, str] = {}
    for line in program.lines():
        if line.startswith("RESULT "):
            _, key, *rest = line.split(" ", 2)
            results[key] = rest[0] if rest else ""
    return results


# ---------------------------------------------------------------- docs examples

#: how long a docs example client may run
RUN_TIMEOUT = 30.0


class Processes:
    """Starts programs with their output in files; stops all of them by PID at the end."""

    def __init__(self, directory: Path, examples: Path | None = None) -> None:
        self.directory = directory
        #: where example programs started by name (:meth:`example`) live
        self.examples = examples
        self.programs: list[Program] = []
        self.cleanups: list[Callable[[], None]] = []

    def start(self, name: str, *argv: str) -> Program:
        """Run ``python *argv`` (an example path, or ``-m daffi ...``) as ``name``."""
        index = len(self.programs)
        stdout_path = self.directory / f"{index:02d}-{name}.out"
        stderr_path = self.directory / f"{index:02d}-{name}.err"
        environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            popen = subprocess.Popen(
                [sys.executable, *argv],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=environ,
                cwd=self.directory,
            )
        program = Program(name, popen, stdout_path, stderr_path)
        self.programs.append(program)
        return program

    def example(self, filename: str, *args: str, name: str | None = None) -> Program:
        """Run example ``filename`` of the test module's ``EXAMPLES`` directory."""
        assert self.examples is not None, "the test module has no EXAMPLES directory"
        return self.start(name or Path(filename).stem, str(self.examples / filename), *args)

    def interrupt(self, program: Program) -> None:
        """Ctrl+C by PID; the program must stop cleanly (exit 0, no traceback)."""
        os.kill(program.pid, signal.SIGINT)
        code = program.wait_exit(RUN_TIMEOUT)
        assert code == 0, program.describe()
        assert "Traceback" not in program.stderr(), program.describe()

    def close(self) -> None:
        """Stop every program (terminate, then kill), then run the cleanups."""
        try:
            for program in reversed(self.programs):
                program.stop()
        finally:
            for cleanup in reversed(self.cleanups):
                cleanup()


@pytest.fixture
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Processes]:
    """Programs of a docs-examples test (its module's ``EXAMPLES``), stopped at its end."""
    running = Processes(tmp_path, getattr(request.module, "EXAMPLES", None))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(params=["tcp", "unix"])
def address(request: pytest.FixtureRequest, processes: Processes) -> str:
    """Where this test's controller listens: loopback TCP, or a Unix socket in /tmp.

    The socket directory is removed after the test's programs have stopped.
    """
    if request.param == "tcp":
        return f"tcp://127.0.0.1:{free_tcp_port()}"
    directory = tempfile.mkdtemp(prefix="dfx-", dir="/tmp")
    processes.cleanups.append(lambda: shutil.rmtree(directory, ignore_errors=True))
    return f"unix://{directory}/daffi.sock"


def run_to_end(program: Program) -> list[str]:
    """Wait for a client to finish; it must exit 0 without a traceback. Its stdout lines."""
    code = program.wait_exit(RUN_TIMEOUT)
    assert code == 0, program.describe()
    assert "Traceback" not in program.stderr(), program.describe()
    return program.lines()
