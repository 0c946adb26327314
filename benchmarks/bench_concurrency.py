"""W2: 64 calls in flight from one asyncio client, beside a multiplexed bare-anyio floor.

One daffi server (controller + node, ``daffi_workers.py server``) and the floor's server
(``floor_async.py server``) run for the whole measurement, on Unix sockets in a fresh temp
dir. Each round starts, one after another, a fresh client per row:

* daffi, ``async def`` fetcher of the ``async def`` callback ``aecho`` (runs on the loop);
* daffi, ``async def`` fetcher of the ``def`` callback ``echo`` (runs in a worker thread);
* the floor: 64 tasks over one connection, request ids, one reader task, coalesced writes.

Every client runs 64 tasks, each awaiting its call in a loop; calls/s is all calls over the
wall time, p50/p99 are per call (so they include the wait behind the other 63).
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

WORKLOAD = "W2 echo, 64 in flight, async fetcher"
CONCURRENCY = 64
_SERVER_START_TIMEOUT = 30.0


def run(settings: Settings) -> list[Measurement]:
    """Measure W2 over a Unix socket; one median measurement per client kind."""
    calls = settings.calls * 2
    warmup = max(settings.warmup, 2 * CONCURRENCY)
    timeout = 60 + calls / 100  # a client needing more is stuck (it dumps its threads first)
    with (
        tempfile.TemporaryDirectory(prefix="daffi-bench-") as tmp,
        child_process(python_module("daffi_workers", "server", "--path", tmp)) as daffi_server,
        child_process(python_module("floor_async", "server", "--path", f"{tmp}/floor")) as floor,
    ):
        read_ready_line(daffi_server, _SERVER_START_TIMEOUT)
        read_ready_line(floor, _SERVER_START_TIMEOUT)
        common = (
            "--calls",
            str(calls),
            "--warmup",
            str(warmup),
            "--concurrency",
            str(CONCURRENCY),
            "--deadline",
            str(timeout - 5),
        )
        clients = [
            Client(
                "daffi",
                "async cb (aecho)",
                python_module(
                    "daffi_clients", "concurrent", "--path", tmp, "--callback", "aecho", *common
                ),
            ),
            Client(
                "daffi",
                "sync cb (echo, worker thread)",
                python_module(
                    "daffi_clients", "concurrent", "--path", tmp, "--callback", "echo", *common
                ),
            ),
            Client(
                FLOOR,
                "async",
                python_module("floor_async", "concurrent", "--path", f"{tmp}/floor", *common),
            ),
        ]
        return run_rounds(WORKLOAD, "unix", clients, settings.rounds, timeout, "W2")
