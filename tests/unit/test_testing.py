"""``daffi.testing`` and its pytest plugin, used the way an application's tests use them.

The application is the documentation's example (``docs/examples/testing/``): ``service.py``
registers ``@callback`` functions in the process-wide registry when imported, ``client.py``
declares the fetchers. Here it is loaded afresh for each test that needs it and its callbacks
are withdrawn afterwards, so the rest of the suite never sees them. The example's own test
file runs in a child pytest with the plugin, as a user runs it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from daffi import (
    BG,
    BROADCAST,
    PERIOD,
    Global,
    GlobalContextError,
    InitializationError,
    UnableToFindCandidate,
)
from daffi.decorators import alias, callback, fetcher
from daffi.metrics import CallRecord
from daffi.registry import CallbackRegistry, default_registry
from daffi.testing import RecordedRuns, cluster, open_cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "testing"


def load_example(name: str) -> ModuleType:
    """Import ``docs/examples/testing/<name>.py`` as a new module (not kept in sys.modules)."""
    path = EXAMPLE / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"daffi_testing_example_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


client: Any = load_example("client")  # fetchers only: nothing is registered


@pytest.fixture
def service() -> Iterator[ModuleType]:
    """The example service imported as an application imports it: its ``@callback``
    functions go to the process-wide registry (withdrawn when the test ends)."""
    before = set(default_registry.names())
    try:
        yield load_example("service")
    finally:
        for name in set(default_registry.names()) - before:
            default_registry.remove(name)


# ---------------------------------------------------------------- the async cluster

pytestmark = pytest.mark.anyio  # the async tests; def tests are left as they are


async def test_a_node_offers_the_decorated_callbacks_fg_bg_and_streams(
    service: ModuleType,
) -> None:
    with anyio.fail_after(10):
        async with open_cluster() as c:
            node = await c.node("service")
            assert node.registry is default_registry
            # Known to the client as soon as node() returns: no wait_function needed.
            assert {"add", "divide", "countdown"} <= set(c.client.registered_callbacks["service"])
            assert await client.add(1, 2) == 3
            result = await client.add.call(2, 3, exec_modifier=BG)
            assert await result.get_async() == 5
            assert [n async for n in await client.countdown(3)] == [3, 2, 1]
            with pytest.raises(ZeroDivisionError):
                await client.divide(1, 0)


async def test_period_runs_on_the_node_until_cancelled() -> None:
    beats: list[str] = []
    three_beats = anyio.Event()

    async def heartbeat(source: str) -> None:
        beats.append(source)
        if len(beats) == 3:
            three_beats.set()

    with anyio.fail_after(10):
        async with open_cluster() as c:
            await c.node("monitor", callbacks={"heartbeat": heartbeat})
            task = await client.start_heartbeat("app")
            assert task.receiver == "monitor"
            await three_beats.wait()
            listed = await c.client.get_scheduled_tasks_async("monitor")
            assert [item["uuid"] for item in listed] == [task.uuid]
            assert await task.cancel_async() is True
            assert await c.client.get_scheduled_tasks_async("monitor") == []
    assert beats[:3] == ["app", "app", "app"]


async def test_callbacks_by_mapping_list_alias_or_registry() -> None:
    def double(x: int) -> int:
        return 2 * x

    @alias("triple")
    def times_three(x: int) -> int:
        return 3 * x

    def negate_here(x: int) -> int:
        return -x

    wrapped = callback(negate_here, registry=CallbackRegistry())  # a @callback object...
    wrapped.alias = "negate"  # ...offered under its alias
    registry = CallbackRegistry()
    registry.add(double, "twice")

    @fetcher
    async def twice(x: int) -> int: ...

    @fetcher
    async def triple(x: int) -> int: ...

    @fetcher
    async def negate(x: int) -> int: ...

    @fetcher
    async def half(x: int) -> int: ...

    with anyio.fail_after(10):
        async with open_cluster() as c:
            await c.node("by-registry", registry=registry)
            listed = await c.node("by-list", callbacks=[times_three, wrapped])
            await c.node("by-mapping", callbacks={"half": lambda x: x // 2})
            assert set(listed.registry.names()) == {"triple", "negate"}
            assert await twice(4) == 8
            assert await triple(4) == 12
            assert await negate(4) == -4
            assert await half(4) == 2


def negate_number(x: int) -> int:
    return -x


async def test_broadcast_reaches_every_node_offering_the_callback() -> None:
    def whoami_on(name: str) -> Any:
        def whoami() -> str:
            return name

        return whoami

    @fetcher(BROADCAST)
    async def whoami() -> Any: ...  # {node: result}

    with anyio.fail_after(10):
        async with open_cluster() as c:
            for name in ("a", "b", "c"):
                await c.node(name, callbacks={"whoami": whoami_on(name)})
            assert await whoami() == {"a": "a", "b": "b", "c": "c"}


async def test_the_client_is_called_through_from_tasks_and_threads(service: ModuleType) -> None:
    """Fetchers find the client without as_current(): in the body, in a task started there,
    in a worker thread (no context at all), even after nodes started after it."""
    with anyio.fail_after(10):
        async with open_cluster() as c:
            await c.node("service")
            await c.node("spare", callbacks={})
            assert c.nodes["service"].registered_callbacks["client"] == {}  # offers nothing
            results: list[int] = []

            async def in_a_task() -> None:
                results.append(await client.add(1, 1))

            async with anyio.create_task_group() as tg:
                tg.start_soon(in_a_task)
            results.append(await anyio.to_thread.run_sync(client.add_blocking, 2, 2))
            with c.client.as_current():
                results.append(await client.add(3, 3))
            assert results == [2, 4, 6]


async def test_every_node_sees_the_others_when_node_returns() -> None:
    with anyio.fail_after(10):
        async with open_cluster() as c:
            first = await c.node("first", callbacks={"one": negate_number})
            second = await c.node("second", callbacks={"two": negate_number})
            assert set(first.registered_callbacks) == {"client", "second"}
            assert set(second.registered_callbacks) == {"client", "first"}
            assert set(second.registered_callbacks["first"]) == {"one"}
            assert set(c.nodes) == {"first", "second"}


async def test_options_go_to_every_process_and_nodes_override_them() -> None:
    with anyio.fail_after(10):
        async with open_cluster(auth_token="s3cret", workers=3) as c:
            node = await c.node("worker", callbacks={"negate": negate_number}, workers=5)
            assert c.controller.auth_secret == node.auth_secret == c.client.auth_secret
            assert c.controller.auth_secret is not None
            assert c.client.workers == 3
            assert node.workers == 5
            assert c.address.startswith("memory://")
            with pytest.raises(TypeError, match="address"):
                await c.node("elsewhere", address="memory://elsewhere")
            with pytest.raises(TypeError, match="not both"):
                await c.node("both", callbacks={}, registry=CallbackRegistry())
    with pytest.raises(TypeError, match="registry"):
        async with open_cluster(registry=CallbackRegistry()):
            pass
    with pytest.raises(TypeError, match="bogus"):
        async with open_cluster(bogus=1):
            pass


async def test_a_taken_name_is_refused_and_the_cluster_carries_on() -> None:
    with anyio.fail_after(10):
        async with open_cluster() as c:
            await c.node("worker", callbacks={"negate": negate_number})
            with pytest.raises(InitializationError, match="'worker'"):
                await c.node("worker", callbacks={"negate": negate_number})
            with pytest.raises(InitializationError, match="'client'"):
                await c.node("client")
            assert set(c.nodes) == {"worker"}
            assert await client_negate(2) == -2


@alias("negate")
@fetcher
async def client_negate(x: int) -> int: ...


async def test_stop_node_and_start_it_again() -> None:
    with anyio.fail_after(10):
        async with open_cluster() as c:
            worker = await c.node("worker", callbacks={"negate": negate_number})
            await c.stop_node("worker")
            assert "worker" not in c.nodes
            with pytest.raises(GlobalContextError):
                await worker.wait_process_async("client")
            with pytest.raises(UnableToFindCandidate):
                await client_negate(1)
            await c.node("worker", callbacks={"negate": negate_number})
            assert await client_negate(1) == -1
            with pytest.raises(KeyError, match="nobody"):
                await c.stop_node("nobody")


async def test_leaving_the_block_stops_every_process_even_on_error() -> None:
    with anyio.fail_after(10):
        with pytest.raises(AssertionError, match="the test failed") as raised:  # noqa: PT012
            async with open_cluster() as c:
                node = await c.node("worker", callbacks={"negate": negate_number})
                raise AssertionError("the test failed")
        assert raised.type is AssertionError  # not wrapped in an exception group (trio)
        await assert_stopped(c.address, node, c.client)
        # The next cluster starts from nothing (a new address, the same names).
        async with open_cluster() as again:
            await again.node("worker", callbacks={"negate": negate_number})
            assert again.address != c.address
            assert await client_negate(3) == -3


async def test_a_node_that_crashes_is_reported_when_the_block_ends() -> None:
    left = anyio.Event()

    async def on_node_disconnect(g: Global, name: str) -> None:
        if name == "fragile":
            left.set()

    async def internal_failure() -> None:
        raise RuntimeError("internal failure")

    async def run_cluster() -> None:
        async with open_cluster(on_node_disconnect=on_node_disconnect) as c:
            fragile = await c.node("fragile", callbacks={"negate": negate_number})
            await c.node("steady", callbacks={"negate": negate_number})
            # Fault injection: a task of the node's own fails, as a bug in daffi would.
            task_group = fragile._runtime.task_group
            assert task_group is not None
            task_group.start_soon(internal_failure)
            await left.wait()
            assert await client_negate(4) == -4  # the rest of the cluster carries on

    with anyio.fail_after(10):
        with pytest.raises(GlobalContextError, match="'fragile' stopped because of") as raised:
            await run_cluster()
    assert isinstance(raised.value.__cause__, RuntimeError)


async def test_a_cancelled_block_stops_every_process() -> None:
    with anyio.fail_after(10):
        with anyio.CancelScope() as scope:
            async with open_cluster() as c:
                node = await c.node("worker", callbacks={"negate": negate_number})
                scope.cancel()
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        await assert_stopped(c.address, node, c.client)


async def assert_stopped(address: str, *nodes: Global) -> None:
    """The nodes refuse calls, and the controller has given up its address."""
    for node in nodes:
        with pytest.raises(GlobalContextError, match="stopped"):
            await node.wait_process_async("client")
    async with Global("next", init_controller=True, init_node=False, address=address):
        pass


async def test_callbacks_calling_fetchers_call_through_the_client() -> None:
    async def front_async(x: int) -> int:
        return await client_negate(x) * 10

    def front_def(x: int) -> int:  # in a worker thread
        return -client_negate_blocking(x)

    @fetcher
    async def front(x: int) -> int: ...

    @alias("front_def")
    @fetcher
    async def front_blocking(x: int) -> int: ...

    with anyio.fail_after(10):
        async with open_cluster() as c:
            await c.node("front", callbacks={"front": front_async, "front_def": front_def})
            await c.node("back", callbacks={"negate": negate_number})
            assert await front(2) == -20
            assert await front_blocking(3) == 3


@alias("negate")
@fetcher
def client_negate_blocking(x: int) -> int: ...


# ---------------------------------------------------------------- the sync cluster


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_cluster_serves_def_fetchers(backend: str, service: ModuleType) -> None:
    @alias("countdown")
    @fetcher
    def countdown_now(start: int) -> Any: ...

    with cluster(backend=backend) as c:
        c.node("service")
        assert client.add_blocking(2, 2) == 4
        assert client.add_blocking.call(3, 3, exec_modifier=BG).get(timeout=5) == 6
        assert list(countdown_now(3)) == [3, 2, 1]
        # async fetchers from a loop of the test's own
        assert anyio.run(client.add, 5, 5, backend=backend) == 10
        assert set(c.nodes) == {"service"}
        c.stop_node("service")
        with pytest.raises(UnableToFindCandidate):
            client.add_blocking(1, 1)
    with c.client.as_current(), pytest.raises(GlobalContextError, match="stopped"):
        client.add_blocking(1, 1)


def test_sync_cluster_runs_period() -> None:
    fired = threading.Event()
    beats: list[str] = []

    def heartbeat(source: str) -> None:  # a def callback: runs in a worker thread
        beats.append(source)
        if len(beats) == 2:
            fired.set()

    @alias("heartbeat")
    @fetcher
    def schedule_heartbeat(source: str) -> Any: ...

    with cluster() as c:
        c.node("monitor", callbacks={"heartbeat": heartbeat})
        task = schedule_heartbeat.call("sync", exec_modifier=PERIOD(interval=0.05))
        assert fired.wait(timeout=5)
        assert task.cancel() is True
    assert beats[:2] == ["sync", "sync"]


# ---------------------------------------------------------------- the pytest plugin


PLUGINS = ("-p", "anyio", "-p", "daffi.pytest_plugin")


def run_pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a child process with only anyio's plugin and daffi's (``-p``), as before
    daffi's entry point is installed; autoloading other plugins is off so the run does
    not depend on what else the environment has."""
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PLUGINS, *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.timeout(150)
def test_the_documented_example_passes_under_the_plugin(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__"))
    completed = run_pytest(project)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    # 5 async tests on asyncio and trio, 1 def test
    assert "11 passed" in output, output


@pytest.mark.timeout(150)
def test_the_async_fixture_in_a_def_test_says_what_to_use(tmp_path: Path) -> None:
    (tmp_path / "test_misuse.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture\n"
        "def anyio_backend():\n"
        "    return 'asyncio'\n\n"
        "def test_blocking(daffi_cluster):\n"
        "    pass\n"
    )
    completed = run_pytest(tmp_path)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "1 error" in output, output
    assert "in a `def` test use daffi_sync_cluster instead" in output, output


@pytest.mark.timeout(60)
def test_the_example_without_pytest_prints_what_the_docs_say() -> None:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLE / "without_pytest.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.splitlines() == ["async: 3", "blocking: 7"]


def test_the_plugin_imports_nothing_until_a_fixture_is_used() -> None:
    code = (
        "import sys, daffi.pytest_plugin\n"
        "print(sorted(m for m in ('daffi.testing', 'daffi.transports.memory') "
        "if m in sys.modules))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "[]"


# ---------------------------------------------------------------------- RecordedRuns


def _record(callback: str = "add", outcome: Any = "ok") -> CallRecord:
    return CallRecord(callback, "worker", "client", "call", outcome, None, 0.0, 0.001)


def test_recorded_runs_keeps_records_by_callback_in_order() -> None:
    runs = RecordedRuns()
    runs(_record("add"))
    runs(_record("mul", "error"))
    runs(_record("add", "cancelled"))
    assert [r.outcome for r in runs.of("add")] == ["ok", "cancelled"]
    assert [r.callback for r in runs.all()] == ["add", "mul", "add"]
    assert runs.of("nothing") == []


def test_wait_for_returns_once_records_arrive_from_other_threads() -> None:
    runs = RecordedRuns()
    timer = threading.Timer(0.05, lambda: [runs(_record()) for _ in range(3)])
    timer.start()
    try:
        assert len(runs.wait_for("add", 3, timeout=5)) == 3
    finally:
        timer.join()


def test_wait_for_too_few_is_a_timeout_listing_what_came() -> None:
    runs = RecordedRuns()
    runs(_record())
    with pytest.raises(TimeoutError, match=r"expected 2 runs of 'add' within 0.05 s, got 1"):
        runs.wait_for("add", 2, timeout=0.05)


async def test_wait_for_async_sees_the_runs_of_a_cluster_node() -> None:
    runs = RecordedRuns()

    def add(a: int, b: int) -> int:
        return a + b

    async with open_cluster() as c:
        await c.node("worker", {"add": add}, metrics=runs)
        assert await add_fetcher(2, 3) == 5
        [run] = await runs.wait_for_async("add", 1)
        assert (run.node, run.caller, run.kind, run.outcome) == ("worker", "client", "call", "ok")
        with pytest.raises(TimeoutError, match="expected 2 runs"):
            await runs.wait_for_async("add", 2, timeout=0.05)


@alias("add")
@fetcher
async def add_fetcher(a: int, b: int) -> int: ...
