"""The ``daffi`` command, run as a process (``python -m daffi ...``) against a running system:
a controller started by ``daffi controller``, a node offering callbacks
(``cli_programs/worker.py``) and schedules on it (``cli_programs/planner.py``), over a Unix
socket in a temporary directory."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from daffi.__about__ import __version__

from .conftest import Launcher, Program, free_tcp_port, short_temp_dir

pytestmark = [pytest.mark.processes, pytest.mark.timeout(120)]

CLI_PROGRAMS = Path(__file__).parent / "cli_programs"
WORKER_CALLBACKS = ["add", "countdown", "describe", "fail", "greet", "nap", "tick"]
# the environment variables the command reads, unset so the host's cannot change a test
ENVIRONMENT = {
    key: value
    for key, value in os.environ.items()
    if key not in {"DAFFI_ADDRESS", "DAFFI_AUTH_TOKEN", "DAFFI_LOG_LEVEL"}
}


def daffi(*args: str, timeout: float = 30, env: dict[str, str] | None = None) -> Result:
    """Run ``python -m daffi ARGS...`` to its end."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "daffi", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**ENVIRONMENT, **(env or {})},
    )
    return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout:\n{self.stdout}--- stderr:\n{self.stderr}"

    def json(self) -> Any:
        return json.loads(self.stdout)

    def assert_one_line_error(self, code: int, text: str) -> None:
        """Exit ``code``; stderr is one ``daffi: ...`` line holding ``text``; no traceback."""
        assert self.code == code, self
        assert "Traceback" not in self.stderr, self
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self
        assert lines[0].startswith("daffi: "), self
        assert text in lines[0], self


@dataclass
class System:
    socket_dir: str
    controller: Program
    worker: Program
    schedules: list[str]  # the uuids of the planner's schedules on the worker

    @property
    def options(self) -> list[str]:
        return ["--unix-sock-path", self.socket_dir]


def plan(launcher: Launcher, socket_dir: str) -> list[str]:
    """Run ``planner.py``: an interval and a cron schedule of ``tick`` on the worker."""
    planner = launcher(str(CLI_PROGRAMS / "planner.py"), socket_dir, name="planner")
    assert planner.wait_exit(20) == 0, planner.describe()
    return [line.split()[1] for line in planner.lines() if line.startswith("SCHEDULED ")]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    socket_dir = short_temp_dir()
    launcher = Launcher(tmp_path_factory.mktemp("cli"))
    launcher.add_cleanup(lambda: shutil.rmtree(socket_dir, ignore_errors=True))
    try:
        controller = launcher("daffi_cli.py", "controller", "--unix-sock-path", socket_dir)
        controller.wait_for_line(r"^daffi controller 'controller' listening on unix://", 15)
        worker = launcher(str(CLI_PROGRAMS / "worker.py"), socket_dir, name="worker")
        worker.wait_for_line(r"^READY$", timeout=15)
        yield System(socket_dir, controller, worker, plan(launcher, socket_dir))
    finally:
        launcher.close()


# ---------------------------------------------------------------------- without a system


def test_version() -> None:
    result = daffi("--version")
    assert (result.code, result.stdout) == (0, f"daffi {__version__}\n"), result


