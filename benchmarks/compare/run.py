"""Run W1-W6, start-up and server RSS for daffi 4 (ours), daffi 3.0.1, daffi 2.2.1 and a floor.

    python -m benchmarks.compare.run [--quick] [--rounds N] [--out DIR]
        [--libs daffi4-asyncio,daffi3,...] [--workloads W1-unix,...] [--rebuild-envs]

Builds or reuses the virtualenvs (``envs.py``), then runs every workload for every library,
round after round: in each round every (workload, library) cell gets fresh processes, and the
libraries take turns (the order rotates every round) so that a slow spell on the machine hits
them alike. Writes ``results.jsonl`` (one line per round and cell, then one per table cell)
and ``results.md`` (the table of medians and ratios) into ``--out`` and prints the report.
Progress goes to stderr.

A cell whose client crashes is recorded as an error for that round and still runs in the next
rounds; one that hangs (no result within the client timeout) is not run again. Only the ratios
within one run mean anything: the machine is small and shared.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.compare import _proto, envs

DEFAULT_OUT = envs.ROOT / "benchmarks" / "results"
#: how long a long-running role may take to say READY
READY_TIMEOUT = 60.0
#: after closing their stdin: how long processes get to exit by themselves, then after SIGTERM
#: (the drivers give their library's stop() 3 s, then exit anyway)
STOP_GRACE = (5.0, 3.0)
#: how long a client gets to exit after printing its result
EXIT_GRACE = 10.0
#: parent of the runs' private temp dirs: short, as daffi 3 cuts Unix socket paths at 26 bytes
SHORT_TMP = "/tmp"


# ---------------------------------------------------------------- what is measured


@dataclasses.dataclass(frozen=True)
class Library:
    key: str
    label: str
    env: str
    module: str
    extra: tuple[str, ...] = ()
    #: expected ``daffi.__version__`` (None: not checked)
    version: str | None = None

    @property
    def is_floor(self) -> bool:
        return self.module.endswith("lib_floor")  # lib_floor, sched_lib_floor


OURS_ASYNCIO = Library(
    "daffi4-asyncio", "ours (asyncio)", "ours", "lib_daffi4", ("--backend", "asyncio")
)
OURS_TRIO = Library("daffi4-trio", "ours (trio)", "ours", "lib_daffi4", ("--backend", "trio"))
DAFFI3 = Library("daffi3", "daffi 3.0.1", "daffi3", "lib_daffi3", version="3.0.1")
DAFFI2 = Library("daffi2", "daffi 2.2.1", "daffi2", "lib_daffi2", version="2.2.1")
FLOOR_SYNC = Library(
    "floor-sync", "floor (sync, BlockingPortal)", "ours", "lib_floor", ("--mode", "sync")
)
FLOOR_ASYNC = Library("floor-async", "floor (async)", "ours", "lib_floor", ("--mode", "async"))
LIBRARIES = (OURS_ASYNCIO, OURS_TRIO, DAFFI3, DAFFI2, FLOOR_SYNC, FLOOR_ASYNC)
OURS = (OURS_ASYNCIO, OURS_TRIO)


@dataclasses.dataclass(frozen=True)
class Workload:
    key: str
    title: str
    #: the drivers' ``--workload``
    driver: str
    transport: str
    unit: str
    #: the floors measured beside it; the first is what ours/floor divides by
    floors: tuple[Library, ...] = ()


WORKLOADS = (
    Workload(
        "W1-unix", "W1 sequential sync echo, unix", "w1", "unix", "calls/s",
        (FLOOR_SYNC, FLOOR_ASYNC),
    ),
    Workload(
        "W1-tcp", "W1 sequential sync echo, tcp", "w1", "tcp", "calls/s",
        (FLOOR_SYNC, FLOOR_ASYNC),
    ),
    Workload(
        "W2-unix", "W2 64 calls in flight (async API), unix", "w2", "unix", "calls/s",
        (FLOOR_ASYNC,),
    ),
    Workload(
        "W3-unix", "W3 1 MiB bytes echo (sync), unix", "w3", "unix", "MiB/s",
        (FLOOR_SYNC, FLOOR_ASYNC),
    ),
    Workload("W4-unix", "W4 broadcast to 3 nodes (sync), unix", "w4", "unix", "broadcasts/s"),
    Workload(
        "W5-unix", "W5 daffi 2 style async app, 64 in flight, unix", "w5", "unix", "calls/s",
        (FLOOR_ASYNC,),
    ),
    Workload(
        "W6-unix", "W6 64 BG calls in flight from one thread (daffi 3: 16 threads), unix", "w6",
        "unix", "calls/s", (FLOOR_SYNC,),
    ),
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Derived:
    """A table row taken from another workload's rounds (a field of their records)."""

    key: str
    title: str
    unit: str
    workload: str
    field: str


