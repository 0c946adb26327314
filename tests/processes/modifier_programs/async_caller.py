"""BG futures read from an asyncio app and from a trio app.

Usage: async_caller.py TRANSPORT... asyncio|trio lazy|with TAG

- lazy (daffi 2 style): ``g = Global(...)`` inside ``async def main()``; daffi starts in a
  background thread on the first awaited call.
- with: ``async with Global(...) as g:`` runs daffi in the app's own event loop.

Makes three BG calls pinned to n1 (a sync callback that sleeps 1 s), reads every result with
``await r.get_async()`` twice and with ``await r``, prints "OUTCOME <json>", then "DONE".
"""

from __future__ import annotations

import sys
import time

from _modcli import report, say, transport_options

from daffi import BG, AsyncResult, Global, GlobalContextError
from daffi.decorators import fetcher


@fetcher
async def slow_sync(tag): ...


async def bg_calls(tag, facts):
    started = time.monotonic()
    results = [
        await slow_sync.call(f"{tag}-{i}", exec_modifier=BG(receiver="n1")) for i in range(3)
    ]
    submitted = time.monotonic() - started
    first = [await r.get_async(timeout=10) for r in results]
    elapsed = time.monotonic() - started
    second = [await r.get_async() for r in results]
    awaited = [await r for r in results]
    facts.update(
        is_async_result=all(isinstance(r, AsyncResult) for r in results),
        submitted=submitted,
        elapsed=elapsed,
        values=first,
        same=first == second == awaited,
    )
    return results


async def lazy_main(options, tag):
    facts = {}
    g = Global(process_name=f"{library}-lazy-{tag}", **options)
    await g.wait_function_async("slow_sync", timeout=15)
    await bg_calls(tag, facts)
    g.stop()
    report("OUTCOME", **facts)


async def with_main(options, tag):
    facts = {}
    async with Global(process_name=f"{library}-with-{tag}", **options) as g:
        await g.wait_function_async("slow_sync", timeout=15)
        results = await bg_calls(tag, facts)
        try:
            results[0].get()
        except GlobalContextError:
            facts["blocking_get"] = "GlobalContextError"
        else:
            facts["blocking_get"] = "returned"
    report("OUTCOME", **facts)


if __name__ == "__main__":
    options, (library, style, tag) = transport_options(sys.argv[1:])
    main = lazy_main if style == "lazy" else with_main
    if library == "trio":
        import trio

        trio.run(main, options, tag)
    else:
        import asyncio

        asyncio.run(main(options, tag))
    say("DONE")
