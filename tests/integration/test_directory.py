"""What nodes know about each other: waits, registered_callbacks, joins, leaves, names."""

from __future__ import annotations

import datetime
import os
import uuid
from typing import Any

import anyio
import pytest

from daffi import Global
from daffi._protocol import CallbackInfo
from daffi.decorators import fetcher
from daffi.exceptions import InitializationError, UnableToFindCandidate
from daffi.exceptions import TimeoutError as DaffiTimeoutError
from daffi.registry import CallbackRegistry

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.fabrics("memory", "nats")]


@fetcher
async def late(x):
    pass


@fetcher
async def only_a():
    pass


@fetcher
async def added_later(a, b=1):
    pass


@fetcher
async def hub_echo(x):
    pass


@fetcher
async def node_echo(x):
    pass


def late_cb(x: Any) -> Any:
    return ["late", x]


# ---------------------------------------------------------------- waiting


async def test_wait_function_returns_when_a_node_joins_later(make_node: NodeFactory) -> None:
    found = anyio.Event()
    with anyio.fail_after(10):
        async with make_node("caller") as caller:

            async def waiter() -> None:
                await caller.wait_function_async("late", timeout=5)
                found.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                assert not found.is_set()
                async with make_node("provider", {"late": late_cb}):
                    await found.wait()
                    with caller.as_current():
                        assert await late(1) == ["late", 1]


async def test_wait_process_returns_when_a_node_joins_later(make_node: NodeFactory) -> None:
    found = anyio.Event()
    with anyio.fail_after(10):
        async with make_node("caller") as caller:
            # this process counts as connected
            await caller.wait_process_async("caller", timeout=1)

            async def waiter() -> None:
                await caller.wait_process_async("other", timeout=5)
                found.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                assert not found.is_set()
                async with make_node("other"):
                    await found.wait()


@pytest.mark.parametrize("method", ["wait_function_async", "wait_process_async"])
async def test_waits_time_out(make_node: NodeFactory, method: str) -> None:
    with anyio.fail_after(10):
        async with make_node("caller") as caller:
            wait = getattr(caller, method)
            t0 = anyio.current_time()
            with pytest.raises(DaffiTimeoutError):
                await wait("nobody", timeout=0.2)
            with pytest.raises(TimeoutError):  # the built-in catches it too
                await wait("nobody", timeout=0.1)
            assert anyio.current_time() - t0 < 2


# ---------------------------------------------------------------- registered_callbacks


async def test_registered_callbacks_shape_excludes_self(make_node: NodeFactory) -> None:
    def sync_cb(a: int, b: int = 2, *, c: int) -> int:
        return a + b + c

    async def async_cb(x: Any) -> Any:
        return x

    with anyio.fail_after(10):
        async with (
            make_node("a", {"sync_cb": sync_cb, "async_cb": async_cb}),
            make_node("b", {"mine": late_cb}) as b,
        ):
            await b.wait_process_async("a", timeout=5)
            seen = b.registered_callbacks
            assert set(seen) == {"a"}  # neither b itself nor the node-less controller
            assert set(seen["a"]) == {"sync_cb", "async_cb"}
            info = seen["a"]["sync_cb"]
            assert isinstance(info, CallbackInfo)
            assert info.name == "sync_cb"
            assert [p.name for p in info.params] == ["a", "b", "c"]
            assert [p.has_default for p in info.params] == [False, True, False]
            assert info.is_async is False
            assert seen["a"]["async_cb"].is_async is True
            # a returned dict is a snapshot the caller may change freely
            seen.clear()
            assert set(b.registered_callbacks) == {"a"}


