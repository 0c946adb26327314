"""W4: sequential BROADCAST calls to three nodes (no floor; FG in the same topology for scale).

A controller that offers nothing (``daffi_workers.py controller``) and three worker nodes
(``daffi_workers.py node``, each offering ``def echo(x)``), each its own process, run for the
whole measurement on a Unix socket in a fresh temp dir. Each round starts a fresh client per
row, one after another:

* ``broadcast``: ``echo.call(i, exec_modifier=BROADCAST())``; one call = all three nodes
  answered (the client checks ``{node: i}`` for each);
* ``fg (1 of 3)``: plain FG calls of the same ``echo``, round-robin over the three nodes: what
  one answer costs in this topology (W1 measures the same with the callback inside the
  controller's process, one hop less).

There is no floor: a bare fan-out would be three of W1's floor round trips at once.
"""

from __future__ import annotations

import contextlib
import tempfile

from benchmarks._common import (
    Client,
    Measurement,
    Settings,
    child_process,
    python_module,
    read_ready_line,
    run_rounds,
)

WORKLOAD = "W4 echo to 3 nodes, sequential sync"
NODES = ("bench-node-1", "bench-node-2", "bench-node-3")
_SERVER_START_TIMEOUT = 30.0


def run(settings: Settings) -> list[Measurement]:
    """Measure W4 over a Unix socket; one median measurement per mode."""
    calls = max(settings.calls // 4, 100)
    timeout = 60 + calls / 50
    with tempfile.TemporaryDirectory(prefix="daffi-bench-") as tmp, contextlib.ExitStack() as stack:
        controller = stack.enter_context(
            child_process(python_module("daffi_workers", "controller", "--path", tmp))
        )
        read_ready_line(controller, _SERVER_START_TIMEOUT)
        nodes = [
            stack.enter_context(
                child_process(python_module("daffi_workers", "node", "--path", tmp, "--name", n))
            )
            for n in NODES
        ]
        for node in nodes:
            read_ready_line(node, _SERVER_START_TIMEOUT)

        def client(mode: str) -> Client:
            cmd = python_module(
                "daffi_clients",
                "broadcast",
                "--path",
                tmp,
                "--nodes",
                ",".join(NODES),
                "--mode",
                mode,
                "--calls",
                str(calls),
                "--warmup",
                str(settings.warmup),
                "--deadline",
                str(timeout - 5),
            )
            label = "broadcast (3 answers)" if mode == "broadcast" else "fg (1 of 3, round-robin)"
            return Client("daffi", label, cmd)

        clients = [client("broadcast"), client("fg")]
        return run_rounds(WORKLOAD, "unix", clients, settings.rounds, timeout, "W4")