@pytest.mark.parametrize(
    "command",
    [[], ["controller"], ["nodes"], ["callbacks"], ["schedules", "ls"], ["call"], ["demo"]],
)
def test_help_says_daffi_in_plain_text(command: list[str]) -> None:
    result = daffi(*command, "--help")
    assert result.code == 0, result
    assert result.stdout.startswith(f"Usage: daffi {' '.join(command)}".rstrip()), result
    assert "`" not in result.stdout, result  # no reST literals or roles
    assert "python -m" not in result.stdout, result


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["controller", "--port", "8888"], "--port needs --host"),
        (["controller", "--log-level", "bogus"], "'bogus' is not one of"),
        (["nodes", "--bogus"], "No such option '--bogus'"),
        (["nodes", "--address", "nonsense"], "invalid address 'nonsense'"),
        (["nodes", "--host", "127.0.0.1", "--unix-sock-path", "/tmp"], "not both"),
        (["call"], "Missing argument 'NAME'"),
        (["schedules", "cancel", "worker"], "Missing argument 'UUID'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_code_2(args: list[str], text: str) -> None:
    daffi(*args).assert_one_line_error(2, text)


def test_no_controller_fails_fast_with_exit_code_3() -> None:
    empty = short_temp_dir()
    try:
        result = daffi("nodes", "--unix-sock-path", empty)  # the default --connect-timeout
    finally:
        os.rmdir(empty)
    result.assert_one_line_error(3, f"cannot reach the controller at unix://{empty}/daffi.sock")
    assert result.seconds < 10, result


def test_shell_completion_is_clicks() -> None:
    source = daffi(env={"_DAFFI_COMPLETE": "bash_source"})
    assert source.code == 0, source
    assert "_daffi_completion" in source.stdout, source
    completed = daffi(
        env={"_DAFFI_COMPLETE": "bash_complete", "COMP_WORDS": "daffi sch", "COMP_CWORD": "1"}
    )
    assert completed.stdout.split() == ["plain,schedules"], completed


def test_the_controller_prints_listening_once_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    try:
        port = free_tcp_port()
        controller = launcher(
            "daffi_cli.py", "controller", "--host", "127.0.0.1", "--port", str(port)
        )
        controller.wait_for_line(
            rf"^daffi controller 'controller' listening on tcp://127\.0\.0\.1:{port}$", 15
        )
        listed = daffi("nodes", "--json", "--host", "127.0.0.1", "--port", str(port))
        assert (listed.code, listed.json()) == (0, []), listed
        controller.popen.send_signal(signal.SIGINT)
        assert controller.wait_exit(10) == 0, controller.describe()
        output = "\n".join(controller.lines()) + controller.stderr()
        assert output.count("listening") == 1, controller.describe()
        assert "Traceback" not in output, controller.describe()
    finally:
        launcher.close()


# ---------------------------------------------------------------------- against a system


def test_nodes_lists_each_node_its_address_since_when_and_its_callbacks(system: System) -> None:
    listed = daffi("nodes", "--json", *system.options)
    assert listed.code == 0, listed
    [worker] = listed.json()
    # over a Unix socket the controller names the process on the other end
    address = f"unix socket (pid {system.worker.popen.pid})"
    assert worker == {
        "name": "worker",
        "address": address,
        "connected_since": worker["connected_since"],
        "callbacks": WORKER_CALLBACKS,
    }, listed
    since = datetime.datetime.fromisoformat(worker["connected_since"])
    assert since.utcoffset() == datetime.timedelta(0)
    age = datetime.datetime.now(datetime.timezone.utc) - since
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=10), since

    table = daffi("nodes", *system.options)
    assert table.code == 0, table
    header, row = table.stdout.splitlines()
    assert header.split() == ["NODE", "ADDRESS", "CONNECTED", "SINCE", "CALLBACKS"], table
    local = since.astimezone().isoformat(timespec="seconds")
    assert row.split("  ")[0] == "worker", table
    assert address in row, table
    assert local in row, table
    assert row.endswith(", ".join(WORKER_CALLBACKS)), table


def test_nodes_over_tcp_shows_host_and_port(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    try:
        port = free_tcp_port()
        controller = launcher(
            "daffi_cli.py", "controller", "--host", "127.0.0.1", "--port", str(port)
        )
        controller.wait_for_line(r"listening on tcp://", 15)
        worker = launcher(str(CLI_PROGRAMS / "worker.py"), f"tcp://127.0.0.1:{port}", name="worker")
        worker.wait_for_line(r"^READY$", timeout=15)
        listed = daffi("nodes", "--json", "--host", "127.0.0.1", "--port", str(port))
        assert listed.code == 0, listed
        [node] = listed.json()
        assert node["name"] == "worker", listed
        host, _, source_port = node["address"].rpartition(":")
        assert host == "127.0.0.1", listed
        assert source_port.isdigit(), listed
    finally:
        launcher.close()


def test_the_address_comes_from_daffi_address(system: System) -> None:
    address = f"unix://{system.socket_dir}/daffi.sock"
    listed = daffi("nodes", "--json", env={"DAFFI_ADDRESS": address})
    assert listed.code == 0, listed
    assert [(node["name"], node["callbacks"]) for node in listed.json()] == [
        ("worker", WORKER_CALLBACKS)
    ], listed


def test_a_refused_token_is_exit_code_3(system: System) -> None:
    # DAFFI_AUTH_TOKEN is --auth-token's default; this controller checks no tokens
    result = daffi("nodes", *system.options, env={"DAFFI_AUTH_TOKEN": "s3cret"})
    result.assert_one_line_error(3, "cannot reach the controller")


def test_callbacks_lists_parameters_and_nodes(system: System) -> None:
    listed = daffi("callbacks", "--json", *system.options)
    assert listed.code == 0, listed
    found = {item["name"]: item for item in listed.json()}
    assert sorted(found) == WORKER_CALLBACKS, listed
    assert found["add"]["signature"] == "(a, b)"
    assert found["greet"]["signature"] == "(name, *, punctuation=...)"
    assert found["greet"]["params"][1] == {
        "name": "punctuation",
        "kind": "keyword_only",
        "has_default": True,
    }
    assert found["countdown"]["is_generator"] is True
    assert found["tick"]["is_async"] is True
    assert {tuple(item["nodes"]) for item in found.values()} == {("worker",)}
    table = daffi("callbacks", *system.options)
    assert table.code == 0, table
    assert re.search(
        r"^greet\s+\(name, \*, punctuation=\.\.\.\)\s+function\s+worker$", table.stdout, re.M
    ), table
    assert re.search(r"^tick\s+\(\)\s+async function\s+worker$", table.stdout, re.M), table


def test_schedules_ls_shows_each_schedule(system: System) -> None:
    listed = daffi("schedules", "ls", "worker", "--json", *system.options)
    assert listed.code == 0, listed
    by_uuid = {item["uuid"]: item for item in listed.json()}
    interval, cron = (by_uuid[uuid] for uuid in system.schedules)
    assert (interval["kind"], interval["interval"], interval["func_name"]) == (
        "interval",
        3600.0,
        "tick",
    )
    assert (cron["kind"], cron["cron"], cron["timezone"]) == ("cron", "0 3 * * *", "Europe/Berlin")
    for item in (interval, cron):
        assert (item["node"], item["durable"], item["runs"], item["skipped"]) == (
            "worker",
            False,
            0,
            0,
        )
        assert item["next_run"] > time.time()
        assert item["last_error"] is None
    table = daffi("schedules", "ls", *system.options)  # every node's
    assert table.code == 0, table
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        *("NODE", "UUID", "CALLBACK", "TRIGGER", "DURABLE", "NEXT"),
        *("RUN", "RUNS", "SKIPPED", "LAST", "ERROR"),
    ], table
    interval_line = next(line for line in lines if interval["uuid"] in line)
    assert re.search(r"\btick\s+every 3600 s\s+no\s+\S+\s+0\s+0\s+-$", interval_line), table
    assert any("cron 0 3 * * * (Europe/Berlin)" in line for line in lines), table


