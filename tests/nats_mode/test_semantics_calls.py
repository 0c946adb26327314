"""NATS mode means what controller mode means: FG, BG, BROADCAST, ``receiver=``, round-robin,
missing callbacks, argument errors and namespaces (compare tests/integration/test_calls.py,
test_background.py, test_broadcast.py and test_errors.py, whose assertions these repeat).

Every node is an ``async with Global(address="nats://...")`` on the test's loop (asyncio and
trio), except the sync-face callers, which are built in a worker thread and called from plain
threads (as tests/parity/_net.py does).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from itertools import pairwise
from typing import Any

import anyio
import pytest

from daffi import BG, BROADCAST, FG, AsyncResult, Global
from daffi.decorators import alias, fetcher
from daffi.exceptions import ArgumentsError, RemoteCallError, UnableToFindCandidate
from daffi.registry import CallbackRegistry

from ._servers import NatsServer

pytestmark = pytest.mark.anyio


@fetcher
async def whoami():
    pass


@alias("whoami")
@fetcher
def whoami_blocking():
    pass


@fetcher(BROADCAST)
async def who():
    pass


@alias("who")
@fetcher(BROADCAST)
def who_blocking():
    pass


@fetcher
async def add(a, b, *, scale=1):
    pass


@alias("add")
@fetcher
def add_blocking(a, b, *, scale=1):
    pass


@fetcher
async def nap(seconds):
    pass


@fetcher
async def explode(x):
    pass


@fetcher
async def nobody_offers_this():
    pass


@alias("nobody_offers_this")
@fetcher(BROADCAST)
async def nobody_offers_this_everywhere():
    pass


def returns(value: str) -> Callable[[], str]:
    def whoami_cb() -> str:
        return value

    return whoami_cb


def add_cb(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


def explode_cb(x: Any) -> None:
    raise ValueError(f"bad value {x!r}")


def registry_with(callbacks: dict[str, Callable[..., Any]] | None = None) -> CallbackRegistry:
    registry = CallbackRegistry()
    for name, fn in (callbacks or {}).items():
        registry.add(fn, name)
    return registry


def node(
    server: NatsServer,
    name: str,
    callbacks: dict[str, Callable[..., Any]] | None = None,
    namespace: str = "",
    **options: Any,
) -> Global:
    """A node (not started) of the server's daffi system: enter it with ``async with``."""
    address = f"nats://{server.url}" + (f"/{namespace}" if namespace else "")
    return Global(name, address=address, registry=registry_with(callbacks), **options)


@asynccontextmanager
async def sync_face(server: NatsServer, name: str, backend: str) -> AsyncIterator[Global]:
    """A Global with the sync face (built outside any event loop, in a worker thread, so it
    runs its own loop of ``backend`` in a thread of its own), stopped on exit."""
    g = await anyio.to_thread.run_sync(
        lambda: Global(
            name,
            address=f"nats://{server.url}",
            registry=CallbackRegistry(),
            backend=backend,
            connect_timeout=5,
        )
    )
    try:
        yield g
    finally:
        await anyio.to_thread.run_sync(g.stop)


