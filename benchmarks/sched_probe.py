"""The programs of the scheduling benchmark: an executor node, a driver, and the floor.

    python -m benchmarks.sched_probe executor --path DIR --name NAME --backend asyncio|trio
        [--state-dir DIR]
    python -m benchmarks.sched_probe drive --path DIR --executor NAME --case interval|at_time|many
        [--callback async|sync] [--trigger interval|cron] [--durable] [--interval S]
        [--fires N] [--times N] [--spread S] [--count N] [--duration S] [--deadline S]
    python -m benchmarks.sched_probe floor --backend asyncio|trio --interval S --fires N
    python -m benchmarks.sched_probe floor-many --backend asyncio|trio --count N --interval S
        --duration S

* ``executor``: a node (``Global(backend=...)``, started outside any loop, so daffi runs it
  in its own thread with that backend) offering ``tick_async(tag)`` / ``tick_sync(tag)``,
  which append ``time.time()`` to the list of ``tag``; ``take_fires(tag)`` returns and drops
  that list; ``count_fire()`` adds one to a counter; ``usage()`` returns
  ``[time.monotonic(), CPU seconds of this process (user + system), counter, skip warnings]``;
  ``schedule_stats()`` returns ``[schedules listed, grid points skipped]`` from this node's own
  ``get_scheduled_tasks`` (not over the wire: the listing of 10,000 schedules is a big frame).
  The scheduler's "skipped N run(s)" warnings are counted instead of printed (10,000
  schedules on a saturated node log thousands); its errors still go to stderr. It prints
  ``READY {"path": DIR}`` once connected and stops when its stdin closes.
* ``drive``: an asyncio program (``async with Global(...)``) that makes the schedules on the
  executor, waits, and prints one JSON object with the raw figures:

  - ``interval``: one ``PERIOD(interval=S)`` of ``tick_<callback>``. The schedule's start is
    read from ``get_scheduled_tasks``: taken right after the schedule was accepted, it shows
    ``next_run = start + interval``. After ``N`` fires (plus half an interval) the schedule is
    cancelled. Fire ``k`` (1-based) is late by ``t_k - (start + k * interval)``; when the
    executor skipped grid points, ``k`` is the nearest grid point instead. ``drift`` is the
    lateness of the last fire. ``--trigger cron`` makes it ``PERIOD(cron="* * * * * *")``
    (every second: its grid is the whole seconds), ``--durable`` a durable schedule (the
    executor needs ``--state-dir``).
  - ``at_time``: one ``PERIOD(at_time=[...])`` with ``N`` timestamps ``S / N`` apart, the first
    one second ahead. The i-th fire (in time order) is late by ``t_i - at_time_i``.
  - ``many``: ``N`` schedules ``PERIOD(interval=S)`` of ``count_fire`` (made by 64 tasks at
    once; ``--trigger`` and ``--durable`` as for ``interval``); once all exist and one
    interval has passed, ``usage()`` before and after a window of ``--duration`` seconds gives
    fires/s and the executor's CPU use.
* ``floor``: no daffi: an anyio loop on the same backend that sleeps until ``start + k *
  interval`` exactly as daffi's scheduler does (``anyio.sleep(target - time.time())``) and
  records ``time.time()`` on the loop, then again from a worker thread
  (``anyio.to_thread.run_sync(time.time)``), the hop a sync callback makes. It prints the
  lateness of both.
* ``floor-many``: no daffi: ``N`` tasks on one loop of the backend, each sleeping to its own
  grid ``start + k * interval`` in a loop and counting; fires/s and CPU % over the window, as
  for ``many``: what the event loop alone spends on that many timers.

A driver still running after ``--deadline`` seconds prints every thread's traceback and exits.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import resource
import time
import uuid
from typing import Any

import anyio
import anyio.to_thread

from benchmarks._common import announce_ready, wait_for_stdin_eof
from daffi import PERIOD, Global, ScheduledTask, callback, fetcher

_CONNECT_TIMEOUT = 30.0
_AT_TIME_LEAD = 1.0  # seconds between making an at_time schedule and its first timestamp
_MAKERS = 64  # tasks making the `many` schedules at once

# ---------------------------------------------------------------- executor

_fires: dict[str, list[float]] = {}
_executor_global: list[Global] = []
_counter = [0]
_skip_warnings = [0]


class _CountSkips(logging.Handler):
    """Count the scheduler's skip warnings; pass its errors on to stderr."""

    def __init__(self) -> None:
        super().__init__()
        self.errors = logging.StreamHandler()
        self.errors.setLevel(logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING and "skipped" in record.msg:
            _skip_warnings[0] += 1
        elif record.levelno >= logging.ERROR:
            self.errors.handle(record)


def _count_skip_warnings() -> None:
    log = logging.getLogger("daffi.scheduling")
    log.addHandler(_CountSkips())
    log.propagate = False


def _offer_executor_callbacks() -> None:
    @callback
    def tick_sync(tag: str) -> None:
        _fires.setdefault(tag, []).append(time.time())

    @callback
    async def tick_async(tag: str) -> None:
        _fires.setdefault(tag, []).append(time.time())

    @callback
    def take_fires(tag: str) -> list[float]:
        return _fires.pop(tag, [])

    @callback
    async def count_fire() -> None:
        _counter[0] += 1

    @callback
    async def schedule_stats() -> list[int]:
        # Asked of this node itself (no wire): a listing of 10,000 schedules is a big frame.
        g = _executor_global[0]
        listing = await g.get_scheduled_tasks_async(g.process_name)
        return [len(listing), sum(int(entry["skipped"]) for entry in listing)]

    @callback
    async def usage() -> list[float]:
        return [*_usage(), float(_counter[0]), float(_skip_warnings[0])]


def _usage() -> list[float]:
    """``[time.monotonic(), CPU seconds of this process so far]``."""
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    return [time.monotonic(), rusage.ru_utime + rusage.ru_stime]


def run_executor(args: argparse.Namespace) -> None:
    _offer_executor_callbacks()
    _count_skip_warnings()
    with Global(
        process_name=args.name,
        unix_sock_path=args.path,
        backend=args.backend,
        connect_timeout=_CONNECT_TIMEOUT,
        state_dir=args.state_dir,
    ) as g:
        _executor_global.append(g)
        announce_ready(path=args.path, pid=os.getpid())
        wait_for_stdin_eof()


# ---------------------------------------------------------------- driver


@fetcher
async def tick_async(tag: str) -> None:
    pass


@fetcher
async def tick_sync(tag: str) -> None:
    pass


@fetcher
async def take_fires(tag: str) -> Any:
    pass


@fetcher
async def count_fire() -> None:
    pass


@fetcher
async def usage() -> Any:
    pass


@fetcher
async def schedule_stats() -> Any:
    pass


async def _listing(g: Global, executor: str, task: ScheduledTask) -> dict[str, Any]:
    for entry in await g.get_scheduled_tasks_async(executor):
        if entry["uuid"] == task.uuid:
            return entry
    raise RuntimeError(f"schedule {task.uuid} is not listed on {executor!r}")


def _recurring(args: argparse.Namespace) -> tuple[PERIOD, float]:
    """The schedule ``--trigger`` asks for (``--durable`` or not), and its period: an
    interval of ``--interval`` seconds, or the cron expression that fires every second."""
    if args.trigger == "cron":
        modifier = PERIOD(cron="* * * * * *", receiver=args.executor, durable=args.durable)
        return modifier, 1.0
    modifier = PERIOD(interval=args.interval, receiver=args.executor, durable=args.durable)
    return modifier, args.interval


async def drive_interval(g: Global, args: argparse.Namespace) -> dict[str, Any]:
    tick = tick_async if args.callback == "async" else tick_sync
    tag = uuid.uuid4().hex
    modifier, interval = _recurring(args)
    task = await tick.call(tag, exec_modifier=modifier)
    first = await _listing(g, args.executor, task)
    if first["runs"] == 0 and first["next_run"] is not None:
        start, start_from = first["next_run"] - interval, "listing next_run"
    else:  # listed after the first fire already (a very busy machine)
        start, start_from = None, "first fire - interval"
    wake = (start if start is not None else time.time()) + (args.fires + 0.5) * interval
    await anyio.sleep(max(wake - time.time(), 0.0))
    last = await _listing(g, args.executor, task)
    await task.cancel_async()
    fires = await take_fires(tag)
    if start is None:
        start = fires[0] - interval
    if last["skipped"] == 0:
        lateness = [t - (start + k * interval) for k, t in enumerate(fires, 1)]
    else:  # the k-th fire is not grid point k: take the nearest one
        lateness = [t - (start + round((t - start) / interval) * interval) for t in fires]
    return {
        "fires": len(fires),
        "lateness": lateness,
        "drift": lateness[-1] if lateness else None,
        "skipped": last["skipped"],
        "start_from": start_from,
        "window": (fires[-1] - fires[0]) if fires else 0.0,
    }


async def drive_at_time(g: Global, args: argparse.Namespace) -> dict[str, Any]:
    tick = tick_async if args.callback == "async" else tick_sync
    tag = uuid.uuid4().hex
    step = args.spread / args.times
    first = time.time() + _AT_TIME_LEAD
    times = [first + i * step for i in range(args.times)]
    await tick.call(tag, exec_modifier=PERIOD(at_time=times, receiver=args.executor))
    await anyio.sleep(max(times[-1] + 0.5 - time.time(), 0.0))
    fires = sorted(await take_fires(tag))
    return {
        "fires": len(fires),
        "lateness": [t - at for t, at in zip(fires, times, strict=False)],
        "drift": None,
        "skipped": len(times) - len(fires),
        "window": (fires[-1] - fires[0]) if fires else 0.0,
    }


async def drive_many(g: Global, args: argparse.Namespace) -> dict[str, Any]:
    modifier, interval = _recurring(args)
    made = [0]

    async def maker(first: int) -> None:
        for _ in range(first, args.count, _MAKERS):
            await count_fire.call(exec_modifier=modifier)
            made[0] += 1

    started = time.monotonic()
    idle_before = await usage()
    async with anyio.create_task_group() as tg:
        for first in range(min(_MAKERS, args.count)):
            tg.start_soon(maker, first)
    setup = time.monotonic() - started
    await anyio.sleep(interval * 1.5)  # every schedule has fired at least once
    _, skipped_before = await schedule_stats()
    before = await usage()
    await anyio.sleep(args.duration)
    after = await usage()
    listed, skipped_after = await schedule_stats()
    elapsed = after[0] - before[0]  # the executor's clock: both snapshots are its own
    return {
        "schedules": made[0],
        "listed": listed,
        "setup_s": setup,
        "setup_cpu_s": before[1] - idle_before[1],
        "window_s": elapsed,
        "fires": int(after[2] - before[2]),
        "fires_per_s": (after[2] - before[2]) / elapsed,
        "cpu_pct": (after[1] - before[1]) / elapsed * 100,
        "skipped": skipped_after - skipped_before,
        "skip_warnings": after[3] - before[3],
    }


async def run_driver(args: argparse.Namespace) -> dict[str, Any]:
    async with Global(process_name=f"sched-driver-{os.getpid()}", unix_sock_path=args.path) as g:
        await g.wait_process_async(args.executor, timeout=_CONNECT_TIMEOUT)
        await g.wait_function_async("usage", timeout=_CONNECT_TIMEOUT)
        if args.case == "interval":
            return await drive_interval(g, args)
        if args.case == "at_time":
            return await drive_at_time(g, args)
        return await drive_many(g, args)


# ---------------------------------------------------------------- floor


async def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    interval = args.interval
    loop_late: list[float] = []
    thread_late: list[float] = []
    start = time.time()
    for k in range(1, args.fires + 1):
        target = start + k * interval
        await anyio.sleep(max(target - time.time(), 0.0))
        loop_late.append(time.time() - target)
        thread_late.append(await anyio.to_thread.run_sync(time.time) - target)
    return {
        "fires": args.fires,
        "loop": loop_late,
        "thread": thread_late,
    }


async def run_floor_many(args: argparse.Namespace) -> dict[str, Any]:
    fired = [0]

    async def timer(start: float) -> None:
        k = 0
        while True:
            k += 1
            await anyio.sleep(max(start + k * args.interval - time.time(), 0.0))
            fired[0] += 1

    async with anyio.create_task_group() as tg:
        for _ in range(args.count):
            tg.start_soon(timer, time.time())
        await anyio.sleep(args.interval * 1.5)
        before = [*_usage(), fired[0]]
        await anyio.sleep(args.duration)
        after = [*_usage(), fired[0]]
        tg.cancel_scope.cancel()
    elapsed = after[0] - before[0]
    return {
        "fires": after[2] - before[2],
        "fires_per_s": (after[2] - before[2]) / elapsed,
        "cpu_pct": (after[1] - before[1]) / elapsed * 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("executor", "drive", "floor", "floor-many"))
    parser.add_argument("--path", help="directory of the Unix socket")
    parser.add_argument("--name", default="sched-executor")
    parser.add_argument("--executor", default="sched-executor")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--case", choices=("interval", "at_time", "many"), default="interval")
    parser.add_argument("--callback", choices=("async", "sync"), default="async")
    parser.add_argument("--trigger", choices=("interval", "cron"), default="interval")
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--state-dir", help="the executor's state directory (durable)")
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--fires", type=int, default=200)
    parser.add_argument("--times", type=int, default=100)
    parser.add_argument("--spread", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--deadline", type=float, default=300.0)
    args = parser.parse_args()
    if args.role in ("executor", "drive") and not args.path:
        parser.error("--path is required")
    if args.role == "executor":
        run_executor(args)
        return
    faulthandler.dump_traceback_later(args.deadline, exit=True)
    if args.role == "drive":
        result = anyio.run(run_driver, args, backend="asyncio")
    elif args.role == "floor":
        result = anyio.run(run_floor, args, backend=args.backend)
    else:
        result = anyio.run(run_floor_many, args, backend=args.backend)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
