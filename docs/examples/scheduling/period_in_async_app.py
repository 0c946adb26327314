"""An asyncio app that schedules a remote callback with PERIOD, then cancels it.

To stay self-contained the example runs two Globals in one process, on loopback TCP:
"worker" runs the controller and offers `heartbeat`; "app" asks the worker to run it every
200 ms, lists the schedule and cancels it after three beats. In a real deployment the two
are separate processes; the code of each side is the same.

Run it with:  python period_in_async_app.py
"""

import asyncio

from daffi import PERIOD, Global
from daffi.decorators import alias, callback, fetcher

beats = 0
three_beats = asyncio.Event()


@callback
async def heartbeat(source: str) -> None:
    """Runs on the worker, once per tick of the schedule."""
    global beats
    beats += 1
    print(f"heartbeat {beats} from {source}")
    if beats == 3:
        three_beats.set()


@alias("heartbeat")
@fetcher
async def send_heartbeat(source: str) -> None:
    """Proxy for the remote `heartbeat` (the body never runs)."""


async def main() -> None:
    async with Global("worker", init_controller=True, host="127.0.0.1") as worker:
        async with Global("app", host="127.0.0.1", port=worker.port) as app:
            await app.wait_function_async("heartbeat", timeout=10)

            # Returns once the worker has accepted the schedule; the runs happen there.
            task = await send_heartbeat.call(
                "app", exec_modifier=PERIOD(interval="200ms", receiver="worker")
            )
            print(f"scheduled {task.func_name} on {task.receiver}")

            await three_beats.wait()
            for info in await app.get_scheduled_tasks_async("worker"):
                print(f"listed: {info['func_name']} ({info['kind']}, every {info['interval']} s)")

            # Stops the schedule on the worker; an async run in progress is interrupted.
            print("cancelled:", await task.cancel_async())
            print("cancelled again:", await task.cancel_async())


if __name__ == "__main__":
    asyncio.run(main())
