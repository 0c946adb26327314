"""Scheduling-timing driver for our daffi (this repository), run in the ``ours`` virtualenv.

    python -m benchmarks.compare.sched_lib_daffi4 controller|executor|requester --dir DIR
        --backend asyncio|trio ...

The same three processes and programs as ``sched_lib_daffi2.py``, each
``Global(backend=...)`` constructed outside any event loop (daffi runs in its own thread):

* ``controller``: ``Global(init_controller=True, init_node=False)``, offers nothing.
* ``executor``: offers ``@callback def sched_tick_sync(tag)`` (daffi runs it in a worker
  thread) and ``@callback async def sched_tick_async(tag)`` (on daffi's loop), which record
  ``time.time()`` at their first line, and ``sched_runs(tag)``.
* ``requester``: a plain sync program: ``fetcher.call(tag, exec_modifier=PERIOD(...,
  receiver="sched-executor"))`` returns a ``ScheduledTask`` once the executor accepted the
  schedule; ``task.cancel()``. An ``interval`` grid starts at the executor's clock when it
  accepts, so the first run's offset from ``R + interval`` includes the request's latency.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import daffi
from benchmarks.compare import _proto, _sched_proto
from daffi import PERIOD, Global, ScheduledTask, callback, fetcher
from daffi.__about__ import __version__

LIB = "daffi4"
STOP_WAIT = 3.0
_WAIT = 30.0
_RUNS: dict[str, list[float]] = {}


def _ready(args: argparse.Namespace) -> None:
    _proto.announce_ready(LIB, __version__, daffi.__file__, backend=args.backend)


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


def controller(args: argparse.Namespace) -> None:
    g = Global(
        process_name=_sched_proto.CONTROLLER,
        init_controller=True,
        init_node=False,
        backend=args.backend,
        unix_sock_path=args.dir,
    )
    try:
        _ready(args)
        _proto.wait_for_stdin_eof()
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def executor(args: argparse.Namespace) -> None:
    _offer_callbacks()
    g = Global(process_name=_sched_proto.EXECUTOR, backend=args.backend, unix_sock_path=args.dir)
    try:  # the constructor returned: connected to the controller
        _ready(args)
        _proto.wait_for_stdin_eof()
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def requester(args: argparse.Namespace) -> None:
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

    def schedule_at(kind: str, tag: str, times: list[float]) -> ScheduledTask:
        modifier = PERIOD(at_time=times, receiver=executor_name)
        task: ScheduledTask = ticks[kind].call(tag, exec_modifier=modifier)
        return task

    def schedule_every(kind: str, tag: str, seconds: float) -> ScheduledTask:
        modifier = PERIOD(interval=seconds, receiver=executor_name)
        task: ScheduledTask = ticks[kind].call(tag, exec_modifier=modifier)
        return task

    def cancel(task: ScheduledTask) -> None:
        task.cancel()

    def runs(tag: str) -> list[float]:
        return list(sched_runs(tag))

    def skipped(task: ScheduledTask) -> int:
        task.refresh()
        return task.skipped or 0

    g = Global(process_name=_sched_proto.REQUESTER, backend=args.backend, unix_sock_path=args.dir)
    try:
        g.wait_process(executor_name, timeout=_WAIT)
        for name in (*(_sched_proto.TICK[k] for k in plan.kinds), _sched_proto.RUNS):
            g.wait_function(name, timeout=_WAIT)
        ops = _sched_proto.Ops(schedule_at, schedule_every, cancel, runs, skipped)
        result: dict[str, Any] = _sched_proto.measure(ops, plan)
        result["lib"] = {
            "lib": LIB,
            "version": __version__,
            "module_file": daffi.__file__,
            "backend": args.backend,
        }
        _proto.emit_result(result)
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def main() -> None:
    args = _sched_proto.parse_args()
    {"controller": controller, "executor": executor, "requester": requester}[args.role](args)


if __name__ == "__main__":
    main()
