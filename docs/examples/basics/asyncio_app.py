"""An asyncio application calling server.py: daffi runs inside the app's own event loop.

Run:    python asyncio_app.py [ADDRESS]      (the address server.py listens on)
"""

import asyncio
import sys

from daffi import Global
from daffi.decorators import fetcher
from daffi.exceptions import GlobalContextError

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:8888"


@fetcher
async def add(a: int, b: int) -> int: ...


@fetcher
async def slow_echo(text: str, delay: float) -> str: ...


@fetcher
def divide(a: float, b: float) -> float: ...  # a `def` fetcher: it blocks


async def main() -> None:
    async with Global(process_name="asyncio-app", address=ADDRESS) as g:
        await g.wait_function_async("add", timeout=10)
        print("add(1, 2) =", await add(1, 2))

        # Calls run concurrently: the ten calls are in flight at once.
        sums = await asyncio.gather(*(add(i, i) for i in range(10)))
        print("sums:", sums)

        # Cancelling the awaiting task cancels the remote call too.
        try:
            await asyncio.wait_for(slow_echo("never", 10), timeout=0.5)
        except asyncio.TimeoutError:
            print("slow_echo cancelled after 0.5 s")

        # Blocking calls would freeze this loop: daffi refuses them here.
        try:
            divide(1, 2)
        except GlobalContextError:
            print("divide() refused: declare the fetcher `async def` and await it")
    # Leaving the block stopped daffi: it said goodbye to the controller.


asyncio.run(main())
