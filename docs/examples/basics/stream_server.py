"""Streams in both directions: generator callbacks send values back, and a callback
receives one invocation per item of a generator fetcher.

Run:    python stream_server.py [ADDRESS]
        then stream_client.py or stream_async_client.py with the same ADDRESS.
"""

import sys

import anyio

from collections.abc import AsyncIterator, Iterator

from daffi import Global
from daffi.decorators import callback

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:8888"


@callback
def countdown(start: int) -> Iterator[int]:
    """A generator callback: the caller iterates over its values as they come."""
    yield from range(start, 0, -1)


@callback
async def ticker(interval: float) -> AsyncIterator[int]:
    """An endless async generator: it runs until the caller stops iterating."""
    n = 0
    try:
        while True:
            yield n
            n += 1
            await anyio.sleep(interval)
    finally:
        print("ticker stopped", flush=True)


readings: list[str] = []


@callback
def record(value: float, unit: str = "C") -> None:
    """Called once per item a generator fetcher yields, in order."""
    readings.append(f"{value}{unit}")


@callback
def take_readings() -> list[str]:
    taken = readings[:]
    readings.clear()
    return taken


if __name__ == "__main__":
    g = Global(process_name="stream-server", init_controller=True, address=ADDRESS)
    print(f"server ready on {g.address}", flush=True)
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
