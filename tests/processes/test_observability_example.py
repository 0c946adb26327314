"""docs/examples/observability/stats.py runs as the Observability page says (``python
docs/examples/observability/stats.py`` from the repository's root) and prints the counts its
metrics hook made: the program is started with subprocess, stopped by its PID whatever
happens, and its whole output is checked (durations as numbers within what the callbacks
took)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Program

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Path("docs") / "examples" / "observability" / "stats.py"
RUN_TIMEOUT = 30.0
HEADER = "callback   runs  errors  cancelled  mean ms   p90 ms   max ms"
ROW = re.compile(
    r"^(?P<name>\w+) +(?P<runs>\d+) +(?P<errors>\d+) +(?P<cancelled>\d+)"
    r" +(?P<mean>\d+\.\d{3}) +(?P<p90>\d+\.\d{3}) +(?P<max>\d+\.\d{3})$"
)
SLOW = re.compile(r"^slow: (?P<name>\w+) for client \((?P<outcome>ok|error)\)$")


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Program]:
    """The example, started from the repository's root; stopped by PID at the end."""
    stdout_path, stderr_path = tmp_path / "stats.out", tmp_path / "stats.err"
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DAFFI_ADDRESS", "DAFFI_AUTH_TOKEN", "DAFFI_LOG_LEVEL"}
    }
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        popen = subprocess.Popen(
            [sys.executable, str(EXAMPLE)],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**environ, "PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
        )
    program = Program("stats", popen, stdout_path, stderr_path)
    try:
        yield program
    finally:
        program.stop()


def test_the_stats_example_prints_a_summary_per_callback(example: Program) -> None:
    assert example.wait_exit(RUN_TIMEOUT) == 0, example.describe()
    assert example.stderr() == "", example.describe()
    lines = example.lines()

    # The hook's own lines: each nap is slow; a fast call is slow only on a busy machine.
    slow = [SLOW.match(line) for line in lines if line.startswith("slow: ")]
    assert all(match is not None for match in slow), example.describe()
    assert [m.group(0) for m in slow if m is not None and m["name"] == "nap"] == [
        "slow: nap for client (ok)"
    ] * 2, example.describe()

    rest = [line for line in lines if not line.startswith("slow: ")]
    assert rest[:2] == ["divide(1, 0) raised ZeroDivisionError", HEADER], example.describe()
    rows = {}
    for line in rest[2:]:
        match = ROW.match(line)
        assert match is not None, example.describe()
        rows[match["name"]] = match
    assert sorted(rows) == ["add", "divide", "nap"], example.describe()
    counts = {
        name: (int(row["runs"]), int(row["errors"]), int(row["cancelled"]))
        for name, row in rows.items()
    }
    assert counts == {"add": (5, 0, 0), "divide": (2, 1, 0), "nap": (2, 0, 0)}

    # with 5 and 2 runs, 90% is every run: p90 is the bound of the longest run's bucket
    for name, row in rows.items():
        mean, p90, longest = float(row["mean"]), float(row["p90"]), float(row["max"])
        assert 0.0 <= mean <= longest <= p90, (name, example.describe())
    # nap(0.15) and nap(0.25): the durations cover the sleeps
    nap = rows["nap"]
    assert 200.0 <= float(nap["mean"]) < 2000.0, example.describe()
    assert 250.0 <= float(nap["max"]) < 3000.0, example.describe()
