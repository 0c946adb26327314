"""A script that never calls stop() exits promptly after its last line."""

from __future__ import annotations

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
