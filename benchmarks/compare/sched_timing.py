"""Scheduling timing seen from the requester: daffi 2.2.1 beside ours (asyncio, trio) and a floor.

    python -m benchmarks.compare.sched_timing [--quick] [--rounds N] [--libs daffi2,...]
        [--kinds sync,async] [--json PATH] [--rebuild-envs]

Every figure is ``time.time()`` on this one host. The executor's callback records the time at
its first line; the requester records the request time ``R`` right before its ``PERIOD`` call.

* **at_time lateness**: one ``PERIOD(at_time=[...])`` with N timestamps (the first 1 s after
  ``R``, then 20-50 ms apart, the same gaps for every library in a round); each run's start -
  its timestamp. p50, p99, max.
* **first interval run**: ``PERIOD(interval=I)`` requested at ``R``, cancelled once its first
  run is in, repeated; first run's start - (``R`` + I). p50, p99, max.
* **drift**: one ``PERIOD(interval=50 ms)`` kept for N runs; lateness of run k = its start -
  (``R`` + k * I); runs 1, 49 and N, and the least-squares slope in ms per 100 runs.

For each library and round: a controller, an executor and a requester process on a Unix
socket in a fresh temp dir (``sched_lib_daffi2.py``, ``sched_lib_daffi4.py``); the requester
measures with a ``def`` callback, then an ``async def`` one. Ours runs twice, every process on
``backend="asyncio"``, then on ``"trio"``. The floor (``sched_lib_floor.py``, no daffi) runs
the same requester code against timers in its own process: an asyncio loop, and threads
calling ``time.sleep``. The libraries take turns in every round (the order rotates), so a slow
spell on the machine hits them alike. at_time and first-run figures pool the rounds; the drift
figures are the median of the rounds'.

Prints a markdown report and, last, one JSON line with the raw figures (lateness of every run
in ms). Progress goes to stderr. Figures are never asserted; nothing in the test suite runs
this. See benchmarks/compare/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import CpuWatch
from benchmarks.compare import _proto, envs
from benchmarks.compare._sched_proto import FLOOR_KIND, KINDS, WARM_UP_RUNS, Plan
from benchmarks.compare._sched_report import (
    TARGET_AT_P99_MS,
    TARGET_DRIFT_MS,
    TARGET_FIRST_P99_MS,
    Row,
    collect,
    details_table,
    fmt_ms,
    percentile,
    summary_table,
)
from benchmarks.compare.run import Child, ChildError, Library, _machine, driver_dir

DEFAULT_LOGS = envs.ROOT / "benchmarks" / "results"
READY_TIMEOUT = 60.0
#: how long the requester gets to exit after printing its result (its stop() included)
EXIT_GRACE = 10.0
SHORT_TMP = "/tmp"
DAFFI2 = Library("daffi2", "daffi 2.2.1", "daffi2", "sched_lib_daffi2", version="2.2.1")
OURS_ASYNCIO = Library(
    "daffi4-asyncio", "ours (asyncio)", "ours", "sched_lib_daffi4", ("--backend", "asyncio")
)
OURS_TRIO = Library("daffi4-trio", "ours (trio)", "ours", "sched_lib_daffi4", ("--backend", "trio"))
FLOOR_ASYNCIO = Library(
    "floor-asyncio", "floor: asyncio loop", "ours", "sched_lib_floor", ("--mode", "asyncio")
)
FLOOR_THREAD = Library(
    "floor-thread", "floor: thread + time.sleep", "ours", "sched_lib_floor", ("--mode", "thread")
)
LIBRARIES = (DAFFI2, OURS_ASYNCIO, OURS_TRIO, FLOOR_ASYNCIO, FLOOR_THREAD)


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int
    at_count: int
    first_repeats: int
    drift_runs: int

    def plan(self, kinds: tuple[str, ...], seed: int) -> Plan:
        return Plan(
            kinds=kinds,
            seed=seed,
            at_count=self.at_count,
            at_lead=1.0,
            at_gap=(0.02, 0.05),
            first_interval=0.1,
            first_repeats=self.first_repeats,
            first_margin=0.05,
            drift_interval=0.05,
            drift_runs=self.drift_runs,
        )


#: ~1 min: one round (no interleaving), small counts
QUICK = Settings(rounds=1, at_count=40, first_repeats=6, drift_runs=60)
#: ~7 min: two rounds, the issue's counts
FULL = Settings(rounds=2, at_count=200, first_repeats=20, drift_runs=200)


# ---------------------------------------------------------------- running the processes


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _child_env(pythonpath: Path, tmp: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in (*envs.UNSET, "DAFFI_DEBUG"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(pythonpath)  # `benchmarks` only, never the repo's daffi
    env["TMPDIR"] = tmp  # daffi 2 puts its socket in <tmp>/daffi/.sock
    env["PYTHONUNBUFFERED"] = "1"
    # daffi 2's executor computes at_time delays with datetime.utcnow().timestamp(), which
    # is time.time() only when local time is UTC
    env["TZ"] = "UTC"
    return env


@dataclasses.dataclass
class Runner:
    env_of: dict[str, envs.Env]
    pythonpath: Path
    logs: Path
    #: library key -> the READY/RESULT info of its first run (version, module file)
    seen: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @contextlib.contextmanager
    def processes(self, tag: str, timeout: float) -> Iterator[tuple[str, Callable[..., Child]]]:
        """A private temp dir and a way to start drivers in it; all stopped (by PID) after
        (see :func:`benchmarks.compare.run.driver_dir`)."""
        with driver_dir(tag, self.logs, "ds") as (tmp, started):

            def start(lib: Library, role: str, *args: str) -> Child:
                deadline = timeout - 5 if role == "requester" else timeout + 2 * READY_TIMEOUT
                python = str(self.env_of[lib.env].python)
                cmd = [python, "-m", f"benchmarks.compare.{lib.module}", role, *lib.extra]
                cmd += ["--dir", tmp, *args, "--deadline", f"{deadline:.0f}"]
                log = Path(tmp) / f"{role}-{len(started)}.log"
                started.append(Child(cmd, _child_env(self.pythonpath, tmp), tmp, log))
                return started[-1]

            yield tmp, start

    def check_import(self, lib: Library, info: dict[str, Any]) -> None:
        """The driver imported the daffi it should: its venv's, or the repository's for ours."""
        if lib.is_floor:
            return
        module_file = Path(info.get("module_file", "")).resolve()
        if lib.env == "ours":
            if envs.ROOT / "daffi" not in module_file.parents:
                raise ChildError(f"imported daffi from {module_file}, not the repository's")
        elif self.env_of[lib.env].path.resolve() not in module_file.parents:
            raise ChildError(f"imported daffi from {module_file}, not its venv's")
        if lib.version is not None and info.get("version") != lib.version:
            raise ChildError(f"daffi version {info.get('version')!r}, expected {lib.version!r}")
        self.seen.setdefault(lib.key, info)

    def run_cell(self, lib: Library, plan: Plan, tag: str) -> dict[str, Any]:
        """One round of one library: fresh processes, every measurement of the plan."""
        timeout = plan.seconds_per_kind() * len(plan.kinds) * 2 + 60
        with self.processes(tag, timeout) as (_tmp, start):
            if not lib.is_floor:
                controller = start(lib, "controller")
                _, ready = controller.wait_line((_proto.READY,), READY_TIMEOUT, "READY")
                self.check_import(lib, ready)
                executor = start(lib, "executor")
                executor.wait_line((_proto.READY,), READY_TIMEOUT, "READY (executor)")
            watch = CpuWatch()
            requester = start(lib, "requester", "--plan", plan.to_json())
            _, result = requester.wait_line((_proto.RESULT,), timeout, "result")
            note = watch.note()
            status = requester.wait_exit(EXIT_GRACE)
        info = result.pop("lib")
        if lib.is_floor:
            self.seen.setdefault(lib.key, info)
        else:
            self.check_import(lib, info)
        notes = [note]
        if status is None:
            notes.append(f"requester still running {EXIT_GRACE:.0f} s after its result")
        elif status not in (0, _proto.EXIT_STOP_HANG):
            notes.append(f"requester exited with status {status} after its result")
        return {"result": result, "note": "; ".join(notes)}


def run_rounds(
    runner: Runner, libs: Sequence[Library], settings: Settings, kinds: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Every round, every library in turn (the order rotates). One record per round and lib."""
    records: list[dict[str, Any]] = []
    hung: set[str] = set()
    for rnd in range(1, settings.rounds + 1):
        shift = (rnd - 1) % len(libs)
        for lib in [*libs[shift:], *libs[:shift]]:
            if lib.key in hung:
                continue
            plan = settings.plan((FLOOR_KIND,) if lib.is_floor else kinds, seed=rnd)
            started = time.monotonic()
            try:
                measured = runner.run_cell(lib, plan, f"{lib.key}-r{rnd}")
            except ChildError as exc:
                measured = {"error": str(exc)}
                if exc.hang:
                    hung.add(lib.key)
            except Exception as exc:
                measured = {"error": f"{type(exc).__name__}: {exc}"}
            wall = time.monotonic() - started
            records.append({"round": rnd, "library": lib.key, "wall_s": round(wall, 1), **measured})
            head = f"[round {rnd}] {lib.key:15}"
            if "error" in measured:
                _progress(f"{head} ERROR ({wall:.1f} s): {measured['error']}")
            else:
                _progress(f"{head} {_headline(measured['result'])} ({wall:.1f} s)")
    return records


