"""A trio application calling server.py: the same fetchers work under trio.

Run:    python trio_app.py [ADDRESS]      (the address server.py listens on)
"""

import sys

import trio

from daffi import FG, Global
from daffi.decorators import fetcher
from daffi.exceptions import TimeoutError

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:8888"


@fetcher
async def add(a: int, b: int) -> int: ...


@fetcher
async def slow_echo(text: str, delay: float) -> str: ...


@fetcher
async def time_left() -> float | None: ...


async def main() -> None:
    async with Global(process_name="trio-app", address=ADDRESS) as g:
        await g.wait_function_async("add", timeout=10)

        results = {}

        async def one(i: int) -> None:
            results[i] = await add(i, 100)

        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(one, i)
        print("results:", [results[i] for i in range(5)])

        # A cancel scope around the call cancels the remote execution when it expires.
        with trio.move_on_after(0.5) as scope:
            await slow_echo("never", 10)
        print("slow_echo cancelled:", scope.cancelled_caught)

        # FG(timeout=...) raises daffi's TimeoutError (also the built-in TimeoutError).
        try:
            await slow_echo.call("late", 10, exec_modifier=FG(timeout=0.5))
        except TimeoutError:
            print("slow_echo timed out")

        # The caller's deadline travels with the call: the callback runs under it.
        with trio.fail_after(30):
            left = await time_left()
        print("the server saw a deadline:", left is not None and 25 < left <= 30)


trio.run(main)
