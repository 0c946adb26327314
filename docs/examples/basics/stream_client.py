"""Streams from a plain script: iterate over a generator callback, and stream items to a
callback with a generator fetcher.

Run:    python stream_client.py [ADDRESS]     (the address stream_server.py listens on)
"""

import sys
from collections.abc import Generator, Iterator

from daffi import Args, Global
from daffi.decorators import alias, fetcher

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:8888"


@fetcher
def countdown(start: int) -> Iterator[int]: ...


@fetcher
def ticker(interval: float) -> Generator[int, None, None]: ...


@alias("record")
@fetcher
def send_readings(values: list[float]) -> Iterator[Args]:
    # A generator fetcher: each item is one call of the remote `record`, in order.
    for value in values:
        yield Args(value, unit="C")


@fetcher
def take_readings() -> list[str]: ...


if __name__ == "__main__":
    g = Global(process_name="stream-client", address=ADDRESS)
    g.wait_function("countdown", timeout=10)

    # Callback -> fetcher: values arrive as the remote generator produces them.
    for n in countdown(3):
        print("countdown:", n)

    # Leaving early: close() stops the remote generator.
    ticks = ticker(0.01)
    for n in ticks:
        if n == 3:
            break
    ticks.close()
    print("ticks stopped at", n)

    # Fetcher -> callback: returns once the server has processed every item.
    print("sent:", send_readings([20.5, 21.0, 19.5]))
    print("server recorded:", take_readings())

    g.stop()