async def in_thread(g: Global, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` (blocking daffi calls) in a plain worker thread with ``g`` current."""

    def run() -> Any:
        with g.as_current():
            return fn()

    return await anyio.to_thread.run_sync(run)


# ---------------------------------------------------------------- FG, BG, BROADCAST, receiver=


async def test_every_modifier_and_receiver(nats_server: NatsServer, anyio_backend: str) -> None:
    with anyio.fail_after(15):
        async with (
            node(nats_server, "a", {"whoami": returns("a"), "add": add_cb, "who": returns("a")}),
            node(nats_server, "b", {"whoami": returns("b"), "who": returns("b")}),
            # the caller offers `who` too, and BROADCAST leaves it out
            node(nats_server, "caller", {"who": returns("caller")}) as caller,
        ):
            await caller.wait_process_async("a", timeout=5)
            await caller.wait_process_async("b", timeout=5)
            with caller.as_current():
                assert await add(1, 2) == 3
                assert await add(1, 2, scale=3) == 9
                result = await add.call(2, 3, exec_modifier=BG)
                assert isinstance(result, AsyncResult)
                assert await result.get_async() == 5
                assert await result.get_async() == 5  # read as often as wanted
                broadcast = await who()
                pinned = [await whoami.call(exec_modifier=FG(receiver="b")) for _ in range(4)]
                bg_pinned = await whoami.call(exec_modifier=BG(receiver="a"))
                assert await bg_pinned.get_async() == "a"
                # a node may pin itself
                assert await who.call(exec_modifier=FG(receiver="caller")) == "caller"
    assert broadcast == {"a": "a", "b": "b"}
    assert list(broadcast) == ["a", "b"]  # sorted by node name, as in controller mode
    assert pinned == ["b"] * 4


async def test_broadcast_errors_by_node(nats_server: NatsServer, anyio_backend: str) -> None:
    async def broken() -> str:
        raise ValueError("n2 is broken")

    with anyio.fail_after(15):
        async with (
            node(nats_server, "n1", {"who": returns("n1")}),
            node(nats_server, "n2", {"who": broken}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_process_async("n1", timeout=5)
            await caller.wait_process_async("n2", timeout=5)
            with caller.as_current(), pytest.raises(RemoteCallError) as info:
                await who()
            with caller.as_current():
                # without a result it runs everywhere and returns at once
                assert await who.call(exec_modifier=BROADCAST(return_result=False)) is None
    error = info.value
    assert error.results == {"n1": "n1"}
    assert list(error.errors) == ["n2"]
    node_error = error.errors["n2"]
    assert isinstance(node_error, ValueError)
    assert node_error.process_name == "n2"
    assert "n2 is broken" in str(node_error)


async def test_remote_exception_is_the_callers(nats_server: NatsServer, anyio_backend: str) -> None:
    with anyio.fail_after(15):
        async with (
            node(nats_server, "worker", {"explode": explode_cb}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_function_async("explode", timeout=5)
            with caller.as_current(), pytest.raises(ValueError, match="bad value 3") as info:
                await explode(3)
    assert isinstance(info.value, RemoteCallError)
    assert info.value.remote_type == "ValueError"
    assert info.value.process_name == "worker"


# ---------------------------------------------------------------- round-robin


async def test_round_robin_alternates_evenly(nats_server: NatsServer, anyio_backend: str) -> None:
    with anyio.fail_after(15):
        async with (
            node(nats_server, "a", {"whoami": returns("a")}),
            node(nats_server, "b", {"whoami": returns("b")}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_process_async("a", timeout=5)
            await caller.wait_process_async("b", timeout=5)
            with caller.as_current():
                results = [await whoami() for _ in range(10)]
    assert Counter(results) == {"a": 5, "b": 5}
    assert all(x != y for x, y in pairwise(results)), results


async def test_round_robin_among_three_never_picks_the_caller(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    with anyio.fail_after(15):
        async with (
            node(nats_server, "a", {"whoami": returns("a")}),
            node(nats_server, "b", {"whoami": returns("b")}),
            node(nats_server, "c", {"whoami": returns("c")}),
            node(nats_server, "d", {"whoami": returns("d")}) as d,
        ):
            for name in "abc":
                await d.wait_process_async(name, timeout=5)
            with d.as_current():
                results = [await whoami() for _ in range(12)]
    assert Counter(results) == {"a": 4, "b": 4, "c": 4}
    # strict rotation: every window of three is the three providers
    assert all(len(set(results[i : i + 3])) == 3 for i in range(10)), results


async def test_round_robin_is_per_caller(nats_server: NatsServer, anyio_backend: str) -> None:
    """A DIFFERENCE from controller mode, documented: there, one controller keeps one
    round-robin cursor per callback for every caller, so two callers taking turns split the
    providers between them (caller X always gets a, Y always b). In NATS mode each node
    routes its own calls, with a cursor of its own: each caller alternates over every
    provider, whatever the others do (NATS queue groups, random, are not used)."""
    with anyio.fail_after(15):
        async with (
            node(nats_server, "a", {"whoami": returns("a")}),
            node(nats_server, "b", {"whoami": returns("b")}),
            node(nats_server, "x") as x,
            node(nats_server, "y") as y,
        ):
            for g in (x, y):
                await g.wait_process_async("a", timeout=5)
                await g.wait_process_async("b", timeout=5)
            seen: dict[str, list[str]] = {"x": [], "y": []}
            for _ in range(4):
                for g in (x, y):
                    with g.as_current():
                        seen[g.process_name].append(await whoami())
    for name, results in seen.items():
        assert Counter(results) == {"a": 2, "b": 2}, (name, results)
        assert all(p != q for p, q in pairwise(results)), (name, results)


# ---------------------------------------------------------------- nobody offers it; arguments


async def test_unable_to_find_candidate(nats_server: NatsServer, anyio_backend: str) -> None:
    with anyio.fail_after(15):
        async with (
            node(nats_server, "worker", {"add": add_cb}),
            node(nats_server, "caller", {"whoami": returns("caller")}) as caller,
        ):
            await caller.wait_function_async("add", timeout=5)
            with caller.as_current():
                t0 = time.monotonic()
                with pytest.raises(UnableToFindCandidate, match="nobody_offers_this"):
                    await nobody_offers_this()
                with pytest.raises(UnableToFindCandidate):
                    await nobody_offers_this_everywhere()
                with pytest.raises(UnableToFindCandidate):
                    await add.call(1, 2, exec_modifier=FG(receiver="no-such-process"))
                with pytest.raises(UnableToFindCandidate):
                    await nobody_offers_this.call(exec_modifier=FG(receiver="worker"))
                with pytest.raises(UnableToFindCandidate):
                    await add.call(1, 2, exec_modifier=BG(receiver="nobody"))
                # only the caller offers it: the caller is never its own round-robin target
                with pytest.raises(UnableToFindCandidate):
                    await whoami()
                assert time.monotonic() - t0 < 0.5  # at once: no NATS round trip to wait for
                assert await add(1, 1) == 2


async def test_bad_arguments_fail_before_sending(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    calls: list[Any] = []

    def add_recorded(a: int, b: int, *, scale: int = 1) -> int:
        calls.append((a, b, scale))
        return add_cb(a, b, scale=scale)

    with anyio.fail_after(15):
        async with (
            node(nats_server, "worker", {"add": add_recorded}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_function_async("add", timeout=5)
            with caller.as_current():
                with pytest.raises(ArgumentsError) as too_many:
                    await add(1, 2, 3)
                with pytest.raises(TypeError):  # ArgumentsError is a TypeError too
                    await add(1)
                with pytest.raises(ArgumentsError):
                    await add(1, 2, colour="red")
                with pytest.raises(TypeError, match="argument 0 of type object"):
                    await add(object(), 1)
                assert calls == []  # nothing reached the callee
                assert await add(1, 2, scale=3) == 9
    assert "(a, b, *, scale" in str(too_many.value)


# ---------------------------------------------------------------- the sync face


async def test_sync_face_calls_from_plain_threads(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    with anyio.fail_after(20):
        async with (
            node(nats_server, "a", {"whoami": returns("a"), "add": add_cb, "who": returns("a")}),
            node(nats_server, "b", {"whoami": returns("b"), "who": returns("b")}),
            sync_face(nats_server, "caller", anyio_backend) as caller,
        ):
            await anyio.to_thread.run_sync(caller.wait_process, "a", 5)
            await anyio.to_thread.run_sync(caller.wait_process, "b", 5)

            def calls() -> dict[str, Any]:
                background = add_blocking.call(4, 5, exec_modifier=BG)
                return {
                    "fg": add_blocking(1, 2, scale=2),
                    "rr": [whoami_blocking() for _ in range(6)],
                    "pinned": whoami_blocking.call(exec_modifier=FG(receiver="b")),
                    "broadcast": who_blocking(),
                    "bg": background.get(timeout=5),
                }

            got = await in_thread(caller, calls)

            def missing() -> None:
                nobody_offers_this_sync()

            with pytest.raises(UnableToFindCandidate):
                await in_thread(caller, missing)
    assert got["fg"] == 6
    assert Counter(got["rr"]) == {"a": 3, "b": 3}
    assert all(x != y for x, y in pairwise(got["rr"])), got["rr"]
    assert got["pinned"] == "b"
    assert got["broadcast"] == {"a": "a", "b": "b"}
    assert got["bg"] == 9


@alias("nobody_offers_this")
@fetcher
def nobody_offers_this_sync():
    pass


# ---------------------------------------------------------------- namespaces


async def test_namespaces_do_not_see_each_other(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    with anyio.fail_after(15):
        async with (
            node(nats_server, "worker", {"whoami": returns("one")}, namespace="one") as one,
            node(nats_server, "worker", {"whoami": returns("two")}, namespace="two") as two,
            node(nats_server, "caller", namespace="one") as caller_one,
            node(nats_server, "caller", namespace="two") as caller_two,
        ):
            # the same process names in both namespaces: no "is taken"
            await caller_one.wait_process_async("worker", timeout=5)
            await caller_two.wait_process_async("worker", timeout=5)
            with caller_one.as_current():
                from_one = [await whoami() for _ in range(3)]
            with caller_two.as_current():
                from_two = [await whoami() for _ in range(3)]
            assert set(one.nodes) == {"caller"}
            assert set(two.nodes) == {"caller"}
            assert set(caller_one.registered_callbacks) == {"worker"}
    assert from_one == ["one"] * 3
    assert from_two == ["two"] * 3