def test_schedules_cancel_removes_the_schedule(system: System, tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    try:
        interval, cron = plan(launcher, system.socket_dir)
    finally:
        launcher.close()
    cancelled = daffi("schedules", "cancel", "worker", interval[:10], *system.options)
    assert cancelled.code == 0, cancelled
    assert cancelled.stdout == f"cancelled tick {interval} on worker\n", cancelled
    listed = daffi("schedules", "ls", "worker", "--json", *system.options)
    uuids = {item["uuid"] for item in listed.json()}
    assert interval not in uuids, listed
    assert cron in uuids, listed
    again = daffi("schedules", "cancel", "worker", interval, *system.options)
    again.assert_one_line_error(1, f"'worker' runs no schedule whose uuid starts with {interval!r}")
    daffi("schedules", "cancel", "worker", cron, *system.options)  # leave the fixture's alone


def test_schedules_of_an_unknown_process_fail_with_exit_code_1(system: System) -> None:
    result = daffi("schedules", "ls", "nobody", *system.options)
    result.assert_one_line_error(1, "'nobody'")


@pytest.mark.parametrize(
    ("args", "printed"),
    [
        (["add", "2", "3"], ["5"]),
        (["describe", '{"a": [1, 2]}'], ['{"type":"dict","value":{"a":[1,2]}}']),
        (["describe", "Bob"], ['{"type":"str","value":"Bob"}']),
        (["describe", "-1.5"], ['{"type":"float","value":-1.5}']),
        (["describe", "--", "--json"], ['{"type":"str","value":"--json"}']),
        (["greet", "Bob", "-k", "punctuation=?"], ['"Hello, Bob?"']),
        (["countdown", "3"], ["3", "2", "1"]),
    ],
)
def test_call_prints_the_result_as_json(
    system: System, args: list[str], printed: list[str]
) -> None:
    result = daffi("call", "--json", *system.options, *args)
    assert result.code == 0, result
    assert result.stdout.splitlines() == printed, result


def test_call_prints_text_plainly_without_json(system: System) -> None:
    result = daffi("call", "greet", "Bob", *system.options)
    assert (result.code, result.stdout) == (0, "Hello, Bob!\n"), result


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["fail", "boom"], "ValueError: boom (raised in process 'worker')"),
        (["add", "1"], "callback 'add' expects"),
        (["nope"], "'nope'"),
    ],
)
def test_a_failed_call_is_one_line_and_exit_code_1(
    system: System, args: list[str], text: str
) -> None:
    daffi("call", *system.options, *args).assert_one_line_error(1, text)


def test_ctrl_c_stops_a_call_with_exit_code_130(system: System) -> None:
    popen = subprocess.Popen(
        [sys.executable, "-m", "daffi", "call", *system.options, "nap", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENVIRONMENT,
    )
    try:
        system.worker.wait_for_line(r"^NAP$", timeout=15)
        popen.send_signal(signal.SIGINT)
        stdout, stderr = popen.communicate(timeout=10)
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
    assert popen.returncode == 130, (stdout, stderr)
    assert stderr.splitlines()[-1] == "daffi: interrupted", stderr
    assert "Traceback" not in stderr, stderr
