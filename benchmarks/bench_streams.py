"""Streams: items/s of 100,000 small ints each way, beside a bare one-way stream.

Servers (Unix sockets in a fresh temp dir, for the whole measurement): daffi's
(``daffi_workers.py server``: controller + node) and the floor's (``floor_async.py
server``). Each round starts a fresh client per row, one after another:

* (a) generator callback -> async consumer: ``def count_up(n)`` yields ``0..n-1`` on the
  server; the client, ``async with Global(...)`` on asyncio, runs
  ``async for x in await count_up(100_000)``. Floor: the server writes 100,000 frames (one
  write each), the client reads them.
* (b) generator fetcher -> callback: a sync client's ``def`` generator fetcher yields
  ``0..n-1``; each item is one call of the server's callback, which appends it to a list:
  ``def sink(x)`` (worker thread) and ``async def asink(x)`` (on the loop). The time ends
  when the fetcher returns (every item processed); the server's report (count and order) is
  checked afterwards. Floor: the client writes 100,000 frames, the server decodes and counts
  them, then answers with the count.

Every client checks it got ``0..n-1`` in order. Only the rate is reported: the whole stream
is timed, not each item. daffi's streams have credit-based flow control (window 64); the
floor relies on the socket buffers alone.
"""

from __future__ import annotations

import tempfile

from benchmarks._common import (
    FLOOR,
    Client,
    Measurement,
    Settings,
    child_process,
    python_module,
    read_ready_line,
    run_rounds,
)

ITEMS = 100_000
DOWNLOAD = "streams (a) generator callback -> async consumer, 100,000 ints"
UPLOAD = "streams (b) generator fetcher -> callback, 100,000 ints"
_SERVER_START_TIMEOUT = 30.0


def run(settings: Settings) -> list[Measurement]:
    """Measure both stream directions; one median measurement per client kind.

    A round streams 100,000 items per row, so there are half as many rounds as W1's (one
    with ``--quick``).
    """
    rounds = max(settings.rounds // 2, 1)
    warmup = max(settings.warmup * 5, 1_000)
    timeout = 240.0
    with (
        tempfile.TemporaryDirectory(prefix="daffi-bench-") as tmp,
        child_process(python_module("daffi_workers", "server", "--path", tmp)) as daffi_server,
        child_process(python_module("floor_async", "server", "--path", f"{tmp}/floor")) as floor,
    ):
        read_ready_line(daffi_server, _SERVER_START_TIMEOUT)
        read_ready_line(floor, _SERVER_START_TIMEOUT)
        sizes = ["--items", str(ITEMS), "--warmup", str(warmup), "--deadline", str(timeout - 5)]

        def client(library: str, mode: str, program: str, role: str, *extra: str) -> Client:
            where = tmp if library != FLOOR else f"{tmp}/floor"
            cmd = python_module(program, role, "--path", where, *extra) + sizes
            return Client(library, mode, cmd, "items/s", latencies=False)

        down = [
            client("daffi", "def generator cb -> async for", "daffi_clients", "download"),
            client(FLOOR, "async", "floor_async", "download"),
        ]
        up = [
            client(
                "daffi",
                "def gen fetcher -> def sink",
                "daffi_clients",
                "upload",
                "--callback",
                "sink",
            ),
            client(
                "daffi",
                "def gen fetcher -> async def asink",
                "daffi_clients",
                "upload",
                "--callback",
                "asink",
            ),
            client(FLOOR, "async", "floor_async", "upload"),
        ]
        return run_rounds(DOWNLOAD, "unix", down, rounds, timeout, "streams a") + run_rounds(
            UPLOAD, "unix", up, rounds, timeout, "streams b"
        )
