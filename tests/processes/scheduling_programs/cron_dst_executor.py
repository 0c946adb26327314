"""A node that schedules cron jobs on itself and prints every run, for a fake clock.

Usage: cron_dst_executor.py --backend asyncio|trio --sock-dir DIR --until POSIX
       --cron EXPR [--cron EXPR ...] [--timezone ZONE] [--speed N]

Meant to run under ``faketime`` (tests/processes/test_cron_dst.py starts it a little before
a daylight saving transition, with the clock sped up). The process is its own controller
and executor: it asks itself, through the public API (a ``@fetcher`` of the callback's name
called with ``PERIOD(cron=..., timezone=..., receiver="exec")``), to run ``record(expr)`` on
each cron expression, then lives until the clock reaches ``--until``.

``--speed`` is how much faster than real time the fake clock runs. daffi's liveness limits
(heartbeats, frame and connect timeouts) are multiplied by it, so that they stay their
defaults in real seconds: at x120 an unscaled heartbeat limit (15 s) would be 125 ms of
real time, and a loaded machine would make the node and controller drop each other.

Prints, one line each:

* ``READY {"zone": ..., "now": ..., "tasks": [...]}``: the host's zone as ``time`` sees it
  (``TZ``), the clock when every schedule was accepted, and the tasks' uuids;
* ``RUN {"cron": expr, "at": time.time()}``: a run of the schedule of ``expr``;
* ``DONE {"listing": [...]}``: the executor's listing when ``--until`` is reached, then exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time

from daffi import PERIOD, Global
from daffi.decorators import alias, callback, fetcher

logging.basicConfig(level=logging.INFO)

_print_lock = threading.Lock()


def say(tag: str, payload: object) -> None:
    """One whole line (runs may print from worker threads)."""
    with _print_lock:
        sys.stdout.write(f"{tag} {json.dumps(payload, default=str)}\n")
        sys.stdout.flush()


@callback
def record(expr: str) -> None:
    say("RUN", {"cron": expr, "at": time.time()})


@alias("record")
@fetcher
def schedule_record(expr: str) -> None:
    """Proxy for ``record`` (the body never runs)."""


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--backend", choices=["asyncio", "trio"], required=True)
    cli.add_argument("--sock-dir", required=True, help="directory of the Unix socket")
    cli.add_argument("--until", type=float, required=True, help="POSIX time to stop at")
    cli.add_argument("--cron", action="append", required=True)
    cli.add_argument("--timezone", default="Europe/Berlin")
    cli.add_argument("--speed", type=float, default=1.0, help="the fake clock's speed-up")
    args = cli.parse_args()

    g = Global(
        process_name="exec",
        init_controller=True,
        unix_sock_path=args.sock_dir,
        backend=args.backend,
        heartbeat_interval=5.0 * args.speed,
        frame_timeout=60.0 * args.speed,
        connect_timeout=30.0 * args.speed,
    )
    tasks = [
        schedule_record.call(
            expr, exec_modifier=PERIOD(cron=expr, timezone=args.timezone, receiver="exec")
        )
        for expr in args.cron
    ]
    say(
        "READY",
        {
            "zone": time.strftime("%Z"),
            "now": time.time(),
            "tasks": [task.uuid for task in tasks],
        },
    )
    # The fake clock runs fast; poll it rather than trust one long sleep.
    while time.time() < args.until:
        time.sleep(min(max(args.until - time.time(), 0.0), 5.0))
    listing = g.get_scheduled_tasks("exec")
    say("DONE", {"listing": listing})
    g.stop()


if __name__ == "__main__":
    main()
