"""The sync face of Global: background-thread Globals over a Unix socket, in one process.

The tests are plain functions (no event loop of their own), so every Global here starts at
once in its own background thread; async fetchers are awaited from loops made with anyio.run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from daffi import FG, Global
from daffi.decorators import alias, fetcher
from daffi.exceptions import GlobalContextError, InitializationError
from daffi.exceptions import TimeoutError as DaffiTimeoutError
from daffi.registry import CallbackRegistry

BACKENDS = ["asyncio", "trio"]


@fetcher
def add(a, b):
    pass


@alias("add")
@fetcher
async def add_async(a, b):
    pass


@fetcher
async def slow():
    pass


@fetcher
def whoami():
    pass


def add_cb(a: int, b: int) -> int:
    return a + b


async def slow_cb() -> None:
    await anyio.sleep(30)


class Departures:
    """Names passed to an on_node_disconnect hook; ``wait_for`` blocks until one shows up."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._cond = threading.Condition()

    def hook(self, g: Global, name: str) -> None:
        with self._cond:
            self.names.append(name)
            self._cond.notify_all()

    def wait_for(self, name: str, timeout: float = 5) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: name in self.names, timeout)


@pytest.fixture
def departures() -> Departures:
    return Departures()


@pytest.fixture
def controller(sock_dir: str, departures: Departures) -> Iterator[Global]:
    """Controller and node in one Global, offering ``add``, ``slow`` and ``whoami``."""
    registry = CallbackRegistry()
    registry.add(add_cb, "add")
    registry.add(slow_cb, "slow")
    registry.add(lambda_free_name("ctrl"), "whoami")
    g = Global(
        "ctrl",
        init_controller=True,
        unix_sock_path=sock_dir,
        registry=registry,
        on_node_disconnect=departures.hook,
        connect_timeout=5,
    )
    try:
        yield g
    finally:
        g.stop()


def lambda_free_name(name: str) -> Any:
    def whoami_cb() -> str:
        return name

    return whoami_cb


def make_node(sock_dir: str, name: str, **kwargs: Any) -> Global:
    return Global(
        name, unix_sock_path=sock_dir, registry=CallbackRegistry(), connect_timeout=5, **kwargs
    )


# ---------------------------------------------------------------- blocking calls


@pytest.mark.parametrize("backend", BACKENDS)
def test_def_fetcher_blocks_and_returns(sock_dir: str, controller: Global, backend: str) -> None:
    assert controller.is_controller
    node = make_node(sock_dir, "client", backend=backend)
    try:
        assert not node.is_controller
        node.wait_function("add", timeout=5)
        with node.as_current():
            assert add(1, 2) == 3
            assert add.call(a=5, b=6, exec_modifier=FG(timeout=5)) == 11
            assert whoami() == "ctrl"
        assert set(node.registered_callbacks) == {"ctrl"}
        assert set(node.registered_callbacks["ctrl"]) == {"add", "slow", "whoami"}
    finally:
        node.stop()


def test_wait_function_and_wait_process_with_timeout(sock_dir: str, controller: Global) -> None:
    with make_node(sock_dir, "client") as node:
        node.wait_process("ctrl", timeout=5)
        node.wait_function("add", timeout=5)
        t0 = time.monotonic()
        with pytest.raises(DaffiTimeoutError):
            node.wait_function("nobody_offers_this", timeout=0.2)
        with pytest.raises(TimeoutError):
            node.wait_process("nobody", timeout=0.2)
        assert time.monotonic() - t0 < 2


def test_wait_function_returns_when_offered_later(sock_dir: str, controller: Global) -> None:
    def late_cb() -> str:
        return "late"

    with make_node(sock_dir, "client") as client:
        done = threading.Event()

        def waiter() -> None:
            client.wait_function("late", timeout=5)
            done.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        assert not done.is_set()
        with make_node(sock_dir, "provider") as provider:
            provider.registry.add(late_cb, "late")
            thread.join(timeout=5)
            assert done.is_set()


# ---------------------------------------------------------------- stopping and restarting


def test_stop_twice_is_harmless_and_calls_afterwards_fail(
    sock_dir: str, controller: Global, departures: Departures
) -> None:
    node = make_node(sock_dir, "client")
    node.wait_function("add", timeout=5)
    node.stop()
    node.stop()
    assert departures.wait_for("client")
    with pytest.raises(GlobalContextError):
        node.wait_function("add", timeout=1)
    with pytest.raises(GlobalContextError):
        node.wait_process("ctrl", timeout=1)


