"""What the scheduling-timing drivers share: the plan, the requester's measurements. Stdlib only.

The drivers (``sched_lib_daffi2.py``, ``sched_lib_daffi4.py``, ``sched_lib_floor.py``) run in
different virtualenvs, one of which holds daffi 2.2.1, so this module imports nothing but the
standard library (and ``_proto``, which is standard library only too).

Every figure is ``time.time()`` on the one host: the executor's callback records it at its first
line, the requester records the request time ``R`` right before it makes the ``PERIOD`` call.
A library's requester hands :func:`measure` four operations (:class:`Ops`); :func:`measure`
makes the schedules, waits, and returns the raw figures:

* ``at_time``: one ``PERIOD(at_time=[...])`` with ``at_count`` timestamps, the first
  ``at_lead`` seconds after ``R``, then random gaps in ``at_gap`` (seeded: every library gets
  the same gaps in a round). Lateness of the i-th run (in time order) = its start - the i-th
  timestamp.
* ``first``: ``first_repeats`` times, ``PERIOD(interval=first_interval)`` requested at ``R``;
  the schedule is cancelled once its first run is in. Offset = first run - (``R`` + interval).
* ``drift``: one ``PERIOD(interval=drift_interval)`` kept for ``drift_runs`` runs, then
  cancelled. Lateness of run k = its start - (``R`` + k * interval). When the executor says
  it skipped grid points (ours may, when a run would be too late; daffi 2 never does: it
  sleeps ``interval`` after each run), each run is put on its grid point instead: the previous
  run's point plus the gap between them in whole intervals.

Each kind starts with a short unmeasured ``at_time`` schedule (:func:`warm_up`), whose
lateness is reported apart: the first runs in a fresh executor start worker threads.

The requester waits with ``time.sleep`` until the last run is due, then asks the executor for
the run times (``sched_runs(tag)``, one call) until they are all in, sleeping in between for as
long as the runs so far say the rest will take: so it talks to the executor only after the
runs it measures, not during them.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import faulthandler
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

#: the executor's process name (every schedule names it as ``receiver``)
EXECUTOR = "sched-executor"
REQUESTER = "sched-requester"
CONTROLLER = "sched-controller"
#: the callback kinds: a ``def`` callback and an ``async def`` one
KINDS = ("sync", "async")
#: the kind the floor reports under (it has no callback)
FLOOR_KIND = "none"
#: the executor's callbacks: ``sched_tick_<kind>(tag)`` records ``time.time()`` under ``tag``
TICK = {"sync": "sched_tick_sync", "async": "sched_tick_async"}
#: ``sched_runs(tag) -> list[float]``: the run times recorded under ``tag`` so far
RUNS = "sched_runs"
#: how long past the expected end the requester waits for missing runs
LATE_RUNS_WAIT = 10.0
#: the unmeasured at_time schedule each kind starts with: runs, first one after, gap (s)
WARM_UP_RUNS = 3
WARM_UP_LEAD = 0.3
WARM_UP_GAP = 0.05


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one requester measures (the runner builds it; it travels as JSON)."""

    kinds: tuple[str, ...]
    seed: int
    at_count: int
    at_lead: float
    at_gap: tuple[float, float]
    first_interval: float
    first_repeats: int
    #: the requester looks for the first run this long after it was due
    first_margin: float
    drift_interval: float
    drift_runs: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        raw["kinds"] = tuple(raw["kinds"])
        raw["at_gap"] = (float(raw["at_gap"][0]), float(raw["at_gap"][1]))
        return cls(**raw)

    def at_offsets(self) -> list[float]:
        """Seconds after the request of each ``at_time`` timestamp (the same for every library)."""
        rng = random.Random(self.seed)
        offsets = [self.at_lead]
        for _ in range(self.at_count - 1):
            offsets.append(offsets[-1] + rng.uniform(*self.at_gap))
        return offsets

    def seconds_per_kind(self) -> float:
        """Roughly how long :func:`measure` takes for one kind (for the runner's timeout)."""
        at = self.at_lead + (self.at_count - 1) * sum(self.at_gap) / 2 + 0.3
        first = self.first_repeats * (self.first_interval + self.first_margin + 0.05)
        drift = self.drift_runs * self.drift_interval + 0.3
        warm_up = WARM_UP_LEAD + WARM_UP_RUNS * WARM_UP_GAP + 0.1
        return warm_up + at + first + drift


