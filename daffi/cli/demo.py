"""The scheduling demo: the example of docs/scheduling.md end to end, on a shortened timeline.

``python -m daffi demo`` starts three processes that talk over a Unix socket in a private
temporary directory:

* **controller**: ``Global(init_controller=True, init_node=False)``;
* **scheduler**: offers ``long_running_task1`` and ``long_running_task2`` (the example's
  ``Scheduler`` callback class);
* **client**: schedules ``long_running_task1`` every ``interval`` seconds, sleeps, cancels it,
  then schedules ``long_running_task2`` at two times in the future and stops at once, as the
  example's ``class_based_scheduler_client.py`` does; the schedule outlives the client.

Every line is printed with the seconds since the demo started, so the timeline is visible.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

__all__ = ["main", "run_role"]

INTERVAL = 2.0  # the example uses 5 s
CLIENT_SLEEP = 7.0  # the example sleeps 30 s: task 1 runs at +2, +4, +6, then is cancelled
AT_TIME_OFFSETS = (3.0, 6.0)  # the example uses +10 s and +30 s
ITEM_SECONDS = 0.3  # the example's tasks sleep 1 s per item


def _say(t0: float, role: str, text: str) -> None:
    print(f"[{time.time() - t0:5.1f}s] {role:<10} {text}", flush=True)


def run_role(role: str, sock_dir: str, t0: float) -> None:
    """Run one of the demo's processes (called in a child process)."""
    from daffi import PERIOD, Global
    from daffi.registry import Callback, Fetcher

    if role == "controller":
        g = Global(
            process_name="controller",
            init_controller=True,
            init_node=False,
            unix_sock_path=sock_dir,
        )
        _say(t0, role, "listening")
        g.join()
        return

    if role == "scheduler":

        class Scheduler(Callback):
            auto_init = True

            def long_running_task1(self) -> None:
                _say(t0, role, "Start long running task 1")
                for i in range(1, 3):
                    _say(t0, role, f"Processing item {i}...")
                    time.sleep(ITEM_SECONDS)
                _say(t0, role, "Task 1 complete.")

            def long_running_task2(self) -> None:
                _say(t0, role, "Start long running task 2")
                for i in range(100, 103):
                    _say(t0, role, f"Processing item {i}...")
                    time.sleep(ITEM_SECONDS)
                _say(t0, role, "Task 2 complete.")

        g = Global(process_name="scheduler", unix_sock_path=sock_dir)
        _say(t0, role, "offers long_running_task1, long_running_task2")
        g.join()
        return

    class SchedulerClient(Fetcher):
        exec_modifier = PERIOD(interval=INTERVAL)

        def long_running_task1(self) -> None:
            pass

        def long_running_task2(self) -> None:
            pass

    g = Global(process_name="client", unix_sock_path=sock_dir)
    g.wait_function("long_running_task2", timeout=10)
    client: Any = SchedulerClient()  # fetcher methods return what the modifier gives
    task = client.long_running_task1()
    _say(t0, role, f"scheduled long_running_task1 every {INTERVAL:g} s on {task.receiver!r}")
    listing: list[dict[str, Any]] = g.get_scheduled_tasks(task.receiver)
    _say(
        t0,
        role,
        f"schedules on {task.receiver!r}: "
        + ", ".join(f"{item['func_name']} ({item['kind']})" for item in listing),
    )
    time.sleep(CLIENT_SLEEP)
    _say(t0, role, f"cancel long_running_task1 -> {task.cancel()}")
    now = time.time()
    at_time = [now + offset for offset in AT_TIME_OFFSETS]
    task2 = client.long_running_task2.call(exec_modifier=PERIOD(at_time=at_time))
    offsets = " and ".join(f"+{offset:g} s" for offset in AT_TIME_OFFSETS)
    _say(
        t0,
        role,
        f"scheduled long_running_task2 at {offsets} (uuid {task2.uuid[:8]}); "
        "stopping now: the schedule lives on the scheduler",
    )
    g.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the demo: three processes, the example's timeline, shortened."""
    t0 = time.time()
    sock_dir = tempfile.mkdtemp(prefix="daffi-demo-", dir="/tmp" if os.name != "nt" else None)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs: list[subprocess.Popen[bytes]] = []

    def start(role: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daffi.cli.demo", role, sock_dir, repr(t0)], env=env
        )
        procs.append(proc)
        return proc

    print(
        "daffi scheduling demo: three processes, a controller, a scheduler that runs two "
        "tasks, and a client that asks for them.\n"
        f"The client has task 1 run every {INTERVAL:g} s and cancels it after "
        f"{CLIENT_SLEEP:g} s, then has task 2 run {AT_TIME_OFFSETS[0]:g} s and "
        f"{AT_TIME_OFFSETS[1]:g} s later, and stops at once.",
        flush=True,
    )
    try:
        start("controller")
        start("scheduler")
        client = start("client")
        if client.wait(timeout=60) != 0:
            print("client failed", file=sys.stderr)
            return 1
        # task 2 still has to run twice on the scheduler after the client left
        time.sleep(max(AT_TIME_OFFSETS) + 3 * ITEM_SECONDS + 1.0)
        _say(
            t0,
            "demo",
            "done: task 1 ran every interval until cancelled, task 2 ran at both "
            "times after its requester had stopped",
        )
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for name in os.listdir(sock_dir):
            os.unlink(os.path.join(sock_dir, name))
        os.rmdir(sock_dir)


if __name__ == "__main__":
    run_role(sys.argv[1], sys.argv[2], float(sys.argv[3]))
