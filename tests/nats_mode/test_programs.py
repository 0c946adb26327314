"""The documented programs pass with ``address="nats://..."``: over one nats-server, and over
a three-server cluster with the processes of one program attached to different servers, so
that every call crosses a route between servers.

The programs are the ones users read: the README's first program (taken from README.md, with
only ``host="127.0.0.1", port=8888`` replaced by the address), the examples of
docs/examples/basics (they take the address as an argument) and the seed's scheduling
programs (in test_seed_programs.py).
Each test checks what the controller-mode test of the same program checks
(tests/processes/test_docs_examples.py, noxfile.py's ``install`` session,
tests/processes/test_seed_scheduling.py); no daffi controller runs here.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from ._programs import (
    EXAMPLES,
    JOINED,
    README,
    START_TIMEOUT,
    Fabric,
    Program,
    Programs,
    one_server,
    with_address,
)
from ._servers import NatsServer

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]

# ------------------------------------------------------------------ the README's first program

README_PROGRAM = re.compile(r"`(server|client)\.py`:\n\n```python\n(.*?)```", re.DOTALL)
README_ASYNC_APP = re.compile(
    r"In an asyncio or trio application:\n\n```python\n(.*?)```", re.DOTALL
)
README_ADDRESS = 'host="127.0.0.1", port=8888'
ON_TRIO = 'anyio.run(main)  # or anyio.run(main, backend="trio")'


def readme_programs() -> dict[str, str]:
    """The README's ``server.py``, ``client.py`` and async app (on asyncio), as shown."""
    readme = README.read_text(encoding="utf-8")
    programs = dict(README_PROGRAM.findall(readme))
    assert set(programs) == {"server", "client"}, "README.md lost its first program"
    app = README_ASYNC_APP.search(readme)
    assert app is not None, "README.md lost its async example"
    assert ON_TRIO in app.group(1), f"README.md's async example no longer ends with {ON_TRIO!r}"
    programs["app"] = app.group(1)
    return programs


def start_readme_server(programs: Programs, fabric: Fabric, tmp_path: Path) -> Program:
    """The README's server.py on the first server; returns once it has joined."""
    source = with_address(readme_programs()["server"], README_ADDRESS, fabric.address(0))
    (tmp_path / "server.py").write_text(source, encoding="utf-8")
    # The README's server prints nothing: daffi's INFO log says when it has joined.
    server = programs.start("server", tmp_path / "server.py", env={"DAFFI_LOG_LEVEL": "INFO"})
    server.wait_for(JOINED, timeout=START_TIMEOUT)
    return server


def test_readme_first_program(programs: Programs, fabric: Fabric, tmp_path: Path) -> None:
    server = start_readme_server(programs, fabric, tmp_path)
    source = with_address(readme_programs()["client"], README_ADDRESS, fabric.address(1))
    (tmp_path / "client.py").write_text(source, encoding="utf-8")
    client = programs.start("client", tmp_path / "client.py")
    assert client.run_to_end() == ["3"]
    assert server.popen.poll() is None, server.describe()


def test_readme_first_program_with_a_server_paused_while_the_client_joins(
    programs: Programs, nats_server: NatsServer, tmp_path: Path
) -> None:
    """A documented difference from controller mode (docs/scaling.md): a node joining over
    NATS learns who is there from the answers that come within its settling time. A server
    that cannot answer then (paused here with SIGSTOP, by PID, as a long pause or a starved
    CPU would hold it) is missing from the client's directory: the README client, which calls
    at once, fails with UnableToFindCandidate. Once the server runs again, the same client
    prints 3."""
    fabric = one_server(nats_server)
    server = start_readme_server(programs, fabric, tmp_path)
    source = with_address(readme_programs()["client"], README_ADDRESS, fabric.address(1))
    (tmp_path / "client.py").write_text(source, encoding="utf-8")
    os.kill(server.pid, signal.SIGSTOP)
    try:
        client = programs.start("client", tmp_path / "client.py", env={"DAFFI_LOG_LEVEL": "INFO"})
        assert client.wait_exit(START_TIMEOUT) != 0, client.describe()
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert "UnableToFindCandidate" in client.stderr(), client.describe()
    again = programs.start("client-again", tmp_path / "client.py")
    assert again.run_to_end() == ["3"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_readme_async_app(programs: Programs, fabric: Fabric, tmp_path: Path, backend: str) -> None:
    start_readme_server(programs, fabric, tmp_path)
    source = with_address(readme_programs()["app"], README_ADDRESS, fabric.address(1))
    if backend == "trio":  # as the README's comment says
        source = source.replace(ON_TRIO, 'anyio.run(main, backend="trio")')
    (tmp_path / "app.py").write_text(source, encoding="utf-8")
    app = programs.start("app", tmp_path / "app.py")
    # The app joins and calls at once; the README's server was there before it.
    assert app.run_to_end() == ["3"]


# ------------------------------------------------------------------ docs/examples/basics

#: Every example and the test that runs it over NATS; test_every_example_is_covered keeps
#: this complete.
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
}
#: Examples that take no address (they run a controller of their own on a free port).
NO_ADDRESS = {"several_globals.py"}


