"""Who talks to whom: a standalone controller with two nodes that call each other."""

from __future__ import annotations

import pytest

from .conftest import Endpoint, Launcher

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]


def test_two_nodes_call_each_other_through_a_standalone_controller(
    launch: Launcher, endpoint: Endpoint
) -> None:
    controller = launch("controller.py", *endpoint.argv)
    controller.wait_for_line(r"^READY", timeout=15)
    alice = launch("peer.py", *endpoint.argv, "alice", "bob", name="alice", stdin=True)
    bob = launch("peer.py", *endpoint.argv, "bob", "alice", name="bob", stdin=True)

    assert alice.wait_for_line(r"^RESULT (.*)$", timeout=20)[1] == "pong from bob to alice"
    assert bob.wait_for_line(r"^RESULT (.*)$", timeout=20)[1] == "pong from alice to bob"
    alice.wait_for_line(r"^DONE$", timeout=20)
    bob.wait_for_line(r"^DONE$", timeout=20)
    for peer in (alice, bob):
        assert "CALLED" in "\n".join(peer.lines())
        assert "NEVER CALLED" not in peer.lines()
        peer.send_line()
    for peer in (alice, bob):
        peer.wait_for_line(r"^STOPPED$", timeout=10)
        assert peer.wait_exit(10) == 0, peer.describe()
