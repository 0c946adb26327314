"""An executor node: an async callback to interrupt, a failing one, a counting one."""

import logging
import sys

import anyio

from daffi import Global
from daffi.decorators import callback

logging.basicConfig(level=logging.INFO)


@callback
async def slow_task():
    print("slow_task started", flush=True)
    try:
        await anyio.sleep(30)
        print("slow_task completed", flush=True)
    finally:
        print("slow_task left", flush=True)


@callback
def failing_task():
    print("failing_task ran", flush=True)
    raise ValueError("scheduled failure")


@callback
def tick(label: str):
    print(f"tick {label}", flush=True)


if __name__ == "__main__":
    Global(process_name="executor", unix_sock_path=sys.argv[1]).join()
