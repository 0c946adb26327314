"""Nodes wait for a controller that is not up yet, and come back after it restarts."""

from __future__ import annotations

import signal

import pytest

from .conftest import Endpoint, Launcher, Program

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]

# The node's Global has stopped for good: waiting longer cannot bring a result.
STOPPED = r"^ERROR GlobalContextError"


def start_node_then_controller(launch: Launcher, endpoint: Endpoint) -> tuple[Program, Program]:
    node = launch("looping_node.py", *endpoint.argv, env={"DAFFI_LOG_LEVEL": "WARNING"})
    # The node is up and retrying (its warning goes to stderr through DAFFI_LOG_LEVEL: the
    # program configures no logging).
    node.wait_for_stderr("not reachable", timeout=15)
    controller = launch("server.py", *endpoint.argv, "server", name="server-1")
    controller.wait_for_line(r"^READY", timeout=15)
    return node, controller


def test_node_started_before_its_controller_connects_when_it_comes_up(
    launch: Launcher, endpoint: Endpoint
) -> None:
    node, controller = start_node_then_controller(launch, endpoint)

    node.wait_for_line(r"^CONNECTED$", timeout=10)
    match = node.wait_for_line(rf"^RESULT (\d+) (\d+) {controller.pid}$", timeout=10)
    assert int(match[2]) == int(match[1]) + 1


def test_node_reconnects_after_a_controller_restart(launch: Launcher, endpoint: Endpoint) -> None:
    node, first = start_node_then_controller(launch, endpoint)
    node.wait_for_line(rf"^RESULT (\d+) (\d+) {first.pid}$", timeout=10)

    first.kill(signal.SIGKILL)
    second = launch("server.py", *endpoint.argv, "server", name="server-2")
    second.wait_for_line(r"^READY", timeout=15)
    match = node.wait_for_line(rf"^RESULT (\d+) (\d+) {second.pid}$", timeout=15, fail_on=STOPPED)

    assert int(match[2]) == int(match[1]) + 1
    assert node.popen.poll() is None, node.describe()
