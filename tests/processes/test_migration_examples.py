"""Every program under docs/examples/migration/ runs as real processes and prints what
docs/migration.md says.

They are daffi 2's documented examples (unchanged but for where to connect, taken from the
command line) and the one-line rewrites the migration page shows. Each test starts fresh
processes on loopback TCP with a free port or on a Unix socket in a short private directory
under /tmp, compares their whole output, and stops every process by its PID.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import Processes, run_to_end
from .test_docs_examples import START_TIMEOUT

pytestmark = [pytest.mark.processes, pytest.mark.timeout(120)]

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "migration"

#: Every example and the test that runs it; test_every_example_is_run keeps this complete.
COVERED = {
    "shopping_service.py": "test_daffi2_getting_started",
    "shopper.py": "test_daffi2_getting_started",
    "pipeline_node1.py": "test_daffi2_pipeline_with_g_call",
    "pipeline_node2.py": "test_daffi2_pipeline_with_g_call",
    "pipeline_node3.py": "test_daffi2_pipeline_with_g_call",
    "pipeline_caller.py": "test_daffi2_pipeline_with_g_call",
    "broadcast_node.py": "test_daffi2_broadcasting",
    "broadcast_caller.py": "test_daffi2_broadcasting",
    "async_app.py": "test_daffi2_style_async_app",
    "async_client.py": "test_daffi2_style_async_app",
    "payloads_service.py": "test_payloads_without_and_with_pickle",
    "payloads_client.py": "test_payloads_without_and_with_pickle",
    "pickle_client.py": "test_payloads_without_and_with_pickle",
    "schedules_worker.py": "test_listing_and_cancelling_schedules",
    "schedules_client.py": "test_listing_and_cancelling_schedules",
}


def test_every_example_is_run() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(COVERED)


def test_daffi2_getting_started(processes: Processes, address: str) -> None:
    service = processes.example("shopping_service.py", address)
    service.wait_for_line(
        rf"^shopping service ready on {re.escape(address)}$", timeout=START_TIMEOUT
    )
    shopper = processes.example("shopper.py", address)
    assert run_to_end(shopper) == [
        "[]",
        "['orange']",
        "['orange', 'bread', 'cheese']",
        "[]",
    ]
    processes.interrupt(service)


def test_daffi2_pipeline_with_g_call(processes: Processes, address: str) -> None:
    # As on daffi 2.0's page, the caller runs the controller and waits for the nodes. Each
    # node learns of the others that are connected when it connects, and of later ones a
    # moment later: start them from the end of the chain, each once the previous one is up,
    # so that node-1 surely knows node-2 when the caller sees node-1.
    caller = processes.example("pipeline_caller.py", address)
    nodes = []
    for i in (3, 2, 1):
        node = processes.example(f"pipeline_node{i}.py", address)
        node.wait_for_line(rf"^node-{i} ready$", timeout=START_TIMEOUT)
        nodes.append(node)
    assert run_to_end(caller) == ["my secret sting", "my secret sting"]
    for node in nodes:
        processes.interrupt(node)


def test_daffi2_broadcasting(processes: Processes, address: str) -> None:
    caller = processes.example("broadcast_caller.py", address)
    nodes = [
        processes.example("broadcast_node.py", f"node-{i}", address, name=f"node-{i}")
        for i in (1, 2, 3)
    ]
    results = "{'node-1': 'abc-node-1', 'node-2': 'abc-node-2', 'node-3': 'abc-node-3'}"
    streamed = ", ".join(f"'node-{i}': ['bread', 'cheese']" for i in (1, 2, 3))
    assert run_to_end(caller) == [results, results, results, f"{{{streamed}}}"]
    for node in nodes:
        processes.interrupt(node)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_daffi2_style_async_app(processes: Processes, backend: str) -> None:
    app = processes.example("async_app.py", backend)
    port = app.wait_for_line(r"^async app listening on port (\d+)$", timeout=START_TIMEOUT)[1]
    assert int(port) > 0  # known when the constructor returned
    client = processes.example("async_client.py", backend, port)
    assert run_to_end(client) == [
        "slow_add: 3",
        "slow_add, awaited: 7",
        f"the app's callbacks run on: {backend}",
        "relay: 42",
        f"this client's callbacks run on: {backend}",
        "daffi 2 style relay refused: RemoteGlobalContextError",
        "  names the twin: True",
    ]
    assert run_to_end(app) == [f"async app listening on port {port}", "async app stopped"]


def test_payloads_without_and_with_pickle(processes: Processes, address: str) -> None:
    service = processes.example("payloads_service.py", address)
    service.wait_for_line(
        rf"^payloads service ready on {re.escape(address)}$", timeout=START_TIMEOUT
    )
    client = processes.example("payloads_client.py", address)
    assert run_to_end(client) == [
        "g.call.pair(): [1, 2]",
        "annotated fetcher pair(): (1, 2)",
        "unannotated callback got: list, list",
        "annotated callback got: tuple, set",
        "Account refused before sending: PayloadEncodeError",
        "Account result refused: RemoteTypeError",
    ]
    pickling = processes.example("pickle_client.py", address)
    assert run_to_end(pickling) == ["open_account: Account ada", "types_of: Point, set"]
    processes.interrupt(service)


def test_listing_and_cancelling_schedules(processes: Processes, address: str) -> None:
    worker = processes.example("schedules_worker.py", address)
    worker.wait_for_line(rf"^worker ready on {re.escape(address)}$", timeout=START_TIMEOUT)
    client = processes.example("schedules_client.py", address)
    assert run_to_end(client) == [
        "conditions: ['at_time', 'period']",
        "periodic is the task: True",
        "mine: 2",
        "cancelled: True",
        "cancelled again: False",
        "unknown uuid: RemoteLookupError True",
    ]
    processes.interrupt(worker)