def _headline(result: dict[str, Any]) -> str:
    parts = []
    for kind, figures in result.items():
        at = sorted(figures["at_time"]["lateness_ms"])
        first = sorted(figures["first"]["offset_ms"])
        drift = figures["drift"]["lateness_ms"]
        parts.append(
            f"{kind}: at_time p99 {fmt_ms(percentile(at, 99))}, 1st interval p50"
            f" {fmt_ms(percentile(first, 50))}, drift last"
            f" {fmt_ms(drift[-1] if drift else None)} ms"
        )
    return "; ".join(parts)


# ---------------------------------------------------------------- figures


def report(
    run_id: str,
    machine_start: str,
    settings: Settings,
    quick: bool,
    rows: Sequence[Row],
    runner: Runner,
    seconds: float,
) -> str:
    plan = settings.plan(KINDS, seed=1)
    rounds = f"{settings.rounds} round{'s' if settings.rounds > 1 else ''}"
    last_run = max((row.last_run for row in rows), default=settings.drift_runs)
    versions = "\n".join(
        f"- {key}: {info.get('version')} ({info.get('module_file')})"
        for key, info in runner.seen.items()
    )
    return f"""# Scheduling timing from the requester side, run {run_id}

- machine at start: {machine_start}
- machine at end: {_machine()}
- settings: {"--quick, " if quick else ""}{rounds}, the libraries in turn (the order rotates);
  at_time: {plan.at_count} timestamps, the first {plan.at_lead:g} s after the request, then
  {plan.at_gap[0] * 1000:.0f}-{plan.at_gap[1] * 1000:.0f} ms apart; 1st interval: \
{plan.first_repeats} x PERIOD(interval={plan.first_interval:g}) per round;
  drift: PERIOD(interval={plan.drift_interval:g}) for {plan.drift_runs} runs
- all figures in ms, time.time() on this host: run start (first line of the callback, in the
  executor) - its due time as the requester sees it (at_time: its timestamp; 1st interval:
  request + interval; drift run k: request + k x interval). at_time and 1st interval pool the
  rounds; drift figures are the median of the rounds'
- total {seconds:.0f} s

{summary_table(rows, last_run)}

Targets (the issue's): at_time p99 <= {TARGET_AT_P99_MS:g} ms; 1st interval run p99 within \
{TARGET_FIRST_P99_MS:g} ms of request + interval;
drift: the least-squares line rises by at most {TARGET_DRIFT_MS:g} ms over the run. The floors \
use no daffi: one process sleeping to
the same targets (an asyncio loop; threads calling time.sleep), i.e. what this host's timers
allow. Ours ran with every process on the backend shown; daffi 2 runs its executor on uvloop.
A "(busy)" in the machine column means other processes used a quarter of the CPUs or more.

## Details

{details_table(rows)}

"PERIOD call" is how long the requester's PERIOD call took to return (daffi 2: until the
controller accepted it; ours: until the executor did). "cold runs": the lateness of the
{WARM_UP_RUNS} runs of the short, unmeasured at_time schedule each callback kind starts
with, i.e. the first runs in a fresh executor ("; " between rounds). "runs" says when runs
were missing, or when the executor skipped grid points in the drift run (each run is then put
on its own grid point; a skipped point is a run the user did not get).

## Versions

{versions}
"""


