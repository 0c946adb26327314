"""``Global.call``: calls by name mean what a fetcher of that name means, over every modifier,
in both orders of ``&``, spelled out, and from async code (its ``_async`` twins)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from daffi import BG, BROADCAST, FG, PERIOD, Args, AsyncResult, Global, ScheduledTask
from daffi._remote_call import LazyRemoteCall, ModifiedCall, RemoteCall
from daffi.exceptions import (
    ArgumentsError,
    GlobalContextError,
    InitializationError,
    UnableToFindCandidate,
)
from daffi.testing import RecordedRuns

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.fabrics("memory", "nats")]


class Worker:
    """The callbacks a worker offers, recording what they were called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.ran = anyio.Event()

    def add(self, a: int, b: int) -> int:
        self.calls.append(("add", a, b))
        return a + b

    async def mul(self, a: int, b: int) -> int:
        self.calls.append(("mul", a, b))
        return a * b

    def count(self, n: int) -> Iterator[int]:
        yield from range(n)

    def sink(self, x: int, tag: str = "") -> None:
        self.calls.append(("sink", x, tag))

    def tick(self) -> None:
        self.calls.append(("tick",))

    def callbacks(self) -> dict[str, Any]:
        return {
            "add": self.add,
            "mul": self.mul,
            "count": self.count,
            "sink": self.sink,
            "tick": self.tick,
        }


def _blocking(fn: Any, *args: Any) -> Any:
    """Run a blocking call the way a thread of the application would (the test's loop
    runs the Globals)."""
    return anyio.to_thread.run_sync(fn, *args)


async def test_every_form_of_a_call_by_name(make_node: NodeFactory) -> None:
    worker = Worker()
    with anyio.fail_after(20):
        async with (
            make_node("worker", worker.callbacks()),
            make_node("caller") as g,
        ):
            await g.wait_function_async("add", timeout=10)

            # Nothing is sent until a modifier is applied to a call with its arguments.
            lazy = g.call.add
            assert isinstance(lazy, LazyRemoteCall)
            pending = g.call.add(1, 2)
            assert isinstance(pending, RemoteCall)
            modifier_first = g.call.add & FG
            assert isinstance(modifier_first, ModifiedCall)
            assert worker.calls == []

            assert await _blocking(lambda: g.call.add(1, 2) & FG) == 3
            assert await _blocking(lambda: g.call.add(1, 2) & FG(timeout=5)) == 3
            assert await _blocking(lambda: (g.call.add & FG)(3, 4)) == 7
            assert await _blocking(lambda: modifier_first(5, 6)) == 11
            assert await _blocking(lambda: g.call["add"](a=2, b=2).fg()) == 4

            result = await _blocking(lambda: g.call.add(10, 1) & BG(timeout=5))
            assert isinstance(result, AsyncResult)
            assert await result.get_async() == 11
            assert await (await _blocking(lambda: g.call.mul(2, 5).bg())).get_async() == 10

            assert await _blocking(lambda: g.call.add(1, 1) & BROADCAST) == {"worker": 2}
            assert await _blocking(lambda: g.call.add(1, 1).broadcast(return_result=True)) == {
                "worker": 2
            }
            # daffi 2's .broadcast() default: no result
            assert await _blocking(lambda: g.call.add(1, 1).broadcast()) is None

            assert await _blocking(lambda: list(g.call.count(3) & FG)) == [0, 1, 2]

            await _blocking(lambda: g.call.sink([1, (2, "t"), Args(3, tag="k")]).stream())
            background = await _blocking(lambda: g.call.sink([4]).stream(async_=True))
            assert background is not None
            await background.get_async()
            assert [c for c in worker.calls if c[0] == "sink"] == [
                ("sink", 1, ""),
                ("sink", 2, "t"),
                ("sink", 3, "k"),
                ("sink", 4, ""),
            ]


async def test_the_async_twins(make_node: NodeFactory) -> None:
    worker = Worker()
    with anyio.fail_after(20):
        async with (
            make_node("worker", worker.callbacks()),
            make_node("caller") as g,
        ):
            await g.wait_function_async("add", timeout=10)
            assert await g.call.add(1, 2).fg_async() == 3
            assert await g.call.mul(3, 3).fg_async(timeout=5, receiver="worker") == 9
            assert await g.call.add(1, 2).run_async(FG) == 3
            result = await g.call.add(2, 3).bg_async(timeout=5)
            assert result is not None
            assert await result.get_async() == 5
            assert await g.call.add(1, 1).broadcast_async(return_result=True) == {"worker": 2}

            async def numbers() -> AsyncIterator[int]:
                for n in (7, 8):
                    yield n

            await g.call.sink(numbers()).stream_async()
            await g.call.sink([9]).stream_async()
            assert [c[1] for c in worker.calls if c[0] == "sink"] == [7, 8, 9]

            items = await g.call.count(2).fg_async()
            assert [item async for item in items] == [0, 1]


