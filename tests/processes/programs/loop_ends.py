"""A daffi 2 style async app whose loop ends without stopping its Global.

Usage: loop_ends.py asyncio|trio TRANSPORT...
``g = Global(...)`` inside ``async def main()``; prints "READY <library the core runs on>"
once connected, then returns from ``main`` without ``stop()``; prints
"LAST LINE <time.time()>" after the loop has ended.
"""

from __future__ import annotations

import sys
import time

import sniffio
from _cli import transport_options

from daffi import Global
from daffi.registry import CallbackRegistry


async def main(options):
    g = Global("loop-ends-app", registry=CallbackRegistry(), **options)
    await g.wait_process_async("loop-ends-app", timeout=10)
    print("READY", sniffio.current_async_library(), flush=True)


if __name__ == "__main__":
    library = sys.argv[1]
    options, _ = transport_options(sys.argv[2:])
    if library == "asyncio":
        import asyncio

        asyncio.run(main(options))
    else:
        import trio

        trio.run(main, options)
    print("LAST LINE", time.time(), flush=True)
