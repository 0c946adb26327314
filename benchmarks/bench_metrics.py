"""The cost of the metrics hook: W1 (sequential sync FG echo over a Unix socket) against a
server without a hook and one counting every run with ``CallbackStats``, in the same run.

Both servers (controller + ``echo`` callback in one process, as in W1) run for the whole
measurement; each round starts one fresh client per server, in turn, so drift of the machine
hits both alike. The ratio of the two is the figure: what a process pays per call for its
metrics.
"""

from __future__ import annotations

import os
import sys
import tempfile

from benchmarks._common import (
    Measurement,
    RoundResult,
    Settings,
    child_process,
    median_measurement,
    python_module,
    read_ready_line,
    run_child,
)

WORKLOAD = "W1 echo, sequential sync FG, metrics hook"
_SERVER_START_TIMEOUT = 30.0
#: (mode label, extra server arguments)
_SERVERS = (("no hook", ()), ("CallbackStats", ("--metrics",)))


def run(settings: Settings) -> list[Measurement]:
    """One median measurement per server: without a hook, and with ``CallbackStats``."""
    with tempfile.TemporaryDirectory(prefix="daffi-bench-") as tmp:
        paths = {label: f"{tmp}/{index}" for index, (label, _) in enumerate(_SERVERS)}
        for path in paths.values():
            os.makedirs(path)
        with (
            child_process(
                python_module(
                    "daffi_echo", "server", "--transport", "unix", "--path", paths["no hook"]
                )
            ) as plain,
            child_process(
                python_module(
                    "daffi_echo",
                    "server",
                    "--transport",
                    "unix",
                    "--path",
                    paths["CallbackStats"],
                    *_SERVERS[1][1],
                )
            ) as counted,
        ):
            read_ready_line(plain, _SERVER_START_TIMEOUT)
            read_ready_line(counted, _SERVER_START_TIMEOUT)
            timeout = 30 + settings.calls / 200
            results: dict[str, list[RoundResult]] = {}
            for round_no in range(1, settings.rounds + 1):
                for label, _ in _SERVERS:
                    cmd = python_module(
                        "daffi_echo",
                        "client",
                        "--transport",
                        "unix",
                        "--path",
                        paths[label],
                        "--calls",
                        str(settings.calls),
                        "--warmup",
                        str(settings.warmup),
                        "--deadline",
                        str(timeout - 5),
                    )
                    result = run_child(cmd, timeout)
                    results.setdefault(label, []).append(result)
                    print(
                        f"  metrics round {round_no}/{settings.rounds} {label:<13} "
                        f"{result.calls_per_s:>9,.0f} calls/s  "
                        f"p50 {result.p50_ns / 1000:>7,.1f} us",
                        file=sys.stderr,
                        flush=True,
                    )
    return [
        median_measurement(rounds, workload=WORKLOAD, transport="unix", library="daffi", mode=label)
        for label, rounds in results.items()
    ]