def test_every_example_is_covered() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(
        COVERED.keys() | NO_ADDRESS
    )
    for name in NO_ADDRESS:
        assert "ADDRESS" not in (EXAMPLES / name).read_text(encoding="utf-8")


def example(programs: Programs, filename: str, *args: str, name: str | None = None) -> Program:
    return programs.start(name or Path(filename).stem, EXAMPLES / filename, *args)


def start_example_server(programs: Programs, filename: str, address: str) -> Program:
    """A server example; its ``init_controller=True`` runs a node: NATS routes the calls."""
    server = example(programs, filename, address)
    # g.address shows the subject namespace, "daffi" unless the address names one
    server.wait_for_line(rf"^server ready on {re.escape(address)}/daffi$", timeout=START_TIMEOUT)
    return server


def test_server_and_client(programs: Programs, fabric: Fabric) -> None:
    server = start_example_server(programs, "server.py", fabric.address(0))
    client = example(programs, "client.py", fabric.address(1))
    assert client.run_to_end() == [
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
    server.interrupt()


def test_asyncio_app(programs: Programs, fabric: Fabric) -> None:
    server = start_example_server(programs, "server.py", fabric.address(0))
    app = example(programs, "asyncio_app.py", fabric.address(1))
    assert app.run_to_end() == [
        "add(1, 2) = 3",
        "sums: [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]",
        "slow_echo cancelled after 0.5 s",
        "divide() refused: declare the fetcher `async def` and await it",
    ]
    server.wait_for_line(r"^slow_echo\('never'\) was cancelled by its caller$", timeout=10)
    server.interrupt()


def test_trio_app(programs: Programs, fabric: Fabric) -> None:
    server = start_example_server(programs, "server.py", fabric.address(0))
    app = example(programs, "trio_app.py", fabric.address(1))
    assert app.run_to_end() == [
        "results: [100, 101, 102, 103, 104]",
        "slow_echo cancelled: True",
        "slow_echo timed out",
        "the server saw a deadline: True",
    ]
    server.wait_for_line(r"^slow_echo\('never'\) was cancelled by its caller$", timeout=10)
    server.wait_for_line(r"^slow_echo\('late'\) was cancelled by its caller$", timeout=10)
    server.interrupt()


def test_class_based_pair(programs: Programs, fabric: Fabric) -> None:
    server = start_example_server(programs, "class_server.py", fabric.address(0))
    client = example(programs, "class_client.py", fabric.address(1))
    assert client.run_to_end() == [
        "offered: ['add', 'greet', 'mul', 'scale', 'version']",
        "add: 5",
        "mul: 6",
        "percent: [5.0, 10.25]",
        "version: 1.0",
        "total: 10.0",
        "increment: 42",
        "greet: Hello, daffi!",
    ]
    server.interrupt()


def test_bg_and_broadcast(programs: Programs, fabric: Fabric) -> None:
    # No controller: the workers and the client only join NATS (worker-1 on A, worker-2
    # on C, the client on B in the cluster).
    workers = [
        example(programs, "worker.py", name, fabric.address(index), name=name)
        for index, name in enumerate(("worker-1", "worker-2"))
    ]
    for worker in workers:
        worker.wait_for_line(r"ready$", timeout=START_TIMEOUT)
    expected = [2] if fabric.kind == "one server" else [1, 1, 0]
    assert fabric.connections() == expected  # one connection per node, where it attached
    client = example(programs, "bg_broadcast.py", fabric.address(2))
    assert client.run_to_end() == [
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
        worker.interrupt()


STREAM_OUTPUT = [
    "countdown: 3",
    "countdown: 2",
    "countdown: 1",
    "ticks stopped at 3",
    "sent: None",
]


def test_streams(programs: Programs, fabric: Fabric) -> None:
    server = start_example_server(programs, "stream_server.py", fabric.address(0))
    client = example(programs, "stream_client.py", fabric.address(1))
    assert client.run_to_end() == [
        *STREAM_OUTPUT,
        "server recorded: ['20.5C', '21.0C', '19.5C']",
    ]
    # close() on the iterator stopped the endless remote generator.
    server.wait_for_line(r"^ticker stopped$", timeout=10)

    async_client = example(programs, "stream_async_client.py", fabric.address(2))
    assert async_client.run_to_end() == [*STREAM_OUTPUT, "server recorded: ['1.5C', '2.5C']"]
    server.wait_for_line(r"^ticker stopped$", timeout=10)
    server.interrupt()
