"""A node offering callbacks for the ``daffi`` command's tests.

Usage: worker.py SOCKET_DIR | ADDRESS (scheme://...)
Prints "READY" once connected, then serves until terminated.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import anyio

from daffi import Global
from daffi.decorators import callback


@callback
def add(a: int, b: int) -> int:
    return a + b


@callback
def greet(name: str, *, punctuation: str = "!") -> str:
    return f"Hello, {name}{punctuation}"


@callback
def describe(value: object) -> dict[str, object]:
    return {"type": type(value).__name__, "value": value}


@callback
def fail(reason: str) -> None:
    raise ValueError(reason)


@callback
def countdown(start: int) -> Iterator[int]:
    yield from range(start, 0, -1)


@callback
async def nap(seconds: float) -> None:
    print("NAP", flush=True)
    await anyio.sleep(seconds)


@callback
async def tick() -> None:
    print("TICK", flush=True)


if __name__ == "__main__":
    where = sys.argv[1]
    if "://" in where:
        g = Global(process_name="worker", address=where)
    else:
        g = Global(process_name="worker", unix_sock_path=where)
    print("READY", flush=True)
    g.join()
