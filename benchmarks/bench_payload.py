"""W3: 1 MiB ``bytes`` echoed by sequential sync FG calls, beside a bare echo of 1 MiB frames.

Servers (Unix sockets in a fresh temp dir, for the whole measurement): daffi's
(``daffi_workers.py server``: controller + node, ``def echo(x)``) and W1's floor
(``floor.py server``). Each round starts a fresh client per row, one after another:

* daffi: a plain sync program calling ``@fetcher def echo(x)`` with the same 1 MiB value;
* the floor through a ``BlockingPortal`` (``sync-portal``) and inside the loop (``async``),
  with ``--payload-bytes``.

Every client compares each answer with what it sent. The rate is MiB/s counting **both
directions** (each call moves 1 MiB out and 1 MiB back); p50/p99 are per call.
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

WORKLOAD = "W3 1 MiB bytes echo, sequential sync FG"
PAYLOAD = 1024 * 1024
UNIT = "MiB/s (both ways)"
_SERVER_START_TIMEOUT = 30.0


def run(settings: Settings) -> list[Measurement]:
    """Measure W3 over a Unix socket; one median measurement per client kind."""
    calls = max(settings.calls // 25, 50)
    warmup = max(settings.warmup // 20, 5)
    timeout = 60 + calls / 5
    with (
        tempfile.TemporaryDirectory(prefix="daffi-bench-") as tmp,
        child_process(python_module("daffi_workers", "server", "--path", tmp)) as daffi_server,
        child_process(
            python_module("floor", "server", "--transport", "unix", "--path", f"{tmp}/floor")
        ) as floor,
    ):
        read_ready_line(daffi_server, _SERVER_START_TIMEOUT)
        read_ready_line(floor, _SERVER_START_TIMEOUT)
        common = [
            "--calls",
            str(calls),
            "--warmup",
            str(warmup),
            "--payload-bytes",
            str(PAYLOAD),
            "--deadline",
            str(timeout - 5),
        ]
        mib_per_call = 2 * PAYLOAD / (1024 * 1024)

        def floor_client(mode: str) -> Client:
            cmd = python_module(
                "floor", "client", "--transport", "unix", "--path", f"{tmp}/floor", "--mode", mode
            )
            cmd += common
            return Client(FLOOR, mode, cmd, UNIT, mib_per_call)

        clients = [
            Client(
                "daffi",
                "sync",
                python_module("daffi_clients", "payload", "--path", tmp) + common,
                UNIT,
                mib_per_call,
            ),
            floor_client("sync-portal"),
            floor_client("async"),
        ]
        return run_rounds(WORKLOAD, "unix", clients, settings.rounds, timeout, "W3")
