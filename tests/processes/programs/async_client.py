"""The same client as an asyncio app and as a trio app, in two styles.

Usage: async_client.py asyncio|trio lazy|with TRANSPORT...

- lazy (daffi 2 style): ``g = Global(...)`` inside ``async def main()``; daffi starts on the
  first awaited call.
- with: ``async with Global(...) as g:`` runs daffi in the app's own event loop.

Prints "RESULT <name> <value>" lines, then "DONE".
"""

from __future__ import annotations

import sys

from _cli import transport_options

from daffi import Global, GlobalContextError
from daffi.decorators import alias, fetcher
from daffi.registry import Fetcher


@fetcher
async def add(a, b): ...


@alias("add")
@fetcher
async def add_one(x):
    return x, 1


@fetcher
async def async_double(x):
    pass


@fetcher
def describe(a): ...


class Calculator(Fetcher):
    async def multiply(self, a, b): ...


async def calls(g):
    await g.wait_function_async("multiply", timeout=10)
    print("RESULT add", await add(1, 2))
    print("RESULT add_one", await add_one(41))
    print("RESULT async_double", await async_double(21))
    print("RESULT multiply", await Calculator().multiply(6, 7))


async def lazy_main(options):
    g = Global(process_name=f"{library}-lazy", **options)
    await calls(g)
    g.stop()


async def with_main(options):
    async with Global(process_name=f"{library}-with", **options) as g:
        await calls(g)
        try:
            describe(1)
        except GlobalContextError as exc:
            print("RESULT blocking_in_loop GlobalContextError", "async" in str(exc))
        else:
            print("RESULT blocking_in_loop returned")
    try:
        await g.wait_function_async("add", timeout=1)
    except GlobalContextError:
        print("RESULT after_with GlobalContextError")
    else:
        print("RESULT after_with still running")


if __name__ == "__main__":
    library, style = sys.argv[1:3]
    options, _ = transport_options(sys.argv[3:])
    main = lazy_main if style == "lazy" else with_main
    if library == "trio":
        import trio

        trio.run(main, options)
    else:
        import asyncio

        asyncio.run(main(options))
    print("DONE")
