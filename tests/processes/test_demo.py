"""The README's main command: ``python -m daffi demo`` (what ``nox -s demo`` runs)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.processes


@pytest.mark.timeout(90)
def test_the_scheduling_demo_runs_end_to_end() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "daffi", "demo"],
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    # the banner says what runs in plain words (no "seed", "at_time", "interval")
    banner = out[: out.index("[")]
    assert banner.startswith("daffi scheduling demo: three processes, a controller"), out
    assert not re.search(r"seed|at_time|interval|_", banner), banner
    # task 1 every 2 s while the client sleeps 7 s, then cancelled
    assert out.count("Start long running task 1") == 3, out
    assert "cancel long_running_task1 -> True" in out
    # task 2 at both times, after the client that scheduled it has stopped
    assert out.count("Task 2 complete.") == 2, out
    assert out.index("stopping now") < out.index("Start long running task 2")
    assert "done: task 1 ran every interval" in out
