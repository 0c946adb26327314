"""Shared helpers for the benchmarks: child processes, latency statistics, result tables.

Only the standard library is imported here, so the floor programs can use it without
importing daffi.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import IO, Any

__all__ = [
    "FLOOR",
    "ROOT",
    "Measurement",
    "RoundResult",
    "Settings",
    "announce_ready",
    "child_process",
    "format_details",
    "format_table",
    "machine_summary",
    "median_measurement",
    "print_round",
    "python_module",
    "read_ready_line",
    "run_child",
    "time_calls",
    "wait_for_stdin_eof",
]

ROOT = Path(__file__).resolve().parent.parent
READY = "READY "


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much to measure.

    Attributes:
        rounds: how many times each measurement is repeated; the table shows medians.
        calls: timed calls per round.
        warmup: untimed calls before each round.
    """

    rounds: int
    calls: int
    warmup: int


# ---------------------------------------------------------------- timing and statistics


@dataclasses.dataclass(frozen=True)
class RoundResult:
    """One round: ``calls`` sequential round trips and their latency percentiles."""

    calls: int
    elapsed_ns: int
    p50_ns: int
    p99_ns: int

    @property
    def calls_per_s(self) -> float:
        return self.calls / (self.elapsed_ns / 1e9)

    @classmethod
    def from_latencies(cls, latencies_ns: Sequence[int], elapsed_ns: int) -> RoundResult:
        ordered = sorted(latencies_ns)
        return cls(
            calls=len(ordered),
            elapsed_ns=elapsed_ns,
            p50_ns=_percentile(ordered, 50),
            p99_ns=_percentile(ordered, 99),
        )


def _percentile(ordered: Sequence[int], pct: float) -> int:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def time_calls(call: Any, calls: int) -> RoundResult:
    """Call ``call(i)`` for i in ``range(calls)`` one after the other, timing each call.

    The wall time of the whole loop gives calls/s; the per-call times give the percentiles.
    """
    latencies = [0] * calls
    clock = time.perf_counter_ns
    start = clock()
    for i in range(calls):
        t0 = clock()
        call(i)
        latencies[i] = clock() - t0
    return RoundResult.from_latencies(latencies, clock() - start)


def print_round(result: RoundResult) -> None:
    """Write a client's result as one JSON line on stdout (what :func:`run_child` reads)."""
    print(json.dumps(dataclasses.asdict(result)), flush=True)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """The median of several rounds of one (workload, transport, library, mode)."""

    workload: str
    transport: str
    library: str
    mode: str
    calls_per_s: float
    p50_us: float
    p99_us: float
    rounds: int
    calls_per_round: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def median_measurement(
    rounds: Sequence[RoundResult], *, workload: str, transport: str, library: str, mode: str
) -> Measurement:
    """Medians over ``rounds`` of calls/s, p50 and p99 (each taken on its own)."""
    return Measurement(
        workload=workload,
        transport=transport,
        library=library,
        mode=mode,
        calls_per_s=statistics.median(r.calls_per_s for r in rounds),
        p50_us=statistics.median(r.p50_ns for r in rounds) / 1000,
        p99_us=statistics.median(r.p99_ns for r in rounds) / 1000,
        rounds=len(rounds),
        calls_per_round=rounds[0].calls,
    )


# ---------------------------------------------------------------- child processes


def python_module(module: str, *args: str) -> list[str]:
    """The command line that runs ``benchmarks.<module>`` with this interpreter."""
    return [sys.executable, "-m", f"benchmarks.{module}", *args]


@contextlib.contextmanager
def child_process(cmd: Sequence[str]) -> Iterator[subprocess.Popen[str]]:
    """Start ``cmd`` (stdin/stdout piped, cwd = repository root) and always clean it up.

    On exit stdin is closed first (the servers stop by themselves when it closes), then the
    process is terminated and finally killed if it is still there, by its PID only.
    """
    proc = subprocess.Popen(
        list(cmd),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    for signal_it in (None, proc.terminate, proc.kill):
        if signal_it is not None:
            signal_it()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
            break
    if proc.stdout is not None:
        proc.stdout.close()


def read_ready_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """Wait for the ``READY {json}`` line a server prints once it is listening."""
    assert proc.stdout is not None
    line = _readline(proc.stdout, timeout)
    if not line.startswith(READY):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)  # it closed stdout: it is exiting, so report its status
        raise RuntimeError(
            f"server {proc.args!r} did not print {READY!r}... (exit status "
            f"{proc.returncode!r}, got {line!r}); its stderr is above"
        )
    info: dict[str, Any] = json.loads(line[len(READY) :])
    return info