def test_fetcher_through_a_stopped_global_fails(sock_dir: str, controller: Global) -> None:
    node = make_node(sock_dir, "client")
    node.wait_function("add", timeout=5)
    node.stop()
    # the Global named in the block is stopped: no silent switch to another running Global
    with node.as_current(), pytest.raises(GlobalContextError):
        add(1, 2)


def test_with_block_stops_on_exit(
    sock_dir: str, controller: Global, departures: Departures
) -> None:
    with make_node(sock_dir, "scoped") as node:
        node.wait_function("add", timeout=5)
        with node.as_current():
            assert add(2, 2) == 4
    assert departures.wait_for("scoped")
    assert "scoped" not in controller.registered_callbacks
    with pytest.raises(GlobalContextError):
        node.wait_process("ctrl", timeout=1)


def test_same_name_again_after_stop(sock_dir: str, controller: Global) -> None:
    first = make_node(sock_dir, "again")
    first.wait_function("add", timeout=5)
    first.stop()
    second = make_node(sock_dir, "again")
    try:
        second.wait_function("add", timeout=5)
        with second.as_current():
            assert add(3, 4) == 7
    finally:
        second.stop()


def test_duplicate_name_is_refused_at_construction(sock_dir: str, controller: Global) -> None:
    with make_node(sock_dir, "twin") as first:
        with pytest.raises(InitializationError, match="twin"):
            make_node(sock_dir, "twin")
        first.wait_function("add", timeout=5)
        with first.as_current():
            assert add(1, 1) == 2


def test_join_returns_after_stop_from_another_thread(sock_dir: str, controller: Global) -> None:
    node = make_node(sock_dir, "joiner")
    joined = threading.Event()

    def join() -> None:
        node.join()
        joined.set()

    joiner = threading.Thread(target=join)
    joiner.start()
    try:
        assert not joined.wait(0.2)  # still running
        stopper = threading.Thread(target=node.stop)
        stopper.start()
        stopper.join(timeout=5)
        assert joined.wait(5)
    finally:
        node.stop()
        joiner.join(timeout=5)


# ---------------------------------------------------------------- async fetchers, other loops


@pytest.mark.parametrize("backend", BACKENDS)
def test_async_fetcher_from_another_loop(sock_dir: str, controller: Global, backend: str) -> None:
    node = make_node(sock_dir, "client")

    async def main() -> list[Any]:
        with anyio.fail_after(10):
            await node.wait_function_async("add", timeout=5)
            with node.as_current():
                results = [await add_async(1, 2)]
                async with anyio.create_task_group() as tg:

                    async def one(i: int) -> None:
                        results.append(await add_async(i, i))

                    for i in range(5):
                        tg.start_soon(one, i)
                t0 = time.monotonic()
                with pytest.raises(DaffiTimeoutError):
                    await slow.call(exec_modifier=FG(timeout=0.3))
                assert time.monotonic() - t0 < 1.5
            return results

    try:
        results = anyio.run(main, backend=backend)
    finally:
        node.stop()
    assert results[0] == 3
    assert sorted(results[1:]) == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancelling_the_awaiting_task_cancels_the_call(
    sock_dir: str, controller: Global, backend: str
) -> None:
    node = make_node(sock_dir, "client")

    async def main() -> None:
        with anyio.fail_after(10):
            await node.wait_function_async("slow", timeout=5)
            with node.as_current(), anyio.move_on_after(0.3) as scope:
                await slow()
            assert scope.cancelled_caught
            with node.as_current():
                assert await add_async(2, 5) == 7  # the node is fine afterwards

    try:
        anyio.run(main, backend=backend)
    finally:
        node.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_lazy_global_starts_at_first_await(sock_dir: str, controller: Global, backend: str) -> None:
    async def main() -> int:
        with anyio.fail_after(10):
            g = Global("lazy", unix_sock_path=sock_dir, registry=CallbackRegistry())
            try:
                with g.as_current():
                    # first use: waits for the start in a background thread
                    await g.wait_function_async("add", timeout=5)
                    result = await add_async(20, 22)
                # once started it is the newest running Global: plain fetcher calls use it
                assert await add_async(1, 1) == 2
            finally:
                await g.stop_async()
            return result

    assert anyio.run(main, backend=backend) == 42


@pytest.mark.parametrize("backend", BACKENDS)
def test_lazy_global_first_use_is_a_fetcher(
    sock_dir: str, controller: Global, backend: str
) -> None:
    async def main() -> Any:
        with anyio.fail_after(10):
            g = Global("lazy", unix_sock_path=sock_dir, registry=CallbackRegistry())
            try:
                with g.as_current():
                    return await whoami_async()
            finally:
                await g.stop_async()

    assert anyio.run(main, backend=backend) == "ctrl"


@alias("whoami")
@fetcher
async def whoami_async():
    pass
