"""Listing and cancelling the schedules of another process, with daffi 2's keys and errors.

Run:    python schedules_client.py [ADDRESS]      (see schedules_worker.py)
"""

import sys
import time

from daffi import PERIOD, Global, RemoteCallError

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"

if __name__ == "__main__":
    g = Global(process_name="scheduler", address=ADDRESS)
    g.wait_function("report", timeout=10)

    task = g.call.report() & PERIOD(interval=60)
    g.call.report() & PERIOD(at_time=[time.time() + 60])

    tasks = g.get_scheduled_tasks(remote_process="worker")
    periodic = [t for t in tasks if t["condition"] == "period"]  # as in daffi 2
    print("conditions:", sorted(t["condition"] for t in tasks))
    print("periodic is the task:", [t["uuid"] for t in periodic] == [task.uuid])
    # This process's schedules only (daffi 2 listed no others):
    print("mine:", len([t for t in tasks if t["requester"] == g.process_name]))

    print("cancelled:", g.cancel_scheduled_task_by_uuid("worker", task.uuid))
    print("cancelled again:", g.cancel_scheduled_task_by_uuid("worker", task.uuid))
    try:
        g.cancel_scheduled_task_by_uuid("worker", "no-such-uuid")
    except RemoteCallError as exc:  # also a LookupError
        print("unknown uuid:", type(exc).__name__, isinstance(exc, LookupError))

    g.stop()