def _readline(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no line from a child process within {timeout} s")
    return stream.readline()


def announce_ready(**info: Any) -> None:
    """Print the ``READY {json}`` line that :func:`read_ready_line` waits for."""
    print(READY + json.dumps(info), flush=True)


def wait_for_stdin_eof() -> None:
    """Block until the parent closes our stdin (it does so when it is done with us)."""
    while sys.stdin.read(65536):
        pass


def run_child(cmd: Sequence[str], timeout: float) -> RoundResult:
    """Run a client to completion and return the round it printed as its last line."""
    with child_process(cmd) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"client {list(cmd)!r} did not finish within {timeout} s") from None
        if proc.returncode != 0:
            raise RuntimeError(
                f"client {list(cmd)!r} exited with {proc.returncode} (its stderr is above)"
            )
    lines = out.strip().splitlines()
    if not lines:
        raise RuntimeError(f"client {list(cmd)!r} printed nothing")
    return RoundResult(**json.loads(lines[-1]))


# ---------------------------------------------------------------- reporting


def machine_summary() -> str:
    """One line about where the figures come from."""
    cpus = os.cpu_count()
    with contextlib.suppress(AttributeError):
        cpus = len(os.sched_getaffinity(0))
    versions = ", ".join(f"{name} {_version(name)}" for name in ("daffi", "anyio", "msgspec"))
    load = ""
    with contextlib.suppress(AttributeError, OSError):
        load = f", load average {os.getloadavg()[0]:.2f} at start"  # other work skews figures
    return (
        f"nproc {cpus}{load}; Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.platform()}; {versions}"
    )


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


FLOOR = "floor"
_SUMMARY_HEADERS = (
    "workload",
    "transport",
    "library",
    "calls/s",
    "p50 us",
    "p99 us",
    "floor (sync portal) calls/s",
    "floor (async) calls/s",
    "library/floor(sync)",
)
_DETAIL_HEADERS = ("workload", "transport", "library", "mode", "calls/s", "p50 us", "p99 us")


def format_table(measurements: Sequence[Measurement]) -> str:
    """A Markdown table: one row per library measured, beside the floor of its transport.

    The ratio is the library's calls/s divided by the floor's through a ``BlockingPortal``.
    """
    floors = {(m.workload, m.transport, m.mode): m for m in measurements if m.library == FLOOR}
    rows: list[tuple[str, ...]] = []
    for m in measurements:
        if m.library == FLOOR:
            continue
        sync_floor = floors.get((m.workload, m.transport, "sync-portal"))
        async_floor = floors.get((m.workload, m.transport, "async"))
        rows.append(
            (
                m.workload,
                m.transport,
                m.library,
                f"{m.calls_per_s:,.0f}",
                f"{m.p50_us:,.0f}",
                f"{m.p99_us:,.0f}",
                f"{sync_floor.calls_per_s:,.0f}" if sync_floor else "-",
                f"{async_floor.calls_per_s:,.0f}" if async_floor else "-",
                f"{m.calls_per_s / sync_floor.calls_per_s:.2f}" if sync_floor else "-",
            )
        )
    return _markdown(_SUMMARY_HEADERS, rows)


def format_details(measurements: Sequence[Measurement]) -> str:
    """A Markdown table of every measurement, the floors' latencies included."""
    rows = [
        (
            m.workload,
            m.transport,
            m.library,
            m.mode,
            f"{m.calls_per_s:,.0f}",
            f"{m.p50_us:,.1f}",
            f"{m.p99_us:,.1f}",
        )
        for m in measurements
    ]
    return _markdown(_DETAIL_HEADERS, rows)


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )
