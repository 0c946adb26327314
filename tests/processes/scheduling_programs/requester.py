"""Schedules on `executor`, prints the uuids, waits for the failing schedule's error."""

import logging
import sys
import time

from daffi import PERIOD, Global
from daffi.decorators import fetcher

logging.basicConfig(level=logging.INFO)


@fetcher(PERIOD(interval=1))  # the positional form of the seed's interval snippet
def tick(label: str):
    pass


@fetcher
def slow_task():
    pass


@fetcher
def failing_task():
    pass


if __name__ == "__main__":
    g = Global(process_name="requester", unix_sock_path=sys.argv[1])
    g.wait_function("tick", timeout=10)
    ticking = tick("requester")
    slow = slow_task.call(exec_modifier=PERIOD(interval=0.5))
    failing = failing_task.call(exec_modifier=PERIOD(interval=0.5))
    print(f"UUIDS tick={ticking.uuid} slow={slow.uuid} failing={failing.uuid}", flush=True)
    deadline = time.monotonic() + 10
    while failing.last_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"LAST_ERROR {failing.last_error!r}", flush=True)
    print(f"RECEIVER {slow.receiver}", flush=True)
    sys.stdin.readline()  # the test says when to leave
    g.stop()
