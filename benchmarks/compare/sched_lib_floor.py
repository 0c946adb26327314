"""The scheduling-timing floor: no daffi, one process sleeping to the same targets. Stdlib only.

    python -m benchmarks.compare.sched_lib_floor requester --mode asyncio|thread --plan JSON

It runs the requester's own measurements (``_sched_proto.measure``, the same code, waits and
figures as the libraries' requesters) against a "scheduler" in the same process that does
nothing but wait for each target and record ``time.time()``:

* ``asyncio``: an asyncio loop in a background thread; an ``at_time`` schedule is one
  ``loop.call_at`` per timestamp, an ``interval`` schedule a task that sleeps to
  ``origin + k * interval`` (``asyncio.sleep(target - time.time())``), origin being the time
  the schedule was made. Cancelling cancels the task.
* ``thread``: one thread per schedule calling ``time.sleep(target - time.time())`` for each
  target; cancelling sets an event it looks at after each wake-up.

So the rows say what the host's timers allow, without sockets, codecs or a second process.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import threading
import time
from typing import Any

from benchmarks.compare import _proto, _sched_proto

LIB = "floor"
_RUNS: dict[str, list[float]] = {}


def _record(tag: str) -> None:
    started = time.time()
    _RUNS.setdefault(tag, []).append(started)


def _runs(tag: str) -> list[float]:
    return list(_RUNS.get(tag, ()))


def _never_skips(handle: object) -> int:
    return 0


def asyncio_ops() -> _sched_proto.Ops:
    """Schedules on an asyncio loop running in a background thread."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="floor-loop", daemon=True).start()

    def schedule_at(kind: str, tag: str, times: list[float]) -> None:
        def arm() -> None:
            now_loop, now = loop.time(), time.time()
            for at in times:
                loop.call_at(now_loop + (at - now), _record, tag)

        loop.call_soon_threadsafe(arm)

    async def every(tag: str, seconds: float, origin: float) -> None:
        k = 0
        while True:
            k += 1
            await asyncio.sleep(max(origin + k * seconds - time.time(), 0.0))
            _record(tag)

    def schedule_every(kind: str, tag: str, seconds: float) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(every(tag, seconds, time.time()), loop)

    def cancel(future: concurrent.futures.Future[None]) -> None:
        future.cancel()

    return _sched_proto.Ops(schedule_at, schedule_every, cancel, _runs, _never_skips)


def thread_ops() -> _sched_proto.Ops:
    """Schedules as threads calling ``time.sleep`` to each target."""

    def sleep_to(target: float) -> None:
        left = target - time.time()
        if left > 0:
            time.sleep(left)

    def at_times(tag: str, times: list[float]) -> None:
        for at in times:
            sleep_to(at)
            _record(tag)

    def every(tag: str, seconds: float, origin: float, stop: threading.Event) -> None:
        k = 0
        while True:
            k += 1
            sleep_to(origin + k * seconds)
            if stop.is_set():
                return
            _record(tag)

    def schedule_at(kind: str, tag: str, times: list[float]) -> None:
        threading.Thread(target=at_times, args=(tag, times), daemon=True).start()

    def schedule_every(kind: str, tag: str, seconds: float) -> threading.Event:
        stop = threading.Event()
        args = (tag, seconds, time.time(), stop)
        threading.Thread(target=every, args=args, daemon=True).start()
        return stop

    def cancel(stop: threading.Event) -> None:
        stop.set()

    return _sched_proto.Ops(schedule_at, schedule_every, cancel, _runs, _never_skips)


def requester(args: argparse.Namespace) -> None:
    plan = _sched_proto.Plan.from_json(args.plan)
    ops = asyncio_ops() if args.mode == "asyncio" else thread_ops()
    result: dict[str, Any] = _sched_proto.measure(ops, plan)
    result["lib"] = {"lib": LIB, "version": None, "module_file": __file__, "mode": args.mode}
    _proto.emit_result(result)


def main() -> None:
    args = _sched_proto.parse_args()
    if args.role != "requester":
        raise SystemExit("the floor has only a requester (no controller, no executor)")
    requester(args)


if __name__ == "__main__":
    main()