async def test_controller_sees_every_node(controller: Global, make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("a", {"late": late_cb}), make_node("b") as b:
            await b.wait_process_async("a", timeout=5)
            seen = controller.registered_callbacks
            assert set(seen) == {"a", "b"}
            assert set(seen["a"]) == {"late"}
            assert seen["b"] == {}


# ---------------------------------------------------------------- changes while running


async def test_callback_registered_while_running_becomes_callable(
    make_node: NodeFactory,
) -> None:
    def added_cb(a: int, b: int = 1) -> int:
        return a * b

    with anyio.fail_after(10):
        async with make_node("provider") as provider, make_node("caller") as caller:
            await caller.wait_process_async("provider", timeout=5)
            with caller.as_current(), pytest.raises(UnableToFindCandidate):
                await added_later(2)
            provider.registry.add(added_cb, "added_later")
            await caller.wait_function_async("added_later", timeout=5)
            assert "added_later" in caller.registered_callbacks["provider"]
            with caller.as_current():
                assert await added_later(3, b=4) == 12


async def test_a_node_leaving_is_removed_from_the_view(address: str, controller: Global) -> None:
    gone = anyio.Event()

    async def on_disconnect(g: Global, name: str) -> None:
        if name == "a":
            gone.set()

    reg_a = CallbackRegistry()
    reg_a.add(late_cb, "only_a")
    with anyio.fail_after(10):
        async with Global(
            "caller", address=address, registry=CallbackRegistry(), on_node_disconnect=on_disconnect
        ) as caller:
            async with Global("a", address=address, registry=reg_a):
                await caller.wait_function_async("only_a", timeout=5)
                with caller.as_current():
                    assert await only_a.call(1) == ["late", 1]
            await gone.wait()
            assert "a" not in caller.registered_callbacks
            with caller.as_current(), pytest.raises(UnableToFindCandidate):
                await only_a(1)
            with pytest.raises(DaffiTimeoutError):
                await caller.wait_function_async("only_a", timeout=0.1)


async def test_duplicate_process_name_is_refused(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("twin") as first:
            with pytest.raises(InitializationError, match="twin"):
                async with make_node("twin"):
                    pass  # pragma: no cover
            # the first one is untouched, and the name is free again after it left
            assert first.registered_callbacks == {}
        async with make_node("twin") as again:
            await again.wait_process_async("twin", timeout=1)


@pytest.mark.parametrize("round_", range(5))
async def test_nodes_joining_at_once_all_see_each_other(
    make_node: NodeFactory, round_: int
) -> None:
    """Regression: a node whose handshake overlapped another's got a Welcome without it and
    was never told it joined (the controller awaited between its snapshot and the join)."""
    names = [f"n{i}" for i in range(4)]
    seen: dict[str, dict[str, Any]] = {}
    everyone_in = anyio.Event()

    async def join(name: str) -> None:
        async with make_node(name, {f"cb_{name}": lambda: name}) as g:
            for other in names:
                await g.wait_process_async(other, timeout=5)
            seen[name] = g.registered_callbacks
            if len(seen) == len(names):
                everyone_in.set()
            await everyone_in.wait()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(join, name)
    for name in names:
        assert sorted(seen[name]) == sorted(n for n in names if n != name)
        assert all(list(cbs) == [f"cb_{other}"] for other, cbs in seen[name].items())


async def test_two_nodes_of_one_name_joining_at_once_one_is_refused(
    make_node: NodeFactory,
) -> None:
    outcomes: list[str] = []
    both_tried = anyio.Event()

    async def join() -> None:
        try:
            async with make_node("twin"):
                outcomes.append("joined")
                await both_tried.wait()
        except InitializationError:
            outcomes.append("refused")
        if len(outcomes) == 2:
            both_tried.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(join)
            tg.start_soon(join)
            with anyio.move_on_after(5):
                await both_tried.wait()
            both_tried.set()
    assert sorted(outcomes) == ["joined", "refused"]


async def test_controller_and_node_in_one_global(anyio_backend: str) -> None:
    address = f"memory://daffi-it-{uuid.uuid4().hex}"
    hub_reg = CallbackRegistry()
    hub_reg.add(lambda_free("hub"), "hub_echo")
    node_reg = CallbackRegistry()
    node_reg.add(lambda_free("node"), "node_echo")
    with anyio.fail_after(10):
        async with Global(
            "hub", init_controller=True, init_node=True, address=address, registry=hub_reg
        ) as hub:
            assert hub.is_controller
            async with Global("worker", address=address, registry=node_reg) as worker:
                await hub.wait_function_async("node_echo", timeout=5)
                await worker.wait_function_async("hub_echo", timeout=5)
                with hub.as_current():
                    assert await node_echo(1) == ["node", 1]
                with worker.as_current():
                    assert await hub_echo(2) == ["hub", 2]
                assert set(hub.registered_callbacks) == {"worker"}
                assert set(worker.registered_callbacks) == {"hub"}


def lambda_free(tag: str) -> Any:
    def echo_cb(x: Any) -> Any:
        return [tag, x]

    return echo_cb


@pytest.mark.fabrics("memory")  # a controller of its own
async def test_node_reconnects_when_the_controller_drops_its_link(
    address: str, anyio_backend: str
) -> None:
    # The controller closes links that stay silent for 3 of its heartbeat intervals; a node
    # pinging far less often gets its link closed (no Bye) and must reconnect, not crash.
    own_connects: list[str] = []
    reconnected = anyio.Event()

    async def on_connect(g: Global, name: str) -> None:
        if name == g.process_name:
            own_connects.append(name)
            if len(own_connects) >= 2:
                reconnected.set()

    with anyio.fail_after(10):
        async with (
            Global(
                "ctrl",
                init_controller=True,
                init_node=False,
                address=address,
                heartbeat_interval=0.1,
            ),
            Global(
                "a",
                address=address,
                registry=CallbackRegistry(),
                on_node_connect=on_connect,
                heartbeat_interval=30,
            ),
        ):
            await reconnected.wait()


# ---------------------------------------------------------------------- Global.nodes


async def test_nodes_say_where_each_node_connected_from_and_since_when(
    sock_dir: str, anyio_backend: str
) -> None:
    """``Global.nodes``: a node's address as the controller sees it (a Unix socket's peer is
    named by its process id; the node in the controller's process is ``in-process``), when
    it joined, what it offers; the same from a node that joins later (it learns the others
    from its Welcome) and from a controller-only Global; a node that leaves is gone."""
    before = datetime.datetime.now(datetime.timezone.utc)
    left = anyio.Event()

    async def on_left(g: Global, name: str) -> None:
        if name == "second":
            left.set()

    registry = CallbackRegistry()
    registry.add(lambda x: x, "echo")
    registry.add(lambda: None, "ping")
    async with (
        Global("hub", init_controller=True, unix_sock_path=sock_dir, registry=registry) as hub,
        Global(
            "first",
            unix_sock_path=sock_dir,
            registry=CallbackRegistry(),
            on_node_disconnect=on_left,
        ) as first,
    ):
        await first.wait_process_async("hub", timeout=5)
        seen_by_first = first.nodes
        assert set(seen_by_first) == {"hub"}
        assert seen_by_first["hub"].address == "in-process"
        assert seen_by_first["hub"].callbacks == ("echo", "ping")
        await hub.wait_process_async("first", timeout=5)
        assert hub.nodes["first"].address == f"unix socket (pid {os.getpid()})"

        async with Global("second", unix_sock_path=sock_dir, registry=CallbackRegistry()) as second:
            await first.wait_process_async("second", timeout=5)
            seen_by_second = second.nodes
            assert set(seen_by_second) == {"hub", "first"}
            # learned from the Welcome: the same as what first was told when it joined
            assert seen_by_second["hub"] == seen_by_first["hub"]
            assert seen_by_second["first"] == hub.nodes["first"]
            joined = first.nodes["second"].connected_since
            assert joined is not None
            assert before <= joined <= datetime.datetime.now(datetime.timezone.utc)
            assert first.nodes["second"].callbacks == ()
        with anyio.fail_after(5):
            await left.wait()
        assert set(first.nodes) == {"hub"}


async def test_a_controller_only_global_lists_the_nodes(sock_dir: str, anyio_backend: str) -> None:
    async with (
        Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir) as ctrl,
        Global("solo", unix_sock_path=sock_dir, registry=CallbackRegistry()) as solo,
    ):
        await solo.wait_process_async("solo", timeout=5)
        [info] = ctrl.nodes.values()
        assert (info.name, info.address) == ("solo", f"unix socket (pid {os.getpid()})")
        assert info.connected_since is not None


async def test_offering_more_callbacks_keeps_where_and_since(
    make_node: NodeFactory, anyio_backend: str
) -> None:
    async with make_node("watcher") as watcher, make_node("grower") as grower:
        await watcher.wait_process_async("grower", timeout=5)
        before = watcher.nodes["grower"]
        grower.registry.add(lambda: 1, "grown")
        await watcher.wait_function_async("grown", timeout=5)
        after = watcher.nodes["grower"]
        assert after.callbacks == ("grown",)
        assert (after.address, after.connected_since) == (before.address, before.connected_since)
