"""A daffi 2 style worker node.

Usage: worker.py ADDRESS... NAME MODE   (MODE: join, asyncio or trio; see _d2.serve)

Offers the callbacks the callers of issue 16's tests call by name (``g.call.<name>``). Prints
"READY NAME" when its Global is made, and an "ADD a b" / "MARK tag" / "TICK tag n" line for
every run of those callbacks, so tests can see which calls reached it.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict

from _d2 import address, say, serve

from daffi import BG, FG, Global, callback, fetcher, get_g
from daffi.decorators import alias

NAME = ""
RUNS: Counter[str] = Counter()
COLLECTED: defaultdict[str, list[object]] = defaultdict(list)


@callback
def add(a, b):
    say("ADD", a, b)
    return a + b


@callback
def mark(tag):
    say("MARK", tag)
    return tag


@callback
def whoami():
    return NAME


@callback
def numbers(n):
    """A generator callback: under FG the caller gets its items."""
    yield from range(n)


@callback
def tick(tag):
    """Scheduled by the PERIOD tests: counts its runs per tag."""
    RUNS[tag] += 1
    say("TICK", tag, RUNS[tag])


@callback
def runs(tag):
    return RUNS[tag]


@callback
def collect(tag, item):
    """Fed by ``g.call.collect(items).stream()``: one call per item."""
    COLLECTED[tag].append(item)


@callback
def collected(tag):
    return COLLECTED[tag]


# ---------------------------------------------------------------- item 5: async callbacks


@alias("add")
@fetcher
def add_blocking(a, b):
    """A daffi 2 `def` fetcher: blocks until the result comes back."""


@alias("add")
@fetcher
async def add_async(a, b):
    """Its async twin."""


@callback
async def async_uses_def_fetcher():
    return add_blocking(1, 2)


@callback
async def async_uses_call_fg():
    return get_g().call.add(1, 2) & FG


@callback
async def async_uses_async_fetcher():
    return await add_async(1, 2)


@callback
async def async_uses_fg_async():
    return await get_g().call.add(1, 2).fg_async()


@callback
async def async_uses_bg():
    fut = get_g().call.add(1, 2) & BG(timeout=10)
    return await fut.get_async()


if __name__ == "__main__":
    options, rest = address(sys.argv[1:])
    NAME, mode = rest
    serve(mode, lambda: Global(process_name=NAME, **options))