def _rounded(value: Any) -> Any:
    """The raw figures with floats cut to microseconds (ms with 3 decimals)."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _select(names: str | None, libs: Sequence[Library]) -> list[Library]:
    if not names:
        return list(libs)
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    known = {lib.key for lib in libs}
    if wanted - known:
        raise SystemExit(f"unknown libraries: {sorted(wanted - known)}; known: {sorted(known)}")
    return [lib for lib in libs if lib.key in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, small counts (~1 min)")
    parser.add_argument("--rounds", type=int, help="rounds (default 1 with --quick, else 2)")
    parser.add_argument("--libs", help="subset of: " + ",".join(x.key for x in LIBRARIES))
    parser.add_argument("--kinds", default=",".join(KINDS), help="callbacks: sync,async")
    parser.add_argument("--json", type=Path, help="also write the JSON line to this file")
    parser.add_argument("--rebuild-envs", action="store_true", help="rebuild the virtualenvs")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings = dataclasses.replace(settings, rounds=args.rounds)
    libs = _select(args.libs, LIBRARIES)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if not kinds or set(kinds) - set(KINDS):
        raise SystemExit(f"--kinds: one or both of {', '.join(KINDS)}")

    started = time.monotonic()
    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    machine_start = _machine()
    _progress(f"scheduling timing {run_id}: {machine_start}")
    env_of: dict[str, envs.Env] = {}
    for name in sorted({lib.env for lib in libs}):
        env = envs.ensure(envs.SPECS[name], rebuild=args.rebuild_envs)
        env_of[name] = env
        _progress(f"venv {name}: {'reused' if env.reused else 'built'} in {env.seconds:.1f} s")
    logs = DEFAULT_LOGS / f"sched-timing-logs-{run_id}"
    runner = Runner(env_of, envs.pythonpath_dir(), logs)
    records = run_rounds(runner, libs, settings, kinds)
    rows = collect(records, libs, kinds)
    seconds = time.monotonic() - started

    print(report(run_id, machine_start, settings, args.quick, rows, runner, seconds))
    if logs.exists():
        print(f"stderr of the failed cells: {logs}\n")
    raw = {
        "kind": "sched_timing",
        "run_id": run_id,
        "machine_start": machine_start,
        "machine_end": _machine(),
        "settings": dataclasses.asdict(settings),
        "plan": dataclasses.asdict(settings.plan(kinds, seed=1)),
        "versions": runner.seen,
        "summary": [row.stats() for row in rows],
        "rounds": records,
    }
    line = json.dumps(_rounded(raw))
    print(line)
    if args.json:
        args.json.write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
