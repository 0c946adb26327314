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
import resource
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
    "SCHEDULE",
    "SCHEDULE_TARGET_MS",
    "Client",
    "CpuWatch",
    "Measurement",
    "RoundResult",
    "Settings",
    "announce_ready",
    "child_process",
    "format_details",
    "format_schedule_table",
    "format_table",
    "is_quick",
    "lateness_stats",
    "load_note",
    "machine_summary",
    "median_measurement",
    "percentile",
    "print_round",
    "python_module",
    "read_ready_line",
    "run_child",
    "run_child_json",
    "run_rounds",
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


#: ``run.py --quick``: a short run (~30 s)
QUICK = Settings(rounds=3, calls=2_500, warmup=200)
#: ``run.py``'s default
DEFAULT = Settings(rounds=7, calls=3_000, warmup=300)


def is_quick(settings: Settings) -> bool:
    """Whether these are ``run.py --quick``'s settings (workloads with fixed sizes shrink)."""
    return settings == QUICK


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


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (any order, not empty)."""
    ordered = sorted(values)
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
    # Added for the workloads after W1; the defaults keep W1's JSON lines meaning the same.
    #: what ``calls_per_s`` counts: "calls/s", "MiB/s (both ways)", "items/s", "fires/s"
    unit: str = "calls/s"
    #: ``"rate"`` (the main table) or ``SCHEDULE`` (the scheduling table: the p50/p99/max
    #: columns are the lateness of fires, ``drift_us`` the last fire's lateness)
    kind: str = "rate"
    max_us: float | None = None
    drift_us: float | None = None
    #: CPU time of the measured process over the window, as % of one core
    cpu_pct: float | None = None
    #: anything a reader needs next to the figures (machine load during the measurement...)
    note: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def median_measurement(
    rounds: Sequence[RoundResult],
    *,
    workload: str,
    transport: str,
    library: str,
    mode: str,
    unit: str = "calls/s",
    scale: float = 1.0,
    latencies: bool = True,
    note: str = "",
) -> Measurement:
    """Medians over ``rounds`` of calls/s, p50 and p99 (each taken on its own).

    ``scale`` turns calls/s into ``unit`` (e.g. MiB moved per call). ``latencies=False``
    reports p50/p99 as 0, shown as "-" (streams time the whole stream, not each item).
    """
    return Measurement(
        workload=workload,
        transport=transport,
        library=library,
        mode=mode,
        calls_per_s=statistics.median(r.calls_per_s for r in rounds) * scale,
        p50_us=statistics.median(r.p50_ns for r in rounds) / 1000 if latencies else 0.0,
        p99_us=statistics.median(r.p99_ns for r in rounds) / 1000 if latencies else 0.0,
        rounds=len(rounds),
        calls_per_round=rounds[0].calls,
        unit=unit,
        note=note,
    )


# ---------------------------------------------------------------- child processes


def where(path: str) -> dict[str, str]:
    """The ``Global`` options of a benchmark program's ``--path``: a daffi address
    (``nats://...``, ``tcp://...``) when it has a scheme, else a Unix socket directory."""
    return {"address": path} if "://" in path else {"unix_sock_path": path}


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
    return RoundResult(**run_child_json(cmd, timeout))


def run_child_json(cmd: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run a client to completion and return the JSON object it printed as its last line."""
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
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@dataclasses.dataclass(frozen=True)
class Client:
    """One client program a round runs: what it measures and how to start it.

    Attributes:
        library: ``"daffi"``, ``FLOOR``, ...
        mode: what the row is (shown in the details table, and how floors are found:
            ``"sync-portal"`` and ``"async"`` are the floor columns of the summary).
        cmd: the command line; it prints one :class:`RoundResult` JSON line last.
        unit, scale, latencies: see :func:`median_measurement`.
    """

    library: str
    mode: str
    cmd: Sequence[str]
    unit: str = "calls/s"
    scale: float = 1.0
    latencies: bool = True


def run_rounds(
    workload: str,
    transport: str,
    clients: Sequence[Client],
    rounds: int,
    timeout: float,
    label: str,
) -> list[Measurement]:
    """Run every client once per round, in turn, and return one median per client.

    A slow spell on the machine then hits every client of a round alike (see W1). Progress
    goes to stderr, one line per client and round, prefixed with ``label``. A client that
    fails (its traceback is on stderr) is not run again; its row says ``FAILED`` in the note
    and the other rows and workloads still get measured.
    """
    results: dict[int, list[RoundResult]] = {}
    failures: dict[int, str] = {}
    watch = CpuWatch()
    for round_no in range(1, rounds + 1):
        for index, client in enumerate(clients):
            if index in failures:
                continue
            try:
                result = run_child(client.cmd, timeout)
            except (RuntimeError, TimeoutError, ValueError) as exc:
                failures[index] = f"FAILED in round {round_no} (traceback on stderr)"
                print(f"  {label} {client.library} {client.mode} FAILED: {exc}", file=sys.stderr)
                continue
            results.setdefault(index, []).append(result)
            rate = result.calls_per_s * client.scale
            latency = (
                f"  p50 {result.p50_ns / 1000:>9,.1f} us  p99 {result.p99_ns / 1000:>9,.1f} us"
                if client.latencies
                else ""
            )
            print(
                f"  {label} round {round_no}/{rounds} {client.library:<5} {client.mode:<32} "
                f"{rate:>10,.1f} {client.unit}{latency}",
                file=sys.stderr,
                flush=True,
            )
    note = watch.note()
    measurements = []
    for index, client in enumerate(clients):
        failed = failures.get(index, "")
        if index not in results:
            measurements.append(_failed(workload, transport, client, f"{failed}; {note}"))
            continue
        measurements.append(
            median_measurement(
                results[index],
                workload=workload,
                transport=transport,
                library=client.library,
                mode=client.mode,
                unit=client.unit,
                scale=client.scale,
                latencies=client.latencies,
                note="; ".join(part for part in (failed, note) if part),
            )
        )
    return measurements


def _failed(workload: str, transport: str, client: Client, note: str) -> Measurement:
    """The row of a client that never finished a round: zeros, and why in the note."""
    return Measurement(
        workload=workload,
        transport=transport,
        library=client.library,
        mode=client.mode,
        calls_per_s=0.0,
        p50_us=0.0,
        p99_us=0.0,
        rounds=0,
        calls_per_round=0,
        unit=client.unit,
        note=note,
    )


def lateness_stats(lateness_s: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of lateness values in seconds, in microseconds (nearest rank)."""
    return {
        "p50_us": percentile(lateness_s, 50) * 1e6,
        "p99_us": percentile(lateness_s, 99) * 1e6,
        "max_us": max(lateness_s) * 1e6,
    }


# ---------------------------------------------------------------- reporting


def load_note() -> str:
    """``"load 1.41"`` (1-minute load average now, per CPU flagged when busy), or ``""``.

    The load average counts the benchmark's own processes too, and lags by about a minute;
    :class:`CpuWatch` tells what *other* processes used during a measurement.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return ""
    busy = " (busy)" if load >= _BUSY_LOAD * _cpu_count() else ""
    return f"load {load:.2f}{busy}"


class CpuWatch:
    """How much CPU processes *other than* this one and its children used meanwhile.

    Machine-wide busy time (``/proc/stat``) minus the CPU of this process, its reaped
    children (``RUSAGE_CHILDREN``) and its live children (``/proc/<pid>/stat``), between
    construction and :meth:`note`. Linux only; elsewhere the note falls back to the load.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.start = _cpu_snapshot()

    def others_cores(self) -> float | None:
        """CPU cores' worth of work done by other processes since construction."""
        end = _cpu_snapshot()
        if self.start is None or end is None:
            return None
        machine, own = (e - s for e, s in zip(end, self.start, strict=True))
        return max(machine - own, 0.0) / (time.monotonic() - self.started)

    def note(self) -> str:
        """``"others used 0.42 of 2 CPUs; load 1.80"``, ``" (busy)"`` flagged."""
        others = self.others_cores()
        if others is None:
            return load_note()
        cpus = _cpu_count()
        busy = " (busy)" if others >= _BUSY_OTHERS * cpus else ""
        load = load_note().replace(" (busy)", "")
        return f"others used {others:.2f} of {cpus} CPUs{busy}; {load}"


# Other processes using this share of the CPUs during a measurement make it "busy".
_BUSY_OTHERS = 0.25


def _cpu_snapshot() -> tuple[float, float] | None:
    """(machine busy CPU seconds, this process tree's CPU seconds), or None without /proc."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    machine = (sum(fields[:8]) - fields[3] - fields[4]) / ticks
    me = os.getpid()
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                rest = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        # after "pid (comm)": state ppid ... utime is field 14, stime 15 (1-based)
        if int(rest[1]) == me:
            own += (int(rest[11]) + int(rest[12])) / ticks
    return machine, own


# A 1-minute load average at or above this many runnable tasks per CPU counts as busy: the
# figures then carry other people's work too.
_BUSY_LOAD = 0.5


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_summary() -> str:
    """One line about where the figures come from."""
    cpus = os.cpu_count()
    with contextlib.suppress(AttributeError):
        cpus = len(os.sched_getaffinity(0))
    versions = ", ".join(f"{name} {_version(name)}" for name in ("daffi", "anyio", "msgspec"))
    load = ""
    with contextlib.suppress(AttributeError, OSError):
        one, five, fifteen = os.getloadavg()  # other work skews figures
        load = f", load average {one:.2f} at start (5 min {five:.2f}, 15 min {fifteen:.2f})"
        if one >= _BUSY_LOAD * (cpus or 1):
            load += (
                " - BUSY: other processes are using the CPUs; compare figures only with the "
                "floors of this run"
            )
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
SCHEDULE = "schedule"
_SUMMARY_HEADERS = (
    "workload",
    "transport",
    "library",
    "mode",
    "rate",
    "unit",
    "p50 us",
    "p99 us",
    "floor (sync portal)",
    "floor (async)",
    "library/floor(sync)",
    "library/floor(async)",
    "note",
)
_DETAIL_HEADERS = (
    "workload",
    "transport",
    "library",
    "mode",
    "rate",
    "unit",
    "p50 us",
    "p99 us",
    "rounds",
    "per round",
)
_SCHEDULE_HEADERS = (
    "workload",
    "transport",
    "library",
    "mode",
    "fires",
    "fires/s",
    "late p50 ms",
    "late p99 ms",
    "late max ms",
    "drift ms",
    "CPU % of a core",
    "target met",
    "note",
)
#: The issue's targets for scheduling accuracy on an idle machine: p99 lateness and drift
#: after 200 fires, each under this many milliseconds.
SCHEDULE_TARGET_MS = 2.0


def format_table(measurements: Sequence[Measurement]) -> str:
    """Markdown: one row per library measured, beside the floors of its workload and transport.

    The ratios are the library's rate divided by the floor's through a ``BlockingPortal``
    (``sync-portal`` mode) and inside the event loop (``async`` mode), where those floors were
    measured. Scheduling measurements (``kind == SCHEDULE``) get a second table.
    """
    rated = [m for m in measurements if m.kind != SCHEDULE]
    floors = {(m.workload, m.transport, m.mode): m for m in rated if m.library == FLOOR}
    rows: list[tuple[str, ...]] = []
    for m in rated:
        if m.library == FLOOR:
            continue
        sync_floor = floors.get((m.workload, m.transport, "sync-portal"))
        async_floor = floors.get((m.workload, m.transport, "async"))
        rows.append(
            (
                m.workload,
                m.transport,
                m.library,
                m.mode,
                _rate(m.calls_per_s) if m.rounds else "FAILED",
                m.unit,
                _us(m.p50_us, "{:,.0f}"),
                _us(m.p99_us, "{:,.0f}"),
                _floor_rate(sync_floor),
                _floor_rate(async_floor),
                _ratio(m, sync_floor),
                _ratio(m, async_floor),
                m.note,
            )
        )
    table = _markdown(_SUMMARY_HEADERS, rows)
    scheduled = [m for m in measurements if m.kind == SCHEDULE]
    if scheduled:
        table += "\n\nScheduling (lateness of each fire after its ideal time):\n\n"
        table += format_schedule_table(scheduled)
    return table


def format_schedule_table(measurements: Sequence[Measurement]) -> str:
    """Markdown table of scheduling measurements; times in milliseconds."""
    rows = [
        (
            m.workload,
            m.transport,
            m.library,
            m.mode,
            f"{m.calls_per_round:,}" if m.rounds else "FAILED",
            _rate(m.calls_per_s) if m.calls_per_s else "-",
            # max_us is None when lateness was not measured (the many-schedules load test)
            _ms(m.p50_us if m.max_us is not None else None),
            _ms(m.p99_us if m.max_us is not None else None),
            _ms(m.max_us),
            _ms(m.drift_us),
            f"{m.cpu_pct:.1f}" if m.cpu_pct is not None else "-",
            _target(m),
            m.note,
        )
        for m in measurements
    ]
    return _markdown(_SCHEDULE_HEADERS, rows)


def _target(m: Measurement) -> str:
    """Whether a daffi accuracy row meets the issue's targets (p99, and drift if measured)."""
    if m.library == FLOOR or m.max_us is None or not m.rounds:
        return "-"
    checks = [m.p99_us / 1000 < SCHEDULE_TARGET_MS]
    if m.drift_us is not None:
        checks.append(abs(m.drift_us) / 1000 < SCHEDULE_TARGET_MS)
    return "yes" if all(checks) else "NO"


def _floor_rate(floor: Measurement | None) -> str:
    if floor is None:
        return "-"
    return _rate(floor.calls_per_s) if floor.rounds else "FAILED"


def _ratio(m: Measurement, floor: Measurement | None) -> str:
    if floor is None or not m.rounds or not floor.rounds:
        return "-"
    return f"{m.calls_per_s / floor.calls_per_s:.2f}"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _us(value: float, fmt: str) -> str:
    return fmt.format(value) if value else "-"


def _ms(value_us: float | None) -> str:
    return "-" if value_us is None else f"{value_us / 1000:,.2f}"


def format_details(measurements: Sequence[Measurement]) -> str:
    """A Markdown table of every rate measurement, the floors' latencies included."""
    rows = [
        (
            m.workload,
            m.transport,
            m.library,
            m.mode,
            _rate(m.calls_per_s) if m.rounds else "FAILED",
            m.unit,
            _us(m.p50_us, "{:,.1f}"),
            _us(m.p99_us, "{:,.1f}"),
            str(m.rounds),
            f"{m.calls_per_round:,}",
        )
        for m in measurements
        if m.kind != SCHEDULE
    ]
    return _markdown(_DETAIL_HEADERS, rows)


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )
