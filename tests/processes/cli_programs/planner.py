"""Schedules ``tick`` on ``worker`` twice (an interval and a cron schedule), prints
"SCHEDULED <uuid>" for each, and stops: the schedules live on the worker.

Usage: planner.py SOCKET_DIR
"""

from __future__ import annotations

import sys

from daffi import PERIOD, Global
from daffi.decorators import fetcher


@fetcher
def tick() -> None: ...


if __name__ == "__main__":
    with Global(process_name="planner", unix_sock_path=sys.argv[1]) as g:
        g.wait_function("tick", timeout=10)
        for modifier in (
            PERIOD(interval=3600, receiver="worker"),
            PERIOD(cron="0 3 * * *", timezone="Europe/Berlin", receiver="worker"),
        ):
            task = tick.call(exec_modifier=modifier)
            print("SCHEDULED", task.uuid, flush=True)
