"""The documentation's runnable examples, run as they are, in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def run_example(relative: str, timeout: float = 30) -> str:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / relative)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_period_in_async_app() -> None:
    lines = run_example("scheduling/period_in_async_app.py").splitlines()
    assert lines[0] == "scheduled heartbeat on worker"
    assert lines[1:4] == [f"heartbeat {n} from app" for n in (1, 2, 3)]
    assert "listed: heartbeat (interval, every 0.2 s)" in lines
    cancelled = lines.index("cancelled: True")
    assert lines[cancelled + 1] == "cancelled again: False"
