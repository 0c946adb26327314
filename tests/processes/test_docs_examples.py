"""Every program under docs/examples/basics/ runs as real processes and prints what the docs say.

Each test starts a fresh controller (an example server, or ``python -m daffi controller``) on
loopback TCP with a free port or on a Unix socket in a short private directory under /tmp,
runs the example clients against it, compares their whole output, then stops every process
by its PID with SIGINT (Ctrl+C, which the examples handle) and checks that each one exited
cleanly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import Processes, Program, run_to_end

pytestmark = pytest.mark.processes

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "basics"
START_TIMEOUT = 20.0

#: Every example and the test that runs it; test_every_example_is_run keeps this complete.
COVERED = {
    "server.py": "test_server_and_client (and the async apps)",
    "client.py": "test_server_and_client",
    "asyncio_app.py": "test_asyncio_app",
    "trio_app.py": "test_trio_app",
    "class_server.py": "test_class_based_pair",
    "class_client.py": "test_class_based_pair",
    "worker.py": "test_bg_and_broadcast",
    "bg_broadcast.py": "test_bg_and_broadcast",
    "stream_server.py": "test_streams",
    "stream_client.py": "test_streams",
    "stream_async_client.py": "test_streams",
    "several_globals.py": "test_several_globals",
}


def start_server(processes: Processes, filename: str, address: str) -> Program:
    server = processes.example(filename, address)
    server.wait_for_line(rf"^server ready on {re.escape(address)}$", timeout=START_TIMEOUT)
    return server


def controller_argv(address: str) -> list[str]:
    """``python -m daffi controller`` options for ``address``."""
    if address.startswith("tcp://"):
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        return ["--host", host, "--port", port]
    return ["--unix-sock-path", str(Path(address.removeprefix("unix://")).parent)]


def test_every_example_is_run() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(COVERED)


def test_server_and_client(processes: Processes, address: str) -> None:
    server = start_server(processes, "server.py", address)
    client = processes.example("client.py", address)
    assert run_to_end(client) == [
        "add(1, 2) = 3",
        "divide(1, 4) = 0.25",
        "slow_echo: fast",
        "divide(1, 0) raised ZeroDivisionError in server",
        "slow_echo timed out",
        "nobody offers not_offered_anywhere",
        "add(1) raised ArgumentsError",
    ]
    # FG(timeout=0.5) expired on the client: the server's execution was cancelled.
    server.wait_for_line(r"^slow_echo\('late'\) was cancelled by its caller$", timeout=10)
    processes.interrupt(server)


def test_asyncio_app(processes: Processes, address: str) -> None:
    server = start_server(processes, "server.py", address)
    app = processes.example("asyncio_app.py", address)
    assert run_to_end(app) == [
        "add(1, 2) = 3",
        "sums: [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]",
        "slow_echo cancelled after 0.5 s",
        "divide() refused: declare the fetcher `async def` and await it",
    ]
    server.wait_for_line(r"^slow_echo\('never'\) was cancelled by its caller$", timeout=10)
    processes.interrupt(server)


def test_trio_app(processes: Processes, address: str) -> None:
    server = start_server(processes, "server.py", address)
    app = processes.example("trio_app.py", address)
    assert run_to_end(app) == [
        "results: [100, 101, 102, 103, 104]",
        "slow_echo cancelled: True",
        "slow_echo timed out",
        "the server saw a deadline: True",
    ]
    server.wait_for_line(r"^slow_echo\('never'\) was cancelled by its caller$", timeout=10)
    server.wait_for_line(r"^slow_echo\('late'\) was cancelled by its caller$", timeout=10)
    processes.interrupt(server)


def test_class_based_pair(processes: Processes, address: str) -> None:
    server = start_server(processes, "class_server.py", address)
    client = processes.example("class_client.py", address)
    assert run_to_end(client) == [
        "offered: ['add', 'greet', 'mul', 'scale', 'version']",
        "add: 5",
        "mul: 6",
        "percent: [5.0, 10.25]",
        "version: 1.0",
        "total: 10.0",
        "increment: 42",
        "greet: Hello, daffi!",
    ]
    processes.interrupt(server)


def test_bg_and_broadcast(processes: Processes, address: str) -> None:
    controller = processes.start(
        "controller", "-m", "daffi", "controller", *controller_argv(address)
    )
    controller.wait_for_line(
        rf"^daffi controller 'controller' listening on {re.escape(address)}$", timeout=START_TIMEOUT
    )
    workers = [
        processes.example("worker.py", name, address, name=name)
        for name in ("worker-1", "worker-2")
    ]
    for worker in workers:
        worker.wait_for_line(r"ready$", timeout=START_TIMEOUT)
    client = processes.example("bg_broadcast.py", address)
    assert run_to_end(client) == [
        "squares: [0, 1, 4, 9, 16, 25]",
        "all ready: True",
        "on worker-2: 81",
        "whoami: {'worker-1': 'worker-1', 'worker-2': 'worker-2'}",
        "succeeded: {'worker-1': '/data: ok'}",
        "failed: {'worker-2': \"OSError: /data: disk full (raised in process 'worker-2')\"}",
        "note: None",
    ]
    # The fire-and-forget BROADCAST reached both workers.
    for worker in workers:
        worker.wait_for_line(rf"^{worker.name} got note: hello$", timeout=10)
    for worker in workers:
        processes.interrupt(worker)
    processes.interrupt(controller)


STREAM_OUTPUT = [
    "countdown: 3",
    "countdown: 2",
    "countdown: 1",
    "ticks stopped at 3",
    "sent: None",
]


def test_streams(processes: Processes, address: str) -> None:
    server = start_server(processes, "stream_server.py", address)
    client = processes.example("stream_client.py", address)
    assert run_to_end(client) == [
        *STREAM_OUTPUT,
        "server recorded: ['20.5C', '21.0C', '19.5C']",
    ]
    # close() on the iterator stopped the endless remote generator.
    server.wait_for_line(r"^ticker stopped$", timeout=10)

    async_client = processes.example("stream_async_client.py", address)
    assert run_to_end(async_client) == [*STREAM_OUTPUT, "server recorded: ['1.5C', '2.5C']"]
    server.wait_for_line(r"^ticker stopped$", timeout=10)
    processes.interrupt(server)


def test_several_globals(processes: Processes) -> None:
    program = processes.example("several_globals.py")  # a free port of its own choosing
    assert run_to_end(program) == ["through a: 42", "through b: nobody else offers compute"]
