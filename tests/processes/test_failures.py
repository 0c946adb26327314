"""What a caller sees when the callee dies in the middle of a call."""

from __future__ import annotations

import signal
import time

import pytest

from .conftest import Endpoint, Launcher

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]


def test_callee_killed_during_a_call_raises_remote_stopped_unexpectedly(
    launch: Launcher, endpoint: Endpoint
) -> None:
    launch("controller.py", *endpoint.argv).wait_for_line(r"^READY", timeout=15)
    callee = launch("sleeper.py", *endpoint.argv)
    callee.wait_for_line(r"^READY$", timeout=15)
    caller = launch("caller.py", *endpoint.argv)
    caller.wait_for_line(r"^CALLING$", timeout=15)
    callee.wait_for_line(r"^CALLED$", timeout=10)

    killed_at = time.time()
    callee.kill(signal.SIGKILL)
    outcome = caller.wait_for_line(r"^(RAISED|RETURNED) (\S+) at=(\S+) elapsed=(\S+)$", timeout=15)

    assert (outcome[1], outcome[2]) == ("RAISED", "RemoteStoppedUnexpectedly"), caller.describe()
    assert float(outcome[3]) - killed_at < 2.0
    assert caller.wait_exit(10) == 0, caller.describe()