DERIVED = (
    Derived("startup", "start to first successful call", "ms", "W1-unix", "startup_ms"),
    Derived("rss-W1", "server RSS after W1 unix", "MiB", "W1-unix", "server_rss_mib"),
    # RSS counts the shared libraries' pages the process maps, which varies with the page
    # cache by ~2 MiB from one minute to the next here; the anonymous part does not.
    Derived("anon-W1", "server anonymous RSS after W1 unix", "MiB", "W1-unix", "server_anon_mib"),
    Derived("rss-W3", "server RSS after W3 (1 MiB echo)", "MiB", "W3-unix", "server_rss_mib"),
)


@dataclasses.dataclass(frozen=True)
class Size:
    calls: int
    warmup: int


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int
    #: per driver workload (w1..w6)
    sizes: dict[str, Size]
    #: a client that has not printed its result by then hangs (it dumps its threads first)
    client_timeout: float
    payload_bytes: int = 1 << 20
    #: calls in flight in W2, W5 and W6
    concurrency: int = 64
    #: W6 in daffi 3 (no BG): this many threads making sync calls
    threads: int = 16


QUICK = Settings(
    rounds=3,
    sizes={
        "w1": Size(2000, 200),
        "w2": Size(5000, 500),
        "w3": Size(100, 5),
        "w4": Size(500, 50),
        "w5": Size(5000, 500),
        "w6": Size(5000, 500),
    },
    client_timeout=60.0,
)
FULL = Settings(
    rounds=5,
    sizes={
        "w1": Size(5000, 300),
        "w2": Size(20000, 1000),
        "w3": Size(400, 10),
        "w4": Size(2000, 100),
        "w5": Size(20000, 1000),
        "w6": Size(20000, 1000),
    },
    client_timeout=240.0,
)


# ---------------------------------------------------------------- child processes


class ChildError(Exception):
    """A child failed; the message is the reason shown in the table."""

    def __init__(self, message: str, *, hang: bool = False) -> None:
        super().__init__(message)
        self.hang = hang


class Child:
    """One driver process: stdin/stdout pipes, stderr to a log file; stopped by its PID."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: str, log: Path) -> None:
        self.log_path = log
        self._log = log.open("w+b")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env, cwd=cwd
        )
        self._buffer = b""
        self.stop_note = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_line(self, prefixes: Sequence[str], timeout: float, what: str) -> tuple[str, Any]:
        """The first stdout line starting with one of ``prefixes``: (prefix, its JSON)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\n", 1)
                line = raw.decode(errors="replace")
                for prefix in prefixes:
                    if line.startswith(prefix):
                        return prefix, json.loads(line[len(prefix) :])
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildError(
                    f"hang: no {what} within {timeout:.0f} s{self.stderr_hint()}", hang=True
                )
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
                if self.dumped_threads():
                    raise ChildError(
                        f"hang: no {what} before the driver's deadline; it dumped its threads"
                        f" (stderr in the logs directory)",
                        hang=True,
                    )
                status = self.proc.returncode
                raise ChildError(f"exited (status {status}) before its {what}{self.stderr_hint()}")
            self._buffer += chunk

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def _stderr_lines(self) -> list[str]:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [line.strip() for line in text.splitlines() if line.strip()]

    def dumped_threads(self) -> bool:
        """Whether the driver hit its ``--deadline`` (faulthandler prints "Timeout (h:mm:ss)!")."""
        return any(line.startswith("Timeout (") for line in self._stderr_lines())

    def stderr_hint(self) -> str:
        """The most telling stderr line: the last exception-looking line, else the last one."""
        tail = self._stderr_lines()[-40:]
        for line in reversed(tail):
            if ": " in line and not line.startswith(("File ", "Thread ", "Current thread")):
                return f": {line[:240]}"
        return f": {tail[-1][:240]}" if tail else ""

    def close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def stop_all(children: Sequence[Child]) -> None:
    """Close every stdin (the drivers then stop by themselves), then SIGTERM, then SIGKILL.

    Only these processes, by their PIDs; each step waits for all of them at once.
    """
    for child in children:
        if child.proc.stdin is not None:
            with contextlib.suppress(OSError):
                child.proc.stdin.close()
    for signal_name, grace in (("", STOP_GRACE[0]), ("SIGTERM", STOP_GRACE[1]), ("SIGKILL", 10)):
        alive = [c for c in children if c.proc.poll() is None]
        if not alive:
            break
        for child in alive:
            if signal_name == "SIGTERM":
                child.proc.terminate()
            elif signal_name == "SIGKILL":
                child.proc.kill()
        deadline = time.monotonic() + grace
        for child in alive:
            if child.wait_exit(deadline - time.monotonic()) is not None and signal_name:
                child.stop_note = f"needed {signal_name} to stop"
    for child in children:
        if child.proc.returncode == _proto.EXIT_STOP_HANG and not child.stop_note:
            child.stop_note = "stop() did not return within 3 s (the driver exited)"
        child.close()