@dataclasses.dataclass(frozen=True)
class Ops:
    """A library's requester, as :func:`measure` uses it (all blocking, from one thread)."""

    #: ``(kind, tag, timestamps) -> handle``: one ``PERIOD(at_time=timestamps)``
    schedule_at: Callable[[str, str, list[float]], Any]
    #: ``(kind, tag, seconds) -> handle``: one ``PERIOD(interval=seconds)``
    schedule_every: Callable[[str, str, float], Any]
    #: cancel what ``schedule_every`` returned
    cancel: Callable[[Any], Any]
    #: ``tag -> run start times`` recorded by the executor so far
    runs: Callable[[str], list[float]]
    #: grid points the executor skipped in what ``schedule_every`` returned (before cancel)
    skipped: Callable[[Any], int]


# ---------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of every scheduling driver (the runner builds it)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("controller", "executor", "requester"))
    parser.add_argument("--dir", help="the run's private temp dir (Unix socket, daffi 2's TMPDIR)")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--mode", choices=("asyncio", "thread"), default="asyncio", help="floor")
    parser.add_argument("--plan", default="", help="the Plan as JSON (requester)")
    parser.add_argument("--deadline", type=float, default=600.0)
    args = parser.parse_args(argv)
    faulthandler.dump_traceback_later(args.deadline, exit=True)
    return args


# ---------------------------------------------------------------- measuring


def sleep_until(target: float) -> None:
    left = target - time.time()
    if left > 0:
        time.sleep(left)


def wait_runs(ops: Ops, tag: str, wanted: int, give_up: float) -> list[float]:
    """The run times of ``tag`` once ``wanted`` are in (or whatever came by ``give_up``).

    Between two looks it sleeps for as long as the runs so far say the missing ones take, so
    a schedule that runs late (daffi 2 drifts) is asked a few times, not polled.
    """
    while True:
        runs = sorted(ops.runs(tag))
        now = time.time()
        if len(runs) >= wanted or now >= give_up:
            return runs
        if len(runs) >= 2:
            pace = (runs[-1] - runs[0]) / (len(runs) - 1)
            pause = (wanted - len(runs)) * pace + 0.02
        else:
            pause = 0.05
        time.sleep(min(max(pause, 0.02), 0.5, give_up - now))


def measure_at_time(ops: Ops, plan: Plan, kind: str) -> dict[str, Any]:
    tag = f"at-{kind}-{uuid.uuid4().hex}"
    offsets = plan.at_offsets()
    requested = time.time()
    times = [requested + offset for offset in offsets]
    ops.schedule_at(kind, tag, times)
    call_s = time.time() - requested
    sleep_until(times[-1] + 0.1)
    runs = wait_runs(ops, tag, len(times), times[-1] + LATE_RUNS_WAIT)
    if len(runs) == len(times):  # both in time order; the gaps (>= 20 ms) keep them paired
        paired = list(zip(runs, times, strict=True))
    else:  # runs missing: each run goes with the last timestamp due by then
        paired = [(run, times[max(bisect.bisect_right(times, run) - 1, 0)]) for run in runs]
    return {
        "requested": requested,
        "call_ms": call_s * 1000,
        "stamps": len(times),
        "runs": len(runs),
        "lateness_ms": [(run - at) * 1000 for run, at in paired],
    }


