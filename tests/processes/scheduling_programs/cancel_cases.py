"""What cancel() and cancel_async() return, case by case, from a real requester process.

    python cancel_cases.py SOCK_DIR MODE      (MODE: sync | asyncio | trio)

``sync``: a plain script (``Global(...)``, ``cancel()`` waits for the executor's answer);
``asyncio`` / ``trio``: an ``async with Global(...)`` app, where ``cancel()`` runs on daffi's
loop thread and answers from the handle, and ``await cancel_async()`` asks the executor.
Each result is printed as ``CASE <name> <result>``; before the last case it prints
``KILL_EXECUTOR`` and waits for a line on stdin (the test has killed the executor then).
"""

import logging
import sys
import time

import anyio

from daffi import PERIOD, Global
from daffi.decorators import alias, fetcher

logging.basicConfig(level=logging.INFO)
SOCK_DIR, MODE = sys.argv[1], sys.argv[2]


@fetcher
def tick(label: str):
    pass


@fetcher
@alias("tick")
async def tick_async(label: str):
    pass


def report(name, result):
    print(f"CASE {name} {result!r}", flush=True)


def run_sync():
    g = Global(process_name="canceller", unix_sock_path=SOCK_DIR)
    g.wait_function("tick", timeout=10)
    active = tick.call("c1", exec_modifier=PERIOD(interval=0.1))
    time.sleep(0.3)
    report("active", active.cancel())
    report("again", active.cancel())
    done = tick.call("c2", exec_modifier=PERIOD(at_time=time.time() + 0.2))
    time.sleep(1.5)
    report("finished_at_time", done.cancel())
    orphan = tick.call("c3", exec_modifier=PERIOD(interval=0.1))
    print("KILL_EXECUTOR", flush=True)
    sys.stdin.readline()
    report("executor_gone", orphan.cancel())
    g.stop()


async def run_async():
    async with Global(process_name="canceller", unix_sock_path=SOCK_DIR) as g:
        await g.wait_function_async("tick", timeout=10)
        active = await tick_async.call("c1", exec_modifier=PERIOD(interval=0.1))
        await anyio.sleep(0.3)
        report("active", await active.cancel_async())
        report("again", await active.cancel_async())
        report("again_on_loop_thread", active.cancel())
        other = await tick_async.call("c4", exec_modifier=PERIOD(interval=0.1))
        report("active_on_loop_thread", other.cancel())
        done = await tick_async.call("c2", exec_modifier=PERIOD(at_time=time.time() + 0.2))
        await anyio.sleep(1.5)
        report("finished_at_time", await done.cancel_async())
        report("finished_at_time_on_loop_thread", done.cancel())
        orphan = await tick_async.call("c3", exec_modifier=PERIOD(interval=0.1))
        print("KILL_EXECUTOR", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        report("executor_gone", await orphan.cancel_async())


if __name__ == "__main__":
    if MODE == "sync":
        run_sync()
    else:
        anyio.run(run_async, backend=MODE)
    print("DONE", flush=True)
