"""An asyncio or trio app running daffi in its own loop, stopped by Ctrl+C.

Usage: interrupted_app.py asyncio|trio TRANSPORT...
Prints "READY" inside ``async with Global(...)``, then waits; on Ctrl+C (SIGINT) the block
is left by a cancellation (asyncio) or by KeyboardInterrupt (trio); prints "INTERRUPTED".
"""

from __future__ import annotations

import sys

import anyio
from _cli import transport_options

from daffi import Global
from daffi.registry import CallbackRegistry


async def main(options):
    async with Global("ctrl-c-app", registry=CallbackRegistry(), **options):
        print("READY", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    library = sys.argv[1]
    options, _ = transport_options(sys.argv[2:])
    try:
        if library == "asyncio":
            import asyncio

            asyncio.run(main(options))
        else:
            import trio

            trio.run(main, options)
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