def measure_first(ops: Ops, plan: Plan, kind: str) -> dict[str, Any]:
    interval = plan.first_interval
    offsets: list[float] = []
    calls: list[float] = []
    missing = 0
    for _ in range(plan.first_repeats):
        tag = f"first-{kind}-{uuid.uuid4().hex}"
        requested = time.time()
        handle = ops.schedule_every(kind, tag, interval)
        calls.append((time.time() - requested) * 1000)
        due = requested + interval
        sleep_until(due + plan.first_margin)
        runs = wait_runs(ops, tag, 1, due + LATE_RUNS_WAIT)
        ops.cancel(handle)
        if runs:
            offsets.append((runs[0] - due) * 1000)
        else:
            missing += 1
    return {
        "interval": interval,
        "schedules": plan.first_repeats,
        "missing": missing,
        "call_ms": calls,
        "offset_ms": offsets,
    }


def measure_drift(ops: Ops, plan: Plan, kind: str) -> dict[str, Any]:
    interval = plan.drift_interval
    tag = f"drift-{kind}-{uuid.uuid4().hex}"
    requested = time.time()
    handle = ops.schedule_every(kind, tag, interval)
    call_s = time.time() - requested
    last_due = requested + plan.drift_runs * interval
    sleep_until(last_due + 0.05)
    runs = wait_runs(ops, tag, plan.drift_runs, last_due + LATE_RUNS_WAIT)
    skipped = ops.skipped(handle)
    ops.cancel(handle)
    runs = runs[: plan.drift_runs]
    points = grid_points(runs, requested, interval) if skipped else range(1, len(runs) + 1)
    return {
        "requested": requested,
        "interval": interval,
        "call_ms": call_s * 1000,
        "wanted": plan.drift_runs,
        "runs": len(runs),
        "skipped": skipped,
        "lateness_ms": [
            (run - (requested + k * interval)) * 1000 for k, run in zip(points, runs, strict=True)
        ],
    }


def grid_points(runs: Sequence[float], origin: float, interval: float) -> list[int]:
    """The grid point (1-based) of each run when the executor skipped some.

    The first run's is the nearest to ``origin + k * interval`` (at least 1); each next run's
    is the previous one's plus the gap between the two runs in whole intervals (at least 1).
    """
    points: list[int] = []
    for i, run in enumerate(runs):
        if i == 0:
            points.append(max(1, round((run - origin) / interval)))
        else:
            points.append(points[-1] + max(1, round((run - runs[i - 1]) / interval)))
    return points


def warm_up(ops: Ops, kind: str) -> list[float]:
    """A short ``at_time`` schedule before the measured ones; the lateness of its runs (ms).

    The first runs in a fresh executor pay for starting worker threads and first-time code
    paths: they are reported apart (as "cold runs"), not mixed into the measured figures.
    """
    tag = f"warmup-{kind}-{uuid.uuid4().hex}"
    requested = time.time()
    times = [requested + WARM_UP_LEAD + i * WARM_UP_GAP for i in range(WARM_UP_RUNS)]
    ops.schedule_at(kind, tag, times)
    sleep_until(times[-1] + 0.05)
    runs = wait_runs(ops, tag, len(times), times[-1] + LATE_RUNS_WAIT)
    return [(run - at) * 1000 for run, at in zip(runs, times, strict=False)]


def measure(ops: Ops, plan: Plan) -> dict[str, Any]:
    """Every measurement for every kind of the plan: ``{kind: {"at_time", "first", "drift"}}``.

    Each kind starts with :func:`warm_up` (``"warm_up"``: the lateness of its runs, in ms).
    """
    out: dict[str, Any] = {}
    for kind in plan.kinds:
        out[kind] = {
            "warm_up": warm_up(ops, kind),
            "at_time": measure_at_time(ops, plan, kind),
            "first": measure_first(ops, plan, kind),
            "drift": measure_drift(ops, plan, kind),
        }
    return out