async def test_period_by_name(make_node: NodeFactory) -> None:
    worker = Worker()
    runs = RecordedRuns()
    with anyio.fail_after(20):
        async with (
            make_node("worker", worker.callbacks(), metrics=runs),
            make_node("caller") as g,
        ):
            await g.wait_function_async("tick", timeout=10)
            task = await _blocking(lambda: g.call.tick() & PERIOD(interval=0.05))
            assert isinstance(task, ScheduledTask)
            (listed,) = await g.get_scheduled_tasks_async("worker")
            assert (listed["uuid"], listed["func_name"], listed["condition"]) == (
                task.uuid,
                "tick",
                "period",
            )
            await runs.wait_for_async("tick", 2)
            assert await task.cancel_async() is True

            other = await g.call.tick().period_async(interval="1h")
            assert await g.cancel_scheduled_task_by_uuid_async("worker", other.uuid) is True
            assert await g.get_scheduled_tasks_async("worker") == []


async def test_info_and_exists(make_node: NodeFactory) -> None:
    worker = Worker()
    with anyio.fail_after(20):
        async with make_node("worker", worker.callbacks()), make_node("caller") as g:
            await g.wait_function_async("count", timeout=10)
            assert g.call.count.exists is True
            assert g.call.count(1).exists is True
            info = g.call.count.info
            assert info is not None
            assert info.is_generator is True
            assert [p.name for p in info.params] == ["n"]
            assert g.call.nope.exists is False
            assert g.call.nope(1).info is None


async def test_errors_are_those_of_fetchers(make_node: NodeFactory) -> None:
    worker = Worker()
    with anyio.fail_after(20):
        async with make_node("worker", worker.callbacks()), make_node("caller") as g:
            await g.wait_function_async("add", timeout=10)
            with pytest.raises(UnableToFindCandidate) as missing:
                await g.call.nope().fg_async()
            assert isinstance(missing.value, GlobalContextError)  # as in daffi 2
            with pytest.raises(ArgumentsError):
                await g.call.add(1).fg_async()  # checked before anything is sent
            with pytest.raises(InitializationError, match="execution modifier"):
                g.call.add(1, 2) & 5
            with pytest.raises(InitializationError, match="execution modifier"):
                g.call.add & "FG"
            with pytest.raises(InitializationError, match="PERIOD cannot be used without"):
                g.call.add(1, 2) & PERIOD
            with pytest.raises(InitializationError, match="one iterable"):
                g.call.sink(1, 2).stream()
            with pytest.raises(InitializationError, match="iterable"):
                await g.call.sink(5).stream_async()
            with pytest.raises(GlobalContextError, match="non-empty"):
                g.call[""]
            assert worker.calls == []


async def test_blocking_forms_on_the_loop_name_the_async_twin(make_node: NodeFactory) -> None:
    """On the thread that runs daffi's loop a blocking call would deadlock it: the error
    says what to await instead."""
    worker = Worker()
    with anyio.fail_after(20):
        async with make_node("worker", worker.callbacks()), make_node("caller") as g:
            await g.wait_function_async("add", timeout=10)
            with pytest.raises(GlobalContextError, match=r"g\.call\.add\(\.\.\.\)\.fg_async\(\)"):
                g.call.add(1, 2) & FG
            with pytest.raises(GlobalContextError, match=r"stream_async\(\)"):
                g.call.sink([1]).stream()
            # a stream's iterator, made in a thread, then iterated here
            items = await _blocking(lambda: g.call.count(3) & FG)
            with pytest.raises(GlobalContextError, match=r"async for item in await g\.call\.count"):
                next(items)
            await _blocking(items.close)
            # BG does not block: it works from the loop's thread
            result = g.call.add(1, 2) & BG
            assert result is not None
            assert await result.get_async() == 3


async def test_a_stopped_global_refuses_calls_by_name(make_node: NodeFactory) -> None:
    worker = Worker()
    with anyio.fail_after(20):
        async with make_node("worker", worker.callbacks()):
            caller: Global = make_node("caller")
            async with caller:
                await caller.wait_function_async("add", timeout=10)
            with pytest.raises(GlobalContextError, match="stopped"):
                await caller.call.add(1, 2).fg_async()
