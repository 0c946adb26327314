"""NATS mode, first checks: calls of every modifier between two nodes, on both backends."""

from __future__ import annotations

import pytest

from daffi import BG, BROADCAST, Global
from daffi.decorators import fetcher
from daffi.registry import CallbackRegistry

from ._servers import Cluster, NatsServer

pytestmark = pytest.mark.anyio


@fetcher
async def add(a: int, b: int) -> int: ...


async def test_calls_between_two_nodes(nats_server: NatsServer, anyio_backend: str) -> None:
    registry = CallbackRegistry()
    registry.add(lambda a, b: a + b, "add")
    address = f"nats://{nats_server.url}"
    async with (
        Global("worker", address=address, registry=registry) as worker,
        Global("caller", address=address, registry=CallbackRegistry()) as caller,
    ):
        await caller.wait_function_async("add", timeout=5)
        with caller.as_current():
            assert await add(1, 2) == 3
            result = await add.call(2, 3, exec_modifier=BG)
            assert await result.get_async() == 5
            assert await add.call(1, 1, exec_modifier=BROADCAST) == {"worker": 2}
        assert set(caller.nodes) == {"worker"}
        assert worker.nodes["caller"].connected_since is not None


async def test_a_call_crosses_the_cluster(nats_cluster: Cluster, anyio_backend: str) -> None:
    registry = CallbackRegistry()
    registry.add(lambda a, b: a * b, "add")
    async with (
        Global("on-c", address=nats_cluster.address_of("C"), registry=registry),
        Global("on-a", address=nats_cluster.address_of("A"), registry=CallbackRegistry()) as a,
    ):
        await a.wait_function_async("add", timeout=5)
        with a.as_current():
            assert await add(6, 7) == 42
