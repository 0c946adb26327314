"""NATS mode beside controller mode, in one run: W1, W2 and W4, and calls/s as nodes are added.

Controller mode runs as in the other benchmarks (a controller on a Unix socket in a fresh temp
dir). NATS mode runs the same programs with ``--path nats://127.0.0.1:PORT`` (one
``nats-server`` on a free loopback port, started here and stopped by its PID). Each round
runs the controller client, then the NATS client, so drift of the machine hits both alike.

- **W1**: sequential sync ``FG`` echo (``daffi_echo``: the callback beside the controller, in
  controller mode; a node of its own on NATS).
- **W2**: 64 calls in flight from an ``async with`` Global, to an ``async def`` callback.
- **W4**: ``BROADCAST`` to three nodes, sequential sync.
- **Scaling**: W2's client (64 in flight, ``echo``) against 1, 4, 16 and 64 worker nodes,
  each a process of its own; its calls spread round-robin over them.

Needs nats-server (``apt-get install nats-server``) and nats-py (the ``nats`` extra); without
them the rows say so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

from benchmarks._common import (
    Client,
    Measurement,
    Settings,
    child_process,
    is_quick,
    python_module,
    read_ready_line,
    run_rounds,
)

_START_TIMEOUT = 60.0
CONCURRENCY = 64
SCALING_NODES = (1, 4, 16, 64)
W4_NODES = ("bench-node-1", "bench-node-2", "bench-node-3")


@contextlib.contextmanager
def nats_server() -> Iterator[str]:
    """A nats-server on a free loopback port; yields its daffi address."""
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    if binary is None:
        raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("nats-server did not start")
            time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run(settings: Settings) -> list[Measurement]:
    """W1, W2, W4 and scaling, each in controller mode and in NATS mode."""
    try:
        import nats  # noqa: F401
    except ImportError:
        print("  nats: skipped, nats-py is not installed (pip install '.[nats]')", file=sys.stderr)
        return []
    with tempfile.TemporaryDirectory(prefix="daffi-bench-") as tmp, nats_server() as address:
        where = {"controller": tmp, "nats": address}
        measurements = _w1(settings, where)
        measurements += _w2(settings, where)
        measurements += _w4(settings, where)
        measurements += _scaling(settings, tmp, address)
    return measurements


def _w1(settings: Settings, where: dict[str, str]) -> list[Measurement]:
    timeout = 30 + settings.calls / 100
    with contextlib.ExitStack() as stack:
        for path in where.values():
            server = stack.enter_context(
                child_process(
                    python_module("daffi_echo", "server", "--transport", "unix", "--path", path)
                )
            )
            read_ready_line(server, _START_TIMEOUT)
        clients = [
            Client(
                "daffi",
                f"{mode}: sync FG echo",
                python_module(
                    "daffi_echo",
                    "client",
                    "--transport",
                    "unix",
                    "--path",
                    path,
                    "--calls",
                    str(settings.calls),
                    "--warmup",
                    str(settings.warmup),
                    "--deadline",
                    str(timeout - 5),
                ),
            )
            for mode, path in where.items()
        ]
        return run_rounds(
            "W1 echo, sequential sync FG", "unix|nats", clients, settings.rounds, timeout, "W1"
        )


def _concurrent(path: str, calls: int, warmup: int, callback: str, timeout: float) -> list[str]:
    return python_module(
        "daffi_clients",
        "concurrent",
        "--path",
        path,
        "--callback",
        callback,
        "--calls",
        str(calls),
        "--warmup",
        str(warmup),
        "--concurrency",
        str(CONCURRENCY),
        "--deadline",
        str(timeout - 5),
    )


def _w2(settings: Settings, where: dict[str, str]) -> list[Measurement]:
    calls = settings.calls * 2
    warmup = max(settings.warmup, 2 * CONCURRENCY)
    timeout = 60 + calls / 50
    with contextlib.ExitStack() as stack:
        for path in where.values():
            server = stack.enter_context(
                child_process(python_module("daffi_workers", "server", "--path", path))
            )
            read_ready_line(server, _START_TIMEOUT)
        clients = [
            Client(
                "daffi",
                f"{mode}: 64 in flight, aecho",
                _concurrent(p, calls, warmup, "aecho", timeout),
            )
            for mode, p in where.items()
        ]
        return run_rounds(
            "W2 64 calls in flight (async API)",
            "unix|nats",
            clients,
            settings.rounds,
            timeout,
            "W2",
        )


def _nodes(
    stack: contextlib.ExitStack, path: str, names: Sequence[str], *, controller: bool
) -> None:
    """Start a controller (controller mode) and a worker node per name, each offering echo."""
    if controller:
        ctrl = python_module("daffi_workers", "controller", "--path", path)
        read_ready_line(stack.enter_context(child_process(ctrl)), _START_TIMEOUT)
    nodes = [
        stack.enter_context(
            child_process(python_module("daffi_workers", "node", "--path", path, "--name", name))
        )
        for name in names
    ]
    for node in nodes:
        read_ready_line(node, _START_TIMEOUT)


def _w4(settings: Settings, where: dict[str, str]) -> list[Measurement]:
    calls = max(settings.calls // 4, 100)
    timeout = 60 + calls / 20
    with contextlib.ExitStack() as stack:
        for mode, path in where.items():
            _nodes(stack, path, [f"{n}-{mode}" for n in W4_NODES], controller=mode == "controller")
        clients = [
            Client(
                "daffi",
                f"{mode}: broadcast to 3",
                python_module(
                    "daffi_clients",
                    "broadcast",
                    "--path",
                    path,
                    "--nodes",
                    ",".join(f"{n}-{mode}" for n in W4_NODES),
                    "--calls",
                    str(calls),
                    "--warmup",
                    str(settings.warmup),
                    "--deadline",
                    str(timeout - 5),
                ),
            )
            for mode, path in where.items()
        ]
        return run_rounds(
            "W4 echo to 3 nodes, sequential sync",
            "unix|nats",
            clients,
            settings.rounds,
            timeout,
            "W4",
        )


def _scaling(settings: Settings, tmp: str, address: str) -> list[Measurement]:
    calls = settings.calls * 2
    warmup = max(settings.warmup, 2 * CONCURRENCY)
    timeout = 120 + calls / 20
    sizes = SCALING_NODES[:3] if is_quick(settings) else SCALING_NODES
    measurements: list[Measurement] = []
    for count in sizes:
        for mode, path in (
            ("controller", f"{tmp}/scale-{count}"),
            ("nats", f"{address}/scale{count}"),
        ):
            if mode == "controller":
                os.makedirs(path, exist_ok=True)
            with contextlib.ExitStack() as stack:
                names = [f"scale-{mode}-{i}" for i in range(count)]
                _nodes(stack, path, names, controller=mode == "controller")
                client = Client(
                    "daffi",
                    f"{mode}: {count} nodes, 64 in flight",
                    _concurrent(path, calls, warmup, "echo", timeout),
                )
                measurements += run_rounds(
                    f"Scaling: echo over {count} worker nodes",
                    "unix" if mode == "controller" else "nats",
                    [client],
                    1,
                    timeout,
                    "scale",
                )
    return measurements
