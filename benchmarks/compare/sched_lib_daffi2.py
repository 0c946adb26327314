"""Scheduling-timing driver for daffi 2.2.1 (PyPI), run in the ``daffi2`` virtualenv.

    python -m benchmarks.compare.sched_lib_daffi2 controller|executor|requester --dir DIR ...

Three processes on a Unix socket, as a daffi 2 user sets them up (see
``sched_timing.py`` for what is measured):

* ``controller``: ``Global(init_controller=True, init_node=False)``, offers nothing.
* ``executor``: ``Global()`` offering ``@callback def sched_tick_sync(tag)`` and
  ``@callback async def sched_tick_async(tag)``, which record ``time.time()`` at their first
  line, and ``sched_runs(tag)``, which returns what they recorded.
* ``requester``: a plain sync program (``Global()`` in the main thread, ``@fetcher def``):
  ``fetcher.call(tag, exec_modifier=PERIOD(..., receiver="sched-executor"))`` returns a
  ``SchedulerTask`` once the controller accepted it; ``task.cancel()``.

What daffi 2 imposes here (besides what ``lib_daffi2.py`` says about ``Global``, the socket
path and ``stop()``):

* Its scheduler runs a ``def`` callback through ``anyio.to_thread.run_sync`` and an
  ``async def`` one by starting a new event loop for each run (``anyio.run`` in a worker
  thread): both are what its users get.
* ``interval``: each run is ``await sleep(interval)`` after the previous run finished (and
  logged), so the runs drift by the time each one takes.
* ``at_time``: the executor computes each delay as ``ts - datetime.utcnow().timestamp()``, which
  is right only when the host's time zone is UTC (``utcnow()`` is naive, ``timestamp()`` reads
  it as local time): the runner sets ``TZ=UTC`` for every process.
* The callbacks' annotations are strings (``from __future__ import annotations``): daffi 2
  pickles the signature for its peers.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import daffi
from benchmarks.compare import _proto, _sched_proto
from daffi import PERIOD, Global
from daffi.__about__ import __version__
from daffi.decorators import callback, fetcher

LIB = "daffi2"
STOP_WAIT = 3.0
_RUNS: dict[str, list[float]] = {}


def _check_tmpdir(expected: str) -> None:
    """daffi 2 puts its socket in ``<tempfile.gettempdir()>/daffi/``: it must be the run's dir."""
    actual = os.path.realpath(tempfile.gettempdir())
    if actual != os.path.realpath(expected):
        raise RuntimeError(f"TMPDIR is {actual!r}, expected {expected!r}: set TMPDIR per run")


def _ready() -> None:
    _proto.announce_ready(LIB, __version__, daffi.__file__)


def _offer_callbacks() -> None:
    @callback
    def sched_tick_sync(tag: str) -> None:
        started = time.time()
        _RUNS.setdefault(tag, []).append(started)

    @callback
    async def sched_tick_async(tag: str) -> None:
        started = time.time()
        _RUNS.setdefault(tag, []).append(started)

    @callback
    def sched_runs(tag: str) -> list[float]:
        return list(_RUNS.get(tag, ()))


def controller(args: Any) -> None:
    _check_tmpdir(args.dir)
    g = Global(process_name=_sched_proto.CONTROLLER, init_controller=True, init_node=False)
    try:
        _ready()
        _proto.wait_for_stdin_eof()
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def executor(args: Any) -> None:
    _check_tmpdir(args.dir)
    _offer_callbacks()
    g = Global(process_name=_sched_proto.EXECUTOR)  # blocks until connected
    try:
        _ready()
        _proto.wait_for_stdin_eof()
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def requester(args: Any) -> None:
    _check_tmpdir(args.dir)
    plan = _sched_proto.Plan.from_json(args.plan)

    @fetcher
    def sched_tick_sync(tag: str) -> None:
        pass

    @fetcher
    def sched_tick_async(tag: str) -> None:
        pass

    @fetcher
    def sched_runs(tag: str) -> Any:
        pass

    ticks = {"sync": sched_tick_sync, "async": sched_tick_async}
    executor_name = _sched_proto.EXECUTOR

    def schedule_at(kind: str, tag: str, times: list[float]) -> Any:
        return ticks[kind].call(tag, exec_modifier=PERIOD(at_time=times, receiver=executor_name))

    def schedule_every(kind: str, tag: str, seconds: float) -> Any:
        return ticks[kind].call(tag, exec_modifier=PERIOD(interval=seconds, receiver=executor_name))

    def runs(tag: str) -> list[float]:
        return list(sched_runs(tag))

    g = Global(process_name=_sched_proto.REQUESTER)  # blocks until connected
    try:
        g.wait_process(executor_name)
        for name in (*(_sched_proto.TICK[k] for k in plan.kinds), _sched_proto.RUNS):
            g.wait_function(name)
        # daffi 2 never skips a run: each one is `await sleep(interval)` after the last
        ops = _sched_proto.Ops(
            schedule_at, schedule_every, lambda task: task.cancel(), runs, lambda task: 0
        )
        result = _sched_proto.measure(ops, plan)
        result["lib"] = {"lib": LIB, "version": __version__, "module_file": daffi.__file__}
        _proto.emit_result(result)
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def main() -> None:
    args = _sched_proto.parse_args()
    {"controller": controller, "executor": executor, "requester": requester}[args.role](args)


if __name__ == "__main__":
    main()
