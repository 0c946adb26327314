"""daffi 2 style async apps: ``g = Global(...)`` inside ``async def main()``, no ``async with``.

Usage: app.py LIBRARY SCENARIO ADDRESS...   (LIBRARY: asyncio or trio)

- controller: ``Global(init_controller=True, host=...)`` with no port; prints "PORT <n>"
  before awaiting anything, waits for worker "w1" to join on that port, calls its ``add``.
- blocking: right after the constructor, blocking ``g.wait_process("w1")`` and
  ``g.call.add(1, 2) & FG`` from inside ``main()``.
- node: a node ("app-node") kept running by ``await g.join_async()``; its ``async def``
  callback ``app_work`` sleeps and opens a nursery (task group) of the app's library.
- node_blocking: the same node, but ``main()`` first makes a blocking daffi call.

Prints "RESULT <key> <json>" lines and "DONE" (except the nodes, which run until stopped).
"""

from __future__ import annotations

import sys

from _d2 import address, result, say

from daffi import FG, Global, callback

LIBRARY = sys.argv[1]


@callback
async def app_work(x):
    """As daffi 2's trio test template: sleeps and runs a child task of the app's library."""
    if LIBRARY == "trio":
        import trio

        await trio.sleep(0.01)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 0.01)
    else:
        import asyncio

        await asyncio.sleep(0.01)
        async with asyncio.TaskGroup() as group:
            group.create_task(asyncio.sleep(0.01))
    return "Ok"


async def controller(options):
    g = Global(process_name="app", init_controller=True, host=options["host"])
    say("PORT", g.port)  # before awaiting anything
    await g.wait_process_async("w1", timeout=20)
    result("add", await g.call.add(1, 2).fg_async())
    await g.stop_async()


async def blocking(options):
    g = Global(process_name="app", **options)
    g.wait_process("w1", timeout=20)
    result("add", g.call.add(1, 2) & FG)
    result("add_timeout", g.call.add(2, 3) & FG(timeout=5))
    g.stop()


async def node(options):
    g = Global(process_name="app-node", **options)
    say("READY app-node")
    await g.join_async()


async def node_blocking(options):
    g = Global(process_name="app-node", **options)
    g.wait_process("app-node", timeout=20)  # blocking: the core starts in a thread
    say("READY app-node")
    await g.join_async()


SCENARIOS = {
    "controller": controller,
    "blocking": blocking,
    "node": node,
    "node_blocking": node_blocking,
}

if __name__ == "__main__":
    scenario = sys.argv[2]
    options, _ = address(sys.argv[3:])
    if LIBRARY == "trio":
        import trio

        trio.run(SCENARIOS[scenario], options)
    else:
        import asyncio

        asyncio.run(SCENARIOS[scenario](options))
    print("DONE", flush=True)
