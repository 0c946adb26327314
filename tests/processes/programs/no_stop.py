"""Scripts that never call stop(): they must still exit promptly after their last line.

Usage: no_stop.py node|asyncio|trio|controller TRANSPORT...

- node: a sync client that calls ``add`` (server.py must be running).
- asyncio / trio: a daffi 2 style async client that calls ``add``.
- controller: a controller + node that waits until the node "tester" has joined.

The last thing each prints is "LAST LINE <time.time()>".
"""

from __future__ import annotations

import sys
import time

from _cli import transport_options

from daffi import Global
from daffi.decorators import alias, fetcher


@fetcher
def add(a, b): ...


@alias("add")
@fetcher
async def add_async(a, b):
    return a, b


async def async_client(options):
    g = Global(process_name=f"no-stop-{style}", **options)
    await g.wait_function_async("add", timeout=10)
    print("RESULT", await add_async(1, 2))


if __name__ == "__main__":
    style = sys.argv[1]
    options, _ = transport_options(sys.argv[2:])
    if style == "node":
        g = Global(process_name="no-stop-node", **options)
        g.wait_function("add", timeout=10)
        print("RESULT", add(1, 2))
    elif style == "asyncio":
        import asyncio

        asyncio.run(async_client(options))
    elif style == "trio":
        import trio

        trio.run(async_client, options)
    else:
        g = Global(process_name="no-stop-controller", init_controller=True, **options)
        print("READY", flush=True)
        g.wait_process("tester", timeout=15)
    print("LAST LINE", time.time(), flush=True)