def rss_mib(pid: int, field: str = "VmRSS:") -> float | None:
    """VmRSS (or another memory ``field`` of /proc/PID/status) of a live process, in MiB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# ---------------------------------------------------------------- one cell, one round


Start = Callable[..., Child]


@contextlib.contextmanager
def driver_dir(tag: str, logs: Path, prefix: str) -> Iterator[tuple[str, list[Child]]]:
    """A private temp dir for one cell's driver processes, and the list they are started
    into: all stopped (by PID) on the way out, the stderr logs of a failed cell kept in
    ``logs`` (as ``<tag>-<log name>``). Drivers run with the temp dir as their working
    directory, so ``python -m`` puts it, not the repository, first on ``sys.path``."""
    started: list[Child] = []
    parent = SHORT_TMP if os.path.isdir(SHORT_TMP) else None
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    failed = True
    try:
        yield tmp, started
        failed = False
    finally:
        stop_all(started)
        if failed:
            logs.mkdir(parents=True, exist_ok=True)
            for child in started:
                with contextlib.suppress(OSError):
                    shutil.copy(child.log_path, logs / f"{tag}-{child.log_path.name}")
        shutil.rmtree(tmp, ignore_errors=True)


@dataclasses.dataclass
class Runner:
    settings: Settings
    env_of: dict[str, envs.Env]
    pythonpath: Path
    logs: Path
    #: library key -> READY info of its first server (version, module file)
    seen: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def child_env(self, tmp: str) -> dict[str, str]:
        env = dict(os.environ)
        for name in (*envs.UNSET, "DAFFI_DEBUG"):
            env.pop(name, None)
        env["PYTHONPATH"] = str(self.pythonpath)  # `benchmarks` only, never the repo's daffi
        env["TMPDIR"] = tmp  # daffi 2 puts its socket in <tmp>/daffi/.sock
        env["PYTHONUNBUFFERED"] = "1"
        return env

    @contextlib.contextmanager
    def processes(self, tag: str) -> Iterator[tuple[str, Start, list[Child]]]:
        """A private temp dir and a way to start drivers in it; all stopped on the way out
        (see :func:`driver_dir`)."""
        with driver_dir(tag, self.logs, "dc") as (tmp, started):

            def start(lib: Library, role: str, *args: str) -> Child:
                if role == "client":  # dumps its threads before the runner gives up on it
                    deadline = max(5.0, self.settings.client_timeout - 5)
                else:
                    deadline = self.settings.client_timeout * 2 + 2 * READY_TIMEOUT
                python = str(self.env_of[lib.env].python)
                cmd = [python, "-m", f"benchmarks.compare.{lib.module}", role, *lib.extra, *args]
                cmd += ["--deadline", f"{deadline:.0f}"]
                log = Path(tmp) / f"{role}-{len(started)}.log"
                started.append(Child(cmd, self.child_env(tmp), tmp, log))
                return started[-1]

            yield tmp, start, started

    def check_import(self, lib: Library, info: dict[str, Any]) -> None:
        """The driver imported the daffi it should: its venv's, or the repository's for ours."""
        module_file = Path(info.get("module_file", "")).resolve()
        if lib.env == "ours":
            if not lib.is_floor and envs.ROOT / "daffi" not in module_file.parents:
                raise ChildError(f"imported daffi from {module_file}, not the repository's")
        elif self.env_of[lib.env].path.resolve() not in module_file.parents:
            raise ChildError(f"imported daffi from {module_file}, not its venv's")
        if lib.version is not None and info.get("version") != lib.version:
            raise ChildError(f"daffi version {info.get('version')!r}, expected {lib.version!r}")
        self.seen.setdefault(lib.key, info)

    def client_args(self, workload: Workload, connect: dict[str, Any]) -> list[str]:
        size = self.settings.sizes[workload.driver]
        return [
            "--workload", workload.driver,
            "--transport", workload.transport,
            "--connect", json.dumps(connect),
            "--calls", str(size.calls),
            "--warmup", str(size.warmup),
            "--concurrency", str(self.settings.concurrency),
            "--threads", str(self.settings.threads),
            "--payload-bytes", str(self.settings.payload_bytes),
        ]  # fmt: skip

    def run_cell(self, workload: Workload, lib: Library, tag: str) -> dict[str, Any]:
        """One round of one (workload, library): fresh processes, one measurement."""
        with self.processes(tag) as (tmp, start, started):
            t0 = time.monotonic()
            role = "controller" if workload.driver == "w4" else "server"
            server = start(lib, role, "--transport", workload.transport, "--dir", tmp)
            _, ready = server.wait_line((_proto.READY,), READY_TIMEOUT, "READY")
            ready_s = time.monotonic() - t0
            self.check_import(lib, ready)
            connect = json.dumps(ready.get("connect", {}))
            nodes = []
            if workload.driver == "w4":
                nodes = [
                    start(lib, "worker", "--name", _proto.node_name(i), "--connect", connect)
                    for i in range(_proto.W4_NODES)
                ]
                for node in nodes:
                    node.wait_line((_proto.READY,), READY_TIMEOUT, "READY (W4 node)")
            client = start(lib, "client", *self.client_args(workload, json.loads(connect)))
            prefix, result = client.wait_line(
                (_proto.RESULT, _proto.NA), self.settings.client_timeout, "result"
            )
            server_rss = rss_mib(server.pid)
            server_anon = rss_mib(server.pid, "RssAnon:")
            node_rss = [r for r in map(rss_mib, (n.pid for n in nodes)) if r is not None]
            status = client.wait_exit(EXIT_GRACE)
        if prefix == _proto.NA:
            return {"na": str(result.get("reason", "not supported"))}
        role = {id(server): "server", id(client): "client"}
        notes = [f"{role.get(id(c), 'node')} {c.stop_note}" for c in started if c.stop_note]
        if status is None:
            notes.append(f"client still running {EXIT_GRACE:.0f} s after its result")
        elif status not in (0, _proto.EXIT_STOP_HANG):
            notes.append(f"client exited with status {status} after its result")
        first = result.get("first_call_mono")
        scale = self.settings.payload_bytes / (1 << 20) if workload.driver == "w3" else 1.0
        return {
            # W3 counts the payload MiB echoed per second (once per call)
            "value": result["calls_per_s"] * scale,
            "calls_per_s": result["calls_per_s"],
            "calls": result["calls"],
            "elapsed_s": result["elapsed_ns"] / 1e9,
            "p50_us": result.get("p50_us"),
            "p99_us": result.get("p99_us"),
            "max_us": result.get("max_us"),
            "server_ready_ms": ready_s * 1000,
            # from starting the server process to the client's first successful call
            "startup_ms": (first - t0) * 1000 if first is not None else None,
            "server_rss_mib": server_rss,
            "server_anon_mib": server_anon,
            "node_rss_mib": max(node_rss, default=None),
            "note": "; ".join(notes),
        }


def run_rounds(
    runner: Runner,
    workloads: Sequence[Workload],
    libs: Sequence[Library],
    run_id: str,
    timings: dict[str, float],
) -> list[dict[str, Any]]:
    """Every round: every workload, every library in turn. One record per round and cell."""
    records: list[dict[str, Any]] = []
    skip: set[tuple[str, str]] = set()  # hung or n/a: not run again
    for rnd in range(1, runner.settings.rounds + 1):
        for workload in workloads:
            cell_libs = [lib for lib in libs if not lib.is_floor or lib in workload.floors]
            shift = (rnd - 1) % max(1, len(cell_libs))
            for lib in cell_libs[shift:] + cell_libs[:shift]:
                if (workload.key, lib.key) in skip:
                    continue
                t = time.monotonic()
                try:
                    measured = runner.run_cell(workload, lib, f"{workload.key}-{lib.key}-r{rnd}")
                except ChildError as exc:
                    measured = {"error": str(exc), "hang": exc.hang}
                except Exception as exc:
                    measured = {"error": f"{type(exc).__name__}: {exc}"}
                wall = time.monotonic() - t
                for part in (workload.key, f"library {lib.key}"):
                    timings[part] = timings.get(part, 0.0) + wall
                records.append(
                    {
                        "kind": "round",
                        "run_id": run_id,
                        "round": rnd,
                        "workload": workload.key,
                        "transport": workload.transport,
                        "library": lib.key,
                        "label": lib.label,
                        "version": runner.seen.get(lib.key, {}).get("version"),
                        "unit": workload.unit,
                        "ok": "value" in measured,
                        "wall_s": round(wall, 3),
                        **measured,
                    }
                )
                head = f"[round {rnd}] {workload.key:8} {lib.key:15}"
                if "value" in measured:
                    rate = f"{measured['value']:>10,.1f} {workload.unit}"
                    note = f"; {measured['note']}" if measured["note"] else ""
                    _progress(f"{head} {rate} ({wall:.1f} s{note})")
                elif "na" in measured:
                    skip.add((workload.key, lib.key))
                    _progress(f"{head} n/a: {measured['na']}")
                else:
                    if measured.get("hang"):
                        skip.add((workload.key, lib.key))
                    _progress(f"{head} ERROR ({wall:.1f} s): {measured['error']}")
    return records


# ---------------------------------------------------------------- the report


@dataclasses.dataclass
class Cell:
    """The rounds of one (table row, library)."""

    values: list[float] = dataclasses.field(default_factory=list)
    #: (round, reason)
    errors: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    na: str | None = None

    def error_groups(self) -> list[str]:
        """The errors, one line per distinct reason: "rounds 1, 3: reason"."""
        rounds: dict[str, list[int]] = {}
        for rnd, reason in self.errors:
            # the same failure in another round differs only by its private temp dir
            rounds.setdefault(re.sub(r"/tmp/dc\w+", "/tmp/dc...", reason), []).append(rnd)
        return [
            f"round{'s' if len(rs) > 1 else ''} {', '.join(map(str, rs))}: {reason}"
            for reason, rs in rounds.items()
        ]

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


@dataclasses.dataclass(frozen=True)
class Row:
    key: str
    title: str
    unit: str
    #: ms and MiB rows
    lower_is_better: bool = False
    #: what ours/floor divides by, and the floors shown
    floors: tuple[Library, ...] = ()


def collect(
    records: Sequence[dict[str, Any]], workloads: Sequence[Workload]
) -> tuple[list[Row], dict[tuple[str, str], Cell]]:
    """The table rows and their cells (row key, library key) from the round records."""
    rows = [Row(w.key, w.title, w.unit, floors=w.floors) for w in workloads]
    measured = {rec["workload"] for rec in records}
    rows += [Row(d.key, d.title, d.unit, True) for d in DERIVED if d.workload in measured]
    cells: dict[tuple[str, str], Cell] = {}
    for rec in records:
        targets = [(rec["workload"], "value")]
        if not rec["library"].startswith("floor"):
            targets += [(d.key, d.field) for d in DERIVED if d.workload == rec["workload"]]
        for row_key, field in targets:
            cell = cells.setdefault((row_key, rec["library"]), Cell())
            if "error" in rec:
                derived = row_key != rec["workload"]
                reason = f"no figure: {rec['workload']} failed" if derived else rec["error"]
                cell.errors.append((rec["round"], reason))
            elif "na" in rec:
                cell.na = rec["na"]
            elif rec.get(field) is not None:
                cell.values.append(rec[field])
    return rows, cells


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    return f"{text} {unit}" if unit in ("ms", "MiB") else text


def summary_table(rows: Sequence[Row], cells: dict[tuple[str, str], Cell]) -> str:
    """Medians per library, then ratios ours/daffi3, ours/daffi2, ours/floor; footnotes."""
    footnotes: list[str] = []

    def show(row: Row, lib: Library) -> str:
        cell = cells.get((row.key, lib.key))
        if cell is None:
            return "-"
        if cell.na:
            footnotes.append(f"{row.key}, {lib.label}: n/a: {cell.na}")
            return f"n/a [{len(footnotes)}]"
        if cell.errors:
            footnotes.append(f"{row.key}, {lib.label}: " + "; ".join(cell.error_groups()))
            tag = f"[{len(footnotes)}]"
            if not cell.values:
                return f"error {tag}"
            total = len(cell.values) + len(cell.errors)
            return f"{_fmt(cell.median, row.unit)} ({len(cell.values)}/{total} ok) {tag}"
        return _fmt(cell.median, row.unit)

    def ratio(ours: Library, row: Row, other: Library | None) -> str:
        a = cells.get((row.key, ours.key))
        b = cells.get((row.key, other.key)) if other else None
        if a is None or b is None or a.median is None or not b.median:
            return "-"
        return f"{a.median / b.median:.2f}"

    headers = (
        "workload", "unit", "ours asyncio", "ours trio", "daffi 3.0.1", "daffi 2.2.1", "floor",
        "ours/daffi3 (asyncio, trio)", "ours/daffi2 (asyncio, trio)", "ours/floor (asyncio, trio)",
    )  # fmt: skip
    lines = []
    for row in rows:
        values = [show(row, lib) for lib in (OURS_ASYNCIO, OURS_TRIO, DAFFI3, DAFFI2)]
        floor = " / ".join(
            f"{show(row, f)} {f.key.removeprefix('floor-')}"
            for f in row.floors
            if (row.key, f.key) in cells
        )
        ratios = []
        for other in (DAFFI3, DAFFI2, row.floors[0] if row.floors else None):
            pair = [ratio(ours, row, other) for ours in OURS]
            ratios.append("-" if pair == ["-", "-"] else ", ".join(pair))
        unit = row.unit + (" (lower is better)" if row.lower_is_better else "")
        lines.append((row.title, unit, *values, floor or "-", *ratios))
    text = _markdown(headers, lines)
    if footnotes:
        text += "\n\n" + "\n".join(f"[{i}] {note}" for i, note in enumerate(footnotes, 1))
    return text


def details_table(records: Sequence[dict[str, Any]]) -> str:
    """Per (workload, library): median, spread, latencies, start-up, RSS, rounds that worked."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["workload"], rec["library"]), []).append(rec)
    rows = []
    for (workload, library), recs in groups.items():
        ok = [r for r in recs if r.get("ok")]

        def med(field: str, ok: list[dict[str, Any]] = ok) -> str:
            xs = [r[field] for r in ok if r.get(field) is not None]
            return _fmt(statistics.median(xs)) if xs else "-"

        values = [r["value"] for r in ok]
        notes = sorted({r["note"] for r in ok if r.get("note")})
        notes += sorted({"n/a" if "na" in r else "error" for r in recs if not r.get("ok")})
        rows.append(
            (
                workload,
                library,
                med("value"),
                f"{_fmt(min(values))}-{_fmt(max(values))}" if values else "-",
                med("p50_us"),
                med("p99_us"),
                med("max_us"),
                med("startup_ms"),
                med("server_rss_mib"),
                f"{len(ok)}/{len(recs)}",
                "; ".join(notes),
            )
        )
    headers = (
        "workload", "library", "median", "min-max", "p50 us", "p99 us", "max us",
        "start to 1st call ms", "server RSS MiB", "rounds ok", "notes",
    )  # fmt: skip
    return _markdown(headers, rows)


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def _machine() -> str:
    load = os.getloadavg()
    return (
        f"nproc {os.cpu_count()}, load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}; "
        f"Python {platform.python_version()}; {platform.platform()}"
    )


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _select(names: str | None, items: Sequence[Any], what: str) -> list[Any]:
    if not names:
        return list(items)
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    known = {item.key for item in items}
    if wanted - known:
        raise SystemExit(f"unknown {what}: {sorted(wanted - known)}; known: {sorted(known)}")
    return [item for item in items if item.key in wanted]


