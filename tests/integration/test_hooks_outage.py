"""Lifecycle hooks across a controller outage: what happened meanwhile is not lost."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import pytest

from daffi import Global
from daffi.registry import CallbackRegistry

pytestmark = pytest.mark.anyio


class Running:
    """A Global run in its own task until ``stop()``: lifetimes that do not nest."""

    def __init__(self, tg: anyio.abc.TaskGroup, g: Global) -> None:
        self.g = g
        self._stop = anyio.Event()
        self._stopped = anyio.Event()
        self._tg = tg

    async def start(self) -> Global:
        await self._tg.start(self._run)
        return self.g

    async def _run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with self.g:
            task_status.started()
            await self._stop.wait()
        self._stopped.set()

    async def stop(self) -> None:
        self._stop.set()
        await self._stopped.wait()


async def test_nodes_that_left_or_joined_during_an_outage_fire_hooks(address: str) -> None:
    seen: list[tuple[str, str]] = []
    b_left = anyio.Event()
    c_joined = anyio.Event()

    async def on_connect(g: Global, name: str) -> None:
        seen.append(("connect", name))
        if name == "c":
            c_joined.set()

    async def on_disconnect(g: Global, name: str) -> None:
        seen.append(("disconnect", name))
        if name == "b":
            b_left.set()

    def node(name: str, **hooks: Any) -> Global:
        return Global(name, address=address, registry=CallbackRegistry(), **hooks)

    def controller() -> Global:
        return Global("ctrl", init_controller=True, init_node=False, address=address)

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            first = Running(tg, controller())
            await first.start()
            a = await Running(
                tg, node("a", on_node_connect=on_connect, on_node_disconnect=on_disconnect)
            ).start()
            b = Running(tg, node("b"))
            await b.start()
            await a.wait_process_async("b", timeout=5)
            # The controller goes away; while it is away, b leaves and c arrives.
            await first.stop()
            await b.stop()
            seen.clear()
            await Running(tg, controller()).start()
            await Running(tg, node("c")).start()
            await b_left.wait()
            await c_joined.wait()
            tg.cancel_scope.cancel()
    assert seen.count(("disconnect", "b")) == 1
    assert seen.count(("connect", "c")) == 1
