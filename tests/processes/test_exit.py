"""How programs exit: promptly without stop(), and non-zero when daffi died of an error."""

from __future__ import annotations

import os
import signal
import time

import pytest

from .conftest import Endpoint, Launcher, Program, Server

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]

EXIT_WITHIN = 2.0  # seconds from the last line to the process's exit


def assert_exits_promptly(program: Program) -> None:
    last_line_at = float(program.wait_for_line(r"^LAST LINE (\S+)$", timeout=20)[1])
    returncode = program.wait_exit(10)
    exited_at = time.time()
    assert exited_at - last_line_at < EXIT_WITHIN, program.describe()
    assert returncode == 0, program.describe()


@pytest.mark.parametrize("style", ["node", "asyncio", "trio"])
def test_client_without_stop_exits(launch: Launcher, callback_server: Server, style: str) -> None:
    client = launch("no_stop.py", style, *callback_server.endpoint.argv)
    assert client.wait_for_line(r"^RESULT (.*)$", timeout=20)[1] == "3"
    assert_exits_promptly(client)


def test_controller_without_stop_exits_while_a_node_is_connected(
    launch: Launcher, endpoint: Endpoint
) -> None:
    controller = launch("no_stop.py", "controller", *endpoint.argv)
    controller.wait_for_line(r"^READY$", timeout=15)
    tester = launch("idle_node.py", *endpoint.argv, "tester", stdin=True)
    tester.wait_for_line(r"^JOINED", timeout=15)
    assert_exits_promptly(controller)


def test_a_script_whose_global_crashed_exits_non_zero(launch: Launcher, endpoint: Endpoint) -> None:
    program = launch("crashing.py", "join", *endpoint.argv, stdin=True)
    program.wait_for_line(r"^READY$", timeout=15)
    program.send_line()  # the crash
    returncode = program.wait_exit(10)
    assert returncode != 0, program.describe()
    assert "JOIN RETURNED" not in program.lines(), program.describe()
    stderr = program.stderr()
    assert "daffi.exceptions.GlobalContextError: Global 'crasher' stopped because of an error" in (
        stderr
    ), program.describe()
    assert "InjectedCrash: injected crash in Session" in stderr, program.describe()


def cli_argv(endpoint: Endpoint) -> list[str]:
    """``python -m daffi controller`` options for ``endpoint``."""
    if endpoint.kind == "tcp":
        return ["--host", "127.0.0.1", "--port", endpoint.argv[2]]
    return ["--unix-sock-path", endpoint.argv[1]]


def cli_controller(launch: Launcher, endpoint: Endpoint) -> Program:
    """``python -m daffi controller`` on ``endpoint``, once it listens."""
    controller = launch("daffi_cli.py", "controller", *cli_argv(endpoint), name="controller")
    controller.wait_for_line(r"^daffi controller 'controller' listening on ", timeout=15)
    return controller


def assert_left(controller: Program, node: str) -> None:
    """The controller logged that ``node`` left (said Bye), not that it disconnected."""
    controller.wait_for_stderr(f"node {node!r} left")
    assert f"node {node!r} disconnected" not in controller.stderr(), controller.describe()


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_ctrl_c_in_an_async_app_says_bye(
    launch: Launcher, endpoint: Endpoint, library: str
) -> None:
    controller = cli_controller(launch, endpoint)
    app = launch("interrupted_app.py", library, *endpoint.argv)
    app.wait_for_line(r"^READY$", timeout=15)
    controller.wait_for_stderr("node 'ctrl-c-app' connected")
    os.kill(app.pid, signal.SIGINT)
    app.wait_for_line(r"^INTERRUPTED$", timeout=10)
    assert app.wait_exit(10) == 0, app.describe()
    assert_left(controller, "ctrl-c-app")


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_a_daffi_2_style_app_whose_loop_ends_says_bye(
    launch: Launcher, endpoint: Endpoint, library: str
) -> None:
    controller = cli_controller(launch, endpoint)
    app = launch("loop_ends.py", library, *endpoint.argv)
    assert app.wait_for_line(r"^READY (\S+)$", timeout=15)[1] == library
    assert_exits_promptly(app)
    assert_left(controller, "loop-ends-app")


def test_the_controller_command_exits_1_when_its_controller_crashed(
    launch: Launcher, endpoint: Endpoint
) -> None:
    program = launch("crashing.py", "cli", *cli_argv(endpoint), stdin=True)
    program.wait_for_line(r"^daffi controller 'controller' listening on ", timeout=15)
    program.send_line()  # the crash
    assert program.wait_exit(10) == 1, program.describe()
    last_line = program.stderr().strip().splitlines()[-1]
    assert last_line == (
        "daffi: Global 'controller' stopped because of an error: "
        "InjectedCrash('injected crash in Controller')"
    ), program.describe()
