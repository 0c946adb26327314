"""Scheduling: how late PERIOD fires are, and what 10,000 schedules cost one node.

For each backend of the executor (asyncio, then trio) a controller that offers nothing
(``daffi_workers.py controller``) and an executor node (``sched_probe.py executor``,
``Global(backend=...)``) run on a Unix socket in a fresh temp dir; a driver process
(``sched_probe.py drive``, asyncio) makes each schedule, waits, and reports. The executor does
nothing else meanwhile. One after another:

* S1: ``PERIOD(interval=0.1)`` for 200 fires (20 s; 100 fires with ``--quick``), with an
  ``async def`` callback, then with a ``def`` one (it runs in a worker thread). The callback
  records ``time.time()``; lateness of fire k = ``t_k - (start + k * 0.1)``, where ``start``
  is the executor's own grid start (``get_scheduled_tasks``' ``next_run`` right after the
  schedule was accepted, minus one interval). Drift = lateness of the last fire. While the
  async run goes, the floor (``sched_probe.py floor``, no daffi, same backend) sleeps to the
  same kind of grid as daffi's scheduler and records the time on its loop and after a hop to
  a worker thread: what the event loop and the thread hop alone cost.
  Then the same with a durable schedule (``durable=True``: each fire is committed to the
  executor's SQLite store before its run), async callback.
* S2: one ``PERIOD(at_time=[...])`` with 100 timestamps 50 ms apart (5 s), async callback,
  then sync callback; lateness = fire time - its timestamp.
* S4: ``PERIOD(cron="* * * * * *")`` (every second) for 200 fires (200 s; 20 with
  ``--quick``), async callback; lateness of a fire = its time - its whole second.

Then, on a fresh executor per backend:

* S3: 10,000 ``PERIOD(interval=1)`` of an ``async def`` callback that counts; after they all
  exist, a 10 s window: fires/s (ideal 10,000) and the executor's CPU time (user + system,
  ``getrusage`` in the executor) as % of one core. Floor (``sched_probe.py floor-many``, no
  daffi, run alone afterwards): 10,000 tasks on one loop of the same backend, each sleeping
  to its own 1 s grid: what the event loop alone spends on that many timers. Then 10,000
  ``PERIOD(cron="* * * * * *")`` (all due at the same instant, every second), and 10,000
  durable ``PERIOD(interval=1)``, each on a fresh executor.

One run each (no rounds: a run is already hundreds of samples). The note says how much CPU
other processes (not this benchmark's) used during the measurement, and the 1-minute load
average; "(busy)" means others used a quarter of the CPUs or more, so lateness includes
waiting for a CPU.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from benchmarks._common import (
    FLOOR,
    SCHEDULE,
    CpuWatch,
    Measurement,
    Settings,
    child_process,
    is_quick,
    lateness_stats,
    python_module,
    read_ready_line,
    run_child_json,
)

BACKENDS = ("asyncio", "trio")
INTERVAL = 0.1
AT_TIMES = 100
AT_SPREAD = 5.0
MANY = 10_000
MANY_INTERVAL = 1.0
MANY_WINDOW = 10.0
CRON = "* * * * * *"
EXECUTOR = "sched-executor"
_START_TIMEOUT = 30.0
_CALLBACKS = (("async", "async cb"), ("sync", "sync cb (worker thread)"))


def run(settings: Settings) -> list[Measurement]:
    """Measure S1 and S2 on each backend, then S3 on each backend.

    A measurement that fails (its traceback is on stderr) gives a ``FAILED`` row; the
    others still run.
    """
    fires = 100 if is_quick(settings) else 200
    cron_fires = 20 if is_quick(settings) else 200
    s1 = f"S1 PERIOD(interval={INTERVAL}), {fires} fires"
    s2 = f"S2 PERIOD(at_time=[{AT_TIMES} stamps over {AT_SPREAD:g} s])"
    s3 = f"S3 {MANY:,} x PERIOD(interval={MANY_INTERVAL:g}), {MANY_WINDOW:g} s window"
    s4 = f"S4 PERIOD(cron={CRON!r}), {cron_fires} fires"
    measurements: list[Measurement] = []
    for backend in BACKENDS:
        with _executor(backend) as path:
            measurements += _guard(s1, backend, _interval, path, backend, fires)
            measurements += _guard(s2, backend, _at_time, path, backend)
            measurements += _guard(s4, backend, _cron, path, backend, cron_fires)
    for backend in BACKENDS:
        for trigger, label in (
            ("interval", "async cb"),
            ("cron", f"async cb, cron {CRON!r}"),
            ("durable", "async cb, durable"),
        ):
            with _executor(backend) as path:
                measurements += _guard(s3, backend, _many, path, backend, trigger, label)
        measurements += _guard(s3, backend, _many_floor, backend)
    return measurements


def _guard(
    workload: str, backend: str, measure: Callable[..., list[Measurement]], *args: Any
) -> list[Measurement]:
    try:
        return measure(*args)
    except (RuntimeError, TimeoutError, ValueError, KeyError) as exc:
        print(f"  {workload} {backend} FAILED: {exc!r}", file=sys.stderr, flush=True)
        failed = Measurement(
            workload=workload,
            transport="unix",
            library="daffi",
            mode=backend,
            calls_per_s=0.0,
            p50_us=0.0,
            p99_us=0.0,
            rounds=0,
            calls_per_round=0,
            kind=SCHEDULE,
            note=f"FAILED: {type(exc).__name__} (traceback on stderr)",
        )
        return [failed]


@contextlib.contextmanager
def _executor(backend: str) -> Iterator[str]:
    """A controller and an idle executor node on ``backend`` (its state directory, for
    durable schedules, is in the temp dir too); yields the socket directory."""
    with (
        tempfile.TemporaryDirectory(prefix="daffi-bench-") as tmp,
        child_process(python_module("daffi_workers", "controller", "--path", tmp)) as controller,
    ):
        read_ready_line(controller, _START_TIMEOUT)
        cmd = python_module(
            "sched_probe",
            "executor",
            "--path",
            tmp,
            "--name",
            EXECUTOR,
            "--backend",
            backend,
            "--state-dir",
            f"{tmp}/state",
        )
        with child_process(cmd) as executor:
            read_ready_line(executor, _START_TIMEOUT)
            yield tmp


def _drive(path: str, case: str, timeout: float, *extra: str) -> dict[str, Any]:
    cmd = python_module(
        "sched_probe",
        "drive",
        "--path",
        path,
        "--executor",
        EXECUTOR,
        "--case",
        case,
        "--deadline",
        str(timeout - 5),
        *extra,
    )
    return run_child_json(cmd, timeout)


def _interval(path: str, backend: str, fires: int) -> list[Measurement]:
    workload = f"S1 PERIOD(interval={INTERVAL}), {fires} fires"
    timeout = fires * INTERVAL + 60
    measurements = []
    for callback, label in (*_CALLBACKS, ("durable", "async cb, durable")):
        args: tuple[str, ...] = ("--interval", str(INTERVAL), "--fires", str(fires))
        args += (
            ("--callback", "async", "--durable")
            if callback == "durable"
            else ("--callback", callback)
        )
        watch = CpuWatch()
        if callback != "async":
            result = _drive(path, "interval", timeout, *args)
        else:
            floor_cmd = python_module(
                "sched_probe",
                "floor",
                "--backend",
                backend,
                "--interval",
                str(INTERVAL),
                "--fires",
                str(fires),
            )
            with child_process(floor_cmd) as floor:  # sleeps 0.1 s at a time: barely a load
                result = _drive(path, "interval", timeout, *args)
                floor_result = json.loads(floor.communicate(timeout=timeout)[0])
            for key, what in (("loop", "anyio.sleep loop"), ("thread", "loop + thread hop")):
                late = floor_result[key]
                measurements.append(
                    _accuracy(workload, "-", FLOOR, f"{backend}, {what}", late, late[-1], "", watch)
                )
        note = [f"skipped {result['skipped']}"] if result["skipped"] else []
        if result["start_from"] != "listing next_run":
            note.append(f"start = {result['start_from']}")
        measurements.append(
            _accuracy(
                workload,
                "unix",
                "daffi",
                f"{backend}, {label}",
                result["lateness"],
                result["drift"],
                "; ".join(note),
                watch,
            )
        )
    return measurements


def _cron(path: str, backend: str, fires: int) -> list[Measurement]:
    workload = f"S4 PERIOD(cron={CRON!r}), {fires} fires"
    watch = CpuWatch()
    args = ("--callback", "async", "--trigger", "cron", "--fires", str(fires))
    result = _drive(path, "interval", fires + 60, *args)
    note = f"skipped {result['skipped']}" if result["skipped"] else ""
    return [
        _accuracy(
            workload,
            "unix",
            "daffi",
            f"{backend}, async cb",
            result["lateness"],
            result["drift"],
            note,
            watch,
        )
    ]


def _at_time(path: str, backend: str) -> list[Measurement]:
    workload = f"S2 PERIOD(at_time=[{AT_TIMES} stamps over {AT_SPREAD:g} s])"
    measurements = []
    for callback, label in _CALLBACKS:
        watch = CpuWatch()
        result = _drive(
            path,
            "at_time",
            AT_SPREAD + 60,
            "--callback",
            callback,
            "--times",
            str(AT_TIMES),
            "--spread",
            str(AT_SPREAD),
        )
        note = f"{result['skipped']} stamps never fired" if result["skipped"] else ""
        measurements.append(
            _accuracy(
                workload,
                "unix",
                "daffi",
                f"{backend}, {label}",
                result["lateness"],
                None,
                note,
                watch,
            )
        )
    return measurements


def _many(path: str, backend: str, trigger: str, label: str) -> list[Measurement]:
    watch = CpuWatch()
    kind = (
        ("--trigger", "interval", "--durable") if trigger == "durable" else ("--trigger", trigger)
    )
    result = _drive(
        path,
        "many",
        MANY_WINDOW + 180,
        "--count",
        str(MANY),
        "--interval",
        str(MANY_INTERVAL),
        "--duration",
        str(MANY_WINDOW),
        *kind,
    )
    note = (
        f"{result['skipped']:,} skipped in window ({result['skip_warnings']:,.0f} skip "
        f"warnings); {result['listed']:,} listed; made in {result['setup_s']:.1f} s"
    )
    return [_load_measurement("unix", "daffi", f"{backend}, {label}", result, note, watch)]


def _many_floor(backend: str) -> list[Measurement]:
    cmd = python_module(
        "sched_probe",
        "floor-many",
        "--backend",
        backend,
        "--count",
        str(MANY),
        "--interval",
        str(MANY_INTERVAL),
        "--duration",
        str(MANY_WINDOW),
    )
    watch = CpuWatch()
    result = run_child_json(cmd, MANY_WINDOW + 120)
    return [_load_measurement("-", FLOOR, f"{backend}, anyio.sleep tasks", result, "", watch)]


def _load_measurement(
    transport: str,
    library: str,
    mode: str,
    result: dict[str, Any],
    note: str,
    watch: CpuWatch,
) -> Measurement:
    measurement = Measurement(
        workload=f"S3 {MANY:,} x PERIOD(interval={MANY_INTERVAL:g}), {MANY_WINDOW:g} s window",
        transport=transport,
        library=library,
        mode=mode,
        calls_per_s=result["fires_per_s"],
        p50_us=0.0,
        p99_us=0.0,
        rounds=1,
        calls_per_round=int(result["fires"]),  # fires in the window
        kind=SCHEDULE,
        cpu_pct=result["cpu_pct"],
        note=_with_load(f"ideal {MANY / MANY_INTERVAL:,.0f}/s; {note}".rstrip("; "), watch),
    )
    _progress(measurement)
    return measurement


def _accuracy(
    workload: str,
    transport: str,
    library: str,
    mode: str,
    lateness_s: Sequence[float],
    drift_s: float | None,
    note: str,
    watch: CpuWatch,
) -> Measurement:
    if not lateness_s:
        raise RuntimeError(f"{workload} {library} {mode}: the callback never fired")
    stats = lateness_stats(lateness_s)
    measurement = Measurement(
        workload=workload,
        transport=transport,
        library=library,
        mode=mode,
        calls_per_s=0.0,
        p50_us=stats["p50_us"],
        p99_us=stats["p99_us"],
        rounds=1,
        calls_per_round=len(lateness_s),
        kind=SCHEDULE,
        max_us=stats["max_us"],
        drift_us=None if drift_s is None else drift_s * 1e6,
        note=_with_load(note, watch),
    )
    _progress(measurement)
    return measurement


def _with_load(note: str, watch: CpuWatch) -> str:
    """The measurement's own note, then what other processes used meanwhile."""
    return "; ".join(part for part in (note, watch.note()) if part)


def _progress(m: Measurement) -> None:
    if m.max_us is None:
        figures = f"{m.calls_per_s:,.0f} fires/s, CPU {m.cpu_pct or 0:.0f}% of a core"
    else:
        drift = f", drift {m.drift_us / 1000:.2f}" if m.drift_us is not None else ""
        figures = (
            f"{m.calls_per_round} fires, late p50 {m.p50_us / 1000:.2f} p99 "
            f"{m.p99_us / 1000:.2f} max {m.max_us / 1000:.2f}{drift} ms"
        )
    print(f"  {m.workload}: {m.library} {m.mode}: {figures} ({m.note})", file=sys.stderr)
