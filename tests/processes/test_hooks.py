"""Lifecycle hooks run promptly in every process when nodes join and leave."""

from __future__ import annotations

import signal
import time

import pytest

from .conftest import Endpoint, Launcher

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]

PROMPT = 1.0  # seconds: SPEC "promptly (under 1 s after the event)"


@pytest.mark.parametrize("role", ["controller", "node"])
@pytest.mark.parametrize("leave", ["stop", "sigkill"])
def test_hooks_see_a_node_join_and_leave(
    launch: Launcher, endpoint: Endpoint, role: str, leave: str
) -> None:
    if role == "node":
        launch("controller.py", *endpoint.argv).wait_for_line(r"^READY", timeout=15)
    hooks = launch("hooks.py", *endpoint.argv, role)
    hooks.wait_for_line(r"^READY$", timeout=15)
    hooks.find_line(r"^INIT hooks ", timeout=5)
    hooks.find_line(r"^CONNECT hooks ", timeout=5)  # its own connection counts

    joiner = launch("idle_node.py", *endpoint.argv, "joiner", stdin=True)
    joined_at = float(joiner.wait_for_line(r"^JOINED (\S+)$", timeout=15)[1])
    connected_at = float(hooks.find_line(r"^CONNECT joiner (\S+)$", timeout=5)[1])
    assert connected_at - joined_at < PROMPT

    if leave == "stop":
        joiner.send_line()
        left_at = float(joiner.wait_for_line(r"^LEAVING (\S+)$", timeout=5)[1])
    else:
        left_at = time.time()
        joiner.kill(signal.SIGKILL)
    disconnected_at = float(hooks.find_line(r"^DISCONNECT joiner (\S+)$", timeout=5)[1])
    assert disconnected_at - left_at < PROMPT
    assert "DISCONNECT hooks" not in "\n".join(hooks.lines())
