"""``get_g()``, ``callback.g`` and ``self.g``: the Global of the calling context.

Inside a callback it is the Global running it, on every route a callback takes (an async
task, the executor's threads, generators, streamed-in items, schedules), even when another
Global of the process started later (the newest running one is what code outside any
Global's context gets).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from daffi import Callback, Fetcher, Global, callback, get_g
from daffi.exceptions import GlobalContextError
from daffi.registry import CallbackRegistry
from daffi.testing import RecordedRuns

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.fabrics("memory", "nats")]


def _name() -> str:
    return get_g().process_name


def plain() -> str:
    return _name()


async def coroutine() -> str:
    await anyio.lowlevel.checkpoint()
    return _name()


def generator() -> Iterator[str]:
    yield _name()


async def async_generator() -> AsyncIterator[str]:
    yield _name()


class Seen:
    def __init__(self) -> None:
        self.names: list[str] = []

    def record(self, _item: object = None) -> None:
        self.names.append(_name())

    async def record_async(self) -> None:
        self.names.append(_name())


async def test_every_route_of_a_callback_sees_the_global_running_it(
    make_node: NodeFactory,
) -> None:
    seen = Seen()
    runs = RecordedRuns()
    callbacks: dict[str, Any] = {
        "plain": plain,
        "coroutine": coroutine,
        "generator": generator,
        "async_generator": async_generator,
        "record": seen.record,
        "record_async": seen.record_async,
    }
    with anyio.fail_after(20):
        async with make_node("worker", callbacks, metrics=runs), make_node("caller") as caller:
            # The caller started last: it is the process's newest running Global.
            assert get_g() is caller
            await caller.wait_function_async("record_async", timeout=10)
            assert await caller.call.plain().fg_async() == "worker"
            assert await caller.call.coroutine().fg_async() == "worker"
            assert [x async for x in await caller.call.generator().fg_async()] == ["worker"]
            items = await caller.call.async_generator().fg_async()
            assert [x async for x in items] == ["worker"]
            await caller.call.record([1, 2]).stream_async()
            for name in ("record", "record_async"):
                task = await caller.call[name]().period_async(interval=0.02)
                await runs.wait_for_async(name, 2 if name == "record_async" else 4)
                await task.cancel_async()
            assert set(seen.names) == {"worker"}


async def test_callback_g_and_self_g(
    address: str, running_controller: Global | None, make_node: NodeFactory
) -> None:
    registry = CallbackRegistry()

    def _whoami() -> list[Any]:
        return [whoami.g.process_name, get_g().process_name]

    whoami = callback(_whoami, registry=registry)

    class Service(Callback):
        registry = CallbackRegistry()

        def service_name(self) -> str:
            return str(self.g.process_name)

    Service.registry = registry
    Service()
    with anyio.fail_after(20):
        async with (
            Global("worker", address=address, registry=registry),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("service_name", timeout=10)
            assert await caller.call._whoami().fg_async() == ["worker", "worker"]
            assert await caller.call.service_name().fg_async() == "worker"
            # outside any callback: the context's Global (the newest running one here)
            assert whoami.g is caller

            class Client(Fetcher):
                pass

            assert Client().g is caller


async def test_get_g_with_no_global_running_says_so(anyio_backend: str) -> None:
    with pytest.raises(GlobalContextError):
        get_g()
    assert callback(plain, registry=CallbackRegistry()).g is None
