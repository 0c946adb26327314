"""Calls the server's hanging ``def`` callback with short timeouts and gives up on each.

Usage: abandoner.py BACKEND SOCK_DIR [--calls 45] [--timeout 0.3] [--hang 4]

A first wave of as many calls as the server has workers (40) takes every worker and times
out; the rest of the calls come after, when every worker is held by a call whose caller
gave up: the server refuses those at once. Prints
"RESULT <wave> ok=<n> errors=<json {type: count}>" for each wave, then "DONE".
"""

from __future__ import annotations

import json
from collections import Counter

import anyio
from _common import parser, say

from daffi import FG, Global
from daffi.decorators import fetcher
from daffi.registry import CallbackRegistry

WORKERS = 40


@fetcher
async def hang(seconds): ...


async def wave(g: Global, calls: int, timeout: float, seconds: float) -> tuple[int, Counter[str]]:
    ok = 0
    errors: Counter[str] = Counter()

    async def one() -> None:
        nonlocal ok
        try:
            with g.as_current():
                await hang.call(seconds, exec_modifier=FG(timeout=timeout))
        except Exception as exc:
            errors[type(exc).__name__] += 1
        else:
            ok += 1

    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(one)
    return ok, errors


async def main(args) -> None:
    async with Global("abandoner", registry=CallbackRegistry(), unix_sock_path=args.sock_dir) as g:
        await g.wait_function_async("hang", timeout=15)
        first = min(args.calls, WORKERS)
        for name, calls in (("held", first), ("refused", args.calls - first)):
            ok, errors = await wave(g, calls, args.timeout, args.hang)
            say("RESULT", name, f"ok={ok}", f"errors={json.dumps(dict(errors))}")
    say("DONE")


if __name__ == "__main__":
    cli = parser(__doc__)
    cli.add_argument("--calls", type=int, default=45)
    cli.add_argument("--timeout", type=float, default=0.3)
    cli.add_argument("--hang", type=float, default=4.0)
    args = cli.parse_args()
    anyio.run(main, args, backend=args.backend)
