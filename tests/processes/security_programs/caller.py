"""Calls ``square(i)`` COUNT times and ``whoami()`` once, in one of three styles.

Usage: caller.py NAME OPTIONS_JSON sync|asyncio|trio COUNT [RECEIVER]

- sync: a plain script calling ``def`` fetchers;
- asyncio: ``Global(...)`` made outside any loop, ``async def`` fetchers awaited in
  ``asyncio.run`` (the caller's loop is not daffi's);
- trio: ``async with Global(...)`` in ``trio.run`` (daffi runs in the app's loop).

With RECEIVER, every call is pinned to that process (``FG(receiver=...)``) after waiting for
it to join; without, the caller waits for ``square`` to be offered. Prints
"RESULT <i> <square(i)>" per call, "WHOAMI <pid>", then "DONE".
"""

from __future__ import annotations

import sys

from _seccli import arguments, say

from daffi import FG, Global
from daffi.decorators import alias, fetcher

WAIT = 10


@fetcher
def square(x): ...


@fetcher
def whoami(): ...


@alias("square")
@fetcher
async def square_async(x): ...


@alias("whoami")
@fetcher
async def whoami_async(): ...


def sync_main(name, options, count, modifier, receiver):
    g = Global(process_name=name, **options)
    if receiver:
        g.wait_process(receiver, timeout=WAIT)
    else:
        g.wait_function("square", timeout=WAIT)
    for i in range(count):
        say("RESULT", i, square.call(i, exec_modifier=modifier))
    say("WHOAMI", whoami.call(exec_modifier=modifier))
    g.stop()


async def async_calls(count, modifier):
    for i in range(count):
        say("RESULT", i, await square_async.call(i, exec_modifier=modifier))
    say("WHOAMI", await whoami_async.call(exec_modifier=modifier))


def asyncio_main(name, options, count, modifier, receiver):
    import asyncio

    g = Global(process_name=name, **options)
    if receiver:
        g.wait_process(receiver, timeout=WAIT)
    else:
        g.wait_function("square", timeout=WAIT)
    asyncio.run(async_calls(count, modifier))
    g.stop()


def trio_main(name, options, count, modifier, receiver):
    import trio

    async def main():
        async with Global(process_name=name, **options) as g:
            if receiver:
                await g.wait_process_async(receiver, timeout=WAIT)
            else:
                await g.wait_function_async("square", timeout=WAIT)
            await async_calls(count, modifier)

    trio.run(main)


STYLES = {"sync": sync_main, "asyncio": asyncio_main, "trio": trio_main}

if __name__ == "__main__":
    name, options, rest = arguments(sys.argv[1:])
    style, count = rest[0], int(rest[1])
    receiver = rest[2] if len(rest) > 2 else None
    STYLES[style](name, options, count, FG(receiver=receiver), receiver)
    say("DONE")
