"""The streams of stream_client.py from an async application (asyncio here; trio works too).

Run:    python stream_async_client.py [ADDRESS]     (the address stream_server.py listens on)
"""

import sys
from collections.abc import AsyncGenerator, AsyncIterator

import anyio

from daffi import Global
from daffi.decorators import alias, fetcher

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:8888"


@fetcher
async def countdown(start: int) -> AsyncIterator[int]: ...


@fetcher
async def ticker(interval: float) -> AsyncGenerator[int, None]: ...


@alias("record")
@fetcher
async def send_readings(values: list[float]) -> AsyncIterator[float]:
    for value in values:
        yield value  # a single value is sent as the one positional argument
        await anyio.sleep(0)


@fetcher
async def take_readings() -> list[str]: ...


async def main() -> None:
    async with Global(process_name="stream-async-client", address=ADDRESS) as g:
        await g.wait_function_async("countdown", timeout=10)

        async for n in await countdown(3):
            print("countdown:", n)

        ticks = await ticker(0.01)
        async for n in ticks:
            if n == 3:
                break
        await ticks.aclose()  # stops the remote generator
        print("ticks stopped at", n)

        # A generator fetcher is typed as what it declares (its items); awaiting its call
        # gives the callback's result, which type checkers cannot know.
        print("sent:", await send_readings([1.5, 2.5]))  # type: ignore[misc]
        print("server recorded:", await take_readings())


anyio.run(main)