def _listed(packages: Sequence[str]) -> list[str]:
    return [p for p in packages if not p.startswith(("pip=", "setuptools=", "#"))]


def report(
    run_id: str,
    settings: Settings,
    quick: bool,
    machine_start: str,
    rows: Sequence[Row],
    cells: dict[tuple[str, str], Cell],
    records: Sequence[dict[str, Any]],
    runner: Runner,
    timings: dict[str, float],
) -> str:
    sizes = ", ".join(
        f"{k.upper()} {v.calls:,} calls (+{v.warmup} warm-up)" for k, v in settings.sizes.items()
    )
    versions = "\n".join(
        f"- {key}: {info.get('version')} ({info.get('module_file')})"
        for key, info in runner.seen.items()
    )
    venvs = "\n".join(
        f"- {env.name}: {env.path} ({', '.join(_listed(env.packages))})"
        for env in runner.env_of.values()
    )
    spent = "\n".join(f"- {name}: {secs:.1f} s" for name, secs in timings.items())
    return f"""# daffi comparison, run {run_id}

- machine at start: {machine_start}
- machine at end: {_machine()}
- settings: {"--quick, " if quick else ""}{settings.rounds} rounds; {sizes};
  W2, W5, W6 {settings.concurrency} in flight (W6 in daffi 3: {settings.threads} threads);
  W3 payload {settings.payload_bytes:,} bytes
- medians over the rounds, fresh processes for every round and cell; only the ratios within
  this run mean anything

{summary_table(rows, cells)}

Ratios are ours / the other, for our asyncio and trio backends. Above 1 means ours is faster,
except in the rows marked "lower is better" (ms, MiB), where above 1 means ours is slower or
bigger. ours/floor divides by the first floor shown: the sync (BlockingPortal) floor for W1,
W3 and W6, the async floor for W2 and W5. The floor runs on asyncio. W6's ours/daffi3 divides
by daffi 3 driven by {settings.threads} threads (its sync client has no BG). "k/n ok" means
only k of n rounds worked (the footnote says what happened in the others). See
benchmarks/compare/README.md for what each workload does in each library.

## Details

{details_table(records)}

## Versions

{versions}

Virtualenvs:

{venvs}

## Time taken

{spent}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    parser.add_argument("--rounds", type=int, help="rounds (default 3 with --quick, else 5)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--libs", help="subset of: " + ",".join(x.key for x in LIBRARIES))
    parser.add_argument("--workloads", help="subset of: " + ",".join(w.key for w in WORKLOADS))
    parser.add_argument("--rebuild-envs", action="store_true", help="rebuild the virtualenvs")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings = dataclasses.replace(settings, rounds=args.rounds)
    libs = _select(args.libs, LIBRARIES, "libraries")
    workloads = _select(args.workloads, WORKLOADS, "workloads")

    started = time.monotonic()
    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    machine_start = _machine()
    _progress(f"daffi comparison {run_id}: {machine_start}")
    timings: dict[str, float] = {}

    env_of: dict[str, envs.Env] = {}
    for name in sorted({lib.env for lib in libs}):
        env = envs.ensure(envs.SPECS[name], rebuild=args.rebuild_envs)
        env_of[name] = env
        state = "reused" if env.reused else "built"
        timings[f"venv {name} ({state})"] = env.seconds
        _progress(f"venv {name}: {state} in {env.seconds:.1f} s ({env.path})")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(settings, env_of, envs.pythonpath_dir(), out / f"compare-logs-{run_id}")
    records = run_rounds(runner, workloads, libs, run_id, timings)
    rows, cells = collect(records, workloads)
    timings["total"] = time.monotonic() - started

    text = report(
        run_id, settings, args.quick, machine_start, rows, cells, records, runner, timings
    )
    (out / "results.md").write_text(text, encoding="utf-8")
    with (out / "results.jsonl").open("w", encoding="utf-8") as jsonl:
        for rec in records:
            jsonl.write(json.dumps(rec) + "\n")
        for (row_key, lib_key), cell in cells.items():
            line = {"kind": "median", "run_id": run_id, "metric": row_key, "library": lib_key}
            line.update(
                median=cell.median, values=cell.values, errors=cell.error_groups(), na=cell.na
            )
            jsonl.write(json.dumps(line) + "\n")
    print(text)
    print(f"wrote {out / 'results.jsonl'} and {out / 'results.md'}")
    if runner.logs.exists():
        print(f"stderr of the failed cells: {runner.logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
