"""Failover: a three-server cluster loses server B (SIGKILL by PID) while a node attached to
B serves calls and runs a schedule.

The node learns the cluster's other servers from B (NATS gossips them) and reconnects to one
of them. Meanwhile a caller on server A keeps calling: a call made while the node is cut off
fails at once (the cluster has no subscriber for the node's subject: "no responders") or
times out, and retried after the reconnect it succeeds, so no call is lost to a caller that
retries. The node's schedule lives on the node: it keeps running through the outage and its
requester can still list and cancel it afterwards.
"""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from daffi import FG, PERIOD, Global
from daffi.decorators import fetcher
from daffi.exceptions import DaffiError
from daffi.registry import CallbackRegistry

from ._servers import Cluster

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

HEARTBEAT = 0.25


def _connected_to(cluster: Cluster, client: str) -> str | None:
    """Which live server of ``cluster`` has a client connection named ``client``."""
    for server in cluster.servers:
        if server.process is None:
            continue
        connections = server.varz("connz").get("connections") or []
        if any(c.get("name") == client for c in connections):  # type: ignore[union-attr]
            return server.name
    return None


@fetcher(FG(timeout=1.0))
async def double(x: int) -> int: ...


@fetcher
async def tick() -> None: ...


async def test_losing_a_server_loses_no_retried_call_and_no_schedule(
    nats_cluster: Cluster, anyio_backend: str
) -> None:
    ticks: list[float] = []
    lock = threading.Lock()

    def record_tick() -> None:
        with lock:
            ticks.append(time.monotonic())

    registry = CallbackRegistry()
    registry.add(lambda x: 2 * x, "double")
    registry.add(record_tick, "tick")
    worker = Global(
        "worker",
        address=nats_cluster.address_of("B"),
        registry=registry,
        heartbeat_interval=HEARTBEAT,
    )
    caller = Global(
        "caller",
        address=nats_cluster.address_of("A"),
        registry=CallbackRegistry(),
        heartbeat_interval=HEARTBEAT,
    )
    async with worker, caller:
        await caller.wait_function_async("double", timeout=5)
        with caller.as_current():
            task = await tick.call(exec_modifier=PERIOD(interval=0.1))
            results: dict[int, int] = {}
            retries = 0
            killed_at = None
            with anyio.fail_after(40):
                for x in range(300):
                    if x == 100:
                        nats_cluster.server("B").kill()
                        killed_at = time.monotonic()
                    while True:
                        try:
                            results[x] = await double(x)
                            break
                        except DaffiError:  # cut off: retry once the node is back
                            retries += 1
                            await anyio.sleep(0.05)
            assert results == {x: 2 * x for x in range(300)}
            assert killed_at is not None
            # The worker moved to another server of the cluster (the calls that failed while
            # it moved, if any, were retried: ``retries`` of them).
            assert _connected_to(nats_cluster, "worker") in {"A", "C"}
            # The schedule ran through the outage, and runs on afterwards.
            with lock:
                before = len(ticks)
            await anyio.sleep(0.5)
            with lock:
                after = [t for t in ticks if t > killed_at]
                assert len(ticks) > before, "the schedule stopped after the failover"
            assert after, "no run of the schedule after server B was killed"
            listed = await caller.get_scheduled_tasks_async("worker")
            assert [item["uuid"] for item in listed] == [task.uuid]
            assert await task.cancel_async() is True
        assert await caller.get_scheduled_tasks_async("worker") == []
