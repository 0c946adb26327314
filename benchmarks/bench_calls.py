"""W1: sequential synchronous FG echo calls through a controller, beside the floor.

Per transport (a Unix socket in a fresh temp dir, then TCP on 127.0.0.1) two servers run for
the whole measurement: daffi's (controller + ``echo`` callback) and the floor's (bare anyio +
msgspec echo). Each round starts one fresh client per measurement, in turn, so slow drift of
the machine hits all of them alike: daffi's ``def`` fetcher, the floor through a
``BlockingPortal`` and the floor inside the event loop.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence

from benchmarks._common import (
    FLOOR,
    Measurement,
    RoundResult,
    Settings,
    child_process,
    median_measurement,
    python_module,
    read_ready_line,
    run_child,
)

WORKLOAD = "W1 echo, sequential sync FG"
TRANSPORTS = ("unix", "tcp")
_SERVER_START_TIMEOUT = 30.0
# (library, mode, program): what each round measures.
_CLIENTS = (
    ("daffi", "sync", "daffi_echo"),
    (FLOOR, "sync-portal", "floor"),
    (FLOOR, "async", "floor"),
)


def run(settings: Settings) -> list[Measurement]:
    """Measure W1 over every transport; returns one median measurement per client kind."""
    measurements: list[Measurement] = []
    for transport in TRANSPORTS:
        measurements.extend(_run_transport(transport, settings))
    return measurements


def _run_transport(transport: str, settings: Settings) -> list[Measurement]:
    with (
        tempfile.TemporaryDirectory(prefix="daffi-bench-") as tmp,
        child_process(
            python_module("daffi_echo", "server", "--transport", transport, "--path", tmp)
        ) as daffi_server,
        child_process(
            python_module("floor", "server", "--transport", transport, "--path", f"{tmp}/floor")
        ) as floor_server,
    ):
        where = {
            "daffi_echo": _address_args(read_ready_line(daffi_server, _SERVER_START_TIMEOUT)),
            "floor": _address_args(read_ready_line(floor_server, _SERVER_START_TIMEOUT)),
        }
        # A client that needs more than this is stuck; it dumps its threads and exits first.
        timeout = 30 + settings.calls / 200
        results: dict[tuple[str, str], list[RoundResult]] = {}
        for round_no in range(1, settings.rounds + 1):
            for library, mode, program in _CLIENTS:
                cmd = python_module(
                    program,
                    "client",
                    "--transport",
                    transport,
                    *where[program],
                    "--mode",
                    mode,
                    "--calls",
                    str(settings.calls),
                    "--warmup",
                    str(settings.warmup),
                    "--deadline",
                    str(timeout - 5),
                )
                result = run_child(cmd, timeout)
                results.setdefault((library, mode), []).append(result)
                _progress(transport, round_no, settings.rounds, library, mode, result)
    return [
        median_measurement(
            rounds, workload=WORKLOAD, transport=transport, library=library, mode=mode
        )
        for (library, mode), rounds in results.items()
    ]


def _address_args(info: dict[str, object]) -> Sequence[str]:
    if "port" in info:
        return ("--port", str(info["port"]))
    return ("--path", str(info["path"]))


def _progress(
    transport: str, round_no: int, rounds: int, library: str, mode: str, result: RoundResult
) -> None:
    print(
        f"  W1 {transport:<4} round {round_no}/{rounds} {library:<5} {mode:<11} "
        f"{result.calls_per_s:>9,.0f} calls/s  p50 {result.p50_ns / 1000:>7,.1f} us  "
        f"p99 {result.p99_ns / 1000:>7,.1f} us",
        file=sys.stderr,
        flush=True,
    )
