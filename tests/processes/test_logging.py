"""What a program sees of daffi's logging on its stderr, as a fresh process.

daffi logs through ``logging.getLogger("daffi...")`` with a ``NullHandler`` on ``daffi``: a
program that configured no logging prints nothing of daffi's (no lastResort lines), one
that called ``logging.basicConfig()`` sees the lines, and ``DAFFI_LOG_LEVEL`` shows them
either way, never twice.

Each program is a node whose controller is not there: its first failed connection logs a
WARNING ("... is not reachable ...") and the constructor gives up after ``connect_timeout``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

import pytest

from .conftest import free_tcp_port

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]

WARNING = "is not reachable"

PROGRAM = """
import logging, sys
{setup}
from daffi import Global, InitializationError
try:
    Global("lonely", host="127.0.0.1", port={port}, connect_timeout=0.5)
except InitializationError:
    print("GAVE UP", flush=True)
"""


def run(setup: str = "", env: Mapping[str, str] | None = None) -> str:
    """Run the lonely node with ``setup`` before daffi is imported; returns its stderr."""
    code = PROGRAM.format(setup=setup, port=free_tcp_port())
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DAFFI_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**environ, **(env or {})},
        timeout=30,  # run() kills the child by its PID at the deadline
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["GAVE UP"], done.stdout + done.stderr
    return done.stderr


def test_a_program_that_configured_no_logging_prints_nothing_of_daffi() -> None:
    assert run() == ""


def test_a_program_that_configured_logging_sees_the_warning() -> None:
    stderr = run("logging.basicConfig()")
    assert "WARNING:daffi.node:node 'lonely': controller at tcp://127.0.0.1:" in stderr
    assert WARNING in stderr


def test_daffi_log_level_shows_the_lines_without_logging_configured() -> None:
    stderr = run(env={"DAFFI_LOG_LEVEL": "warning"})
    lines = [line for line in stderr.splitlines() if WARNING in line]
    assert len(lines) == 1, stderr
    assert " WARNING daffi.node: node 'lonely': controller at " in lines[0]


def test_daffi_log_level_debug_goes_through_the_programs_handler_once() -> None:
    # The application's root logger stays at WARNING: DAFFI_LOG_LEVEL lowers daffi's alone,
    # and its records reach the application's handler, not a second stderr handler too.
    stderr = run(
        "logging.basicConfig(format='APP %(levelname)s %(name)s %(message)s')",
        env={"DAFFI_LOG_LEVEL": "DEBUG"},
    )
    lines = stderr.splitlines()
    warnings = [line for line in lines if line.startswith("APP WARNING daffi.node")]
    assert len(warnings) == 1, stderr
    assert WARNING in warnings[0]
    assert any(line.startswith("APP DEBUG daffi.node") for line in lines), stderr
    assert all(line.startswith("APP ") for line in lines), stderr


def test_daffi_log_level_leaves_a_level_the_program_chose() -> None:
    stderr = run(
        "logging.basicConfig(); logging.getLogger('daffi').setLevel(logging.ERROR)",
        env={"DAFFI_LOG_LEVEL": "DEBUG"},
    )
    assert stderr == ""
