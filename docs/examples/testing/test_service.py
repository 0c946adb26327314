"""Tests of service.py and client.py on an in-process cluster (the daffi pytest plugin).

Run:    pytest docs/examples/testing
(with daffi installed; from a checkout add ``-p daffi.pytest_plugin``)
"""

import anyio
import pytest

import client
import service  # noqa: F401  (importing it registers its @callback functions)
from daffi import BG
from daffi.testing import Cluster, SyncCluster

pytestmark = pytest.mark.anyio


async def test_add(daffi_cluster: Cluster) -> None:
    # A node offering every @callback imported so far: service.py's.
    await daffi_cluster.node("service")
    # Fetchers in the test call through the cluster's client node.
    assert await client.add(1, 2) == 3


async def test_errors_come_back_as_exceptions(daffi_cluster: Cluster) -> None:
    await daffi_cluster.node("service")
    with pytest.raises(ZeroDivisionError):
        await client.divide(1, 0)


async def test_add_in_the_background(daffi_cluster: Cluster) -> None:
    await daffi_cluster.node("service")
    result = await client.add.call(2, 3, exec_modifier=BG)
    assert await result.get_async() == 5


async def test_countdown_streams(daffi_cluster: Cluster) -> None:
    await daffi_cluster.node("service")
    assert [n async for n in await client.countdown(3)] == [3, 2, 1]


async def test_heartbeat_is_scheduled(daffi_cluster: Cluster) -> None:
    # Application code under test against a fake of the process it schedules work on.
    beats: list[str] = []
    three_beats = anyio.Event()

    async def heartbeat(source: str) -> None:
        beats.append(source)
        if len(beats) == 3:
            three_beats.set()

    await daffi_cluster.node("monitor", callbacks={"heartbeat": heartbeat})
    with anyio.fail_after(5):
        task = await client.start_heartbeat("app")
        await three_beats.wait()
    assert await task.cancel_async() is True
    assert beats[:3] == ["app", "app", "app"]


def test_add_blocking(daffi_sync_cluster: SyncCluster) -> None:
    # A `def` test: the cluster runs in a background thread.
    daffi_sync_cluster.node("service")
    assert client.add_blocking(2, 2) == 4
