"""Cancellation crosses the wire: caller cancel scopes, FG timeouts, deadlines, departed callers."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import pytest

from daffi import BG, FG
from daffi.decorators import alias, fetcher
from daffi.exceptions import DaffiError
from daffi.exceptions import TimeoutError as DaffiTimeoutError

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.fabrics("memory", "nats")]


@fetcher
async def slow():
    pass


@alias("slow")
@fetcher(FG(timeout=0.3))
async def slow_with_timeout():
    pass


@alias("slow")
@fetcher(BG)
async def slow_in_background():
    pass


@fetcher
async def remaining():
    pass


@alias("remaining")
@fetcher(FG(timeout=2))
async def remaining_with_timeout():
    pass


@fetcher
async def block(x):
    pass


@fetcher
async def quick(x):
    pass


class SlowCallee:
    """An async callback that records how it ended: "done", "cancelled" or neither."""

    def __init__(self, duration: float = 3.0) -> None:
        self.duration = duration
        self.started = anyio.Event()
        self.ended = anyio.Event()
        self.log: list[str] = []
        self.started_at = 0.0
        self.ended_at = 0.0

    async def slow(self) -> str:
        self.started_at = time.monotonic()
        self.log.append("started")
        self.started.set()
        try:
            await anyio.sleep(self.duration)
            self.log.append("done")
        except anyio.get_cancelled_exc_class():
            self.log.append("cancelled")
            raise
        finally:
            self.ended_at = time.monotonic()
            self.ended.set()
        return "finished"


async def test_caller_cancel_scope_cancels_the_remote_call(make_node: NodeFactory) -> None:
    callee = SlowCallee()
    with anyio.fail_after(10):
        async with make_node("worker", {"slow": callee.slow}), make_node("caller") as caller:
            await caller.wait_function_async("slow", timeout=5)
            with caller.as_current():
                with anyio.move_on_after(0.2) as scope:
                    await slow()
                cancelled_at = time.monotonic()
                assert scope.cancelled_caught
                with anyio.fail_after(1):
                    await callee.ended.wait()
                # the node serves again afterwards
                callee.duration = 0
                assert await slow() == "finished"
    assert callee.log[:2] == ["started", "cancelled"]
    assert callee.ended_at - cancelled_at < 0.5


async def test_fg_timeout_cancels_the_remote_execution(make_node: NodeFactory) -> None:
    callee = SlowCallee()
    with anyio.fail_after(10):
        async with make_node("worker", {"slow": callee.slow}), make_node("caller") as caller:
            await caller.wait_function_async("slow", timeout=5)
            with caller.as_current():
                t0 = time.monotonic()
                with pytest.raises(DaffiTimeoutError):
                    await slow_with_timeout()
                elapsed = time.monotonic() - t0
                with anyio.fail_after(1):
                    await callee.ended.wait()
    assert 0.25 <= elapsed < 0.5, f"FG(timeout=0.3) raised after {elapsed:.2f} s"
    assert callee.log == ["started", "cancelled"]  # never reached "done"
    assert callee.ended_at - callee.started_at < 0.6


async def remaining_cb() -> float:
    return anyio.current_effective_deadline() - anyio.current_time()


@pytest.mark.parametrize("how", ["fg-timeout", "outer-scope"])
async def test_deadline_travels_with_the_call(make_node: NodeFactory, how: str) -> None:
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"remaining": remaining_cb}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("remaining", timeout=5)
            with caller.as_current():
                if how == "fg-timeout":
                    left = await remaining_with_timeout()
                else:
                    with anyio.fail_after(2):
                        left = await remaining()
    assert math.isfinite(left)
    assert 1.5 < left <= 2.0, left


async def test_remote_callback_runs_under_the_callers_deadline(make_node: NodeFactory) -> None:
    """An outer scope that expires (no FG timeout) ends the remote call by its own deadline
    too: the callee is cancelled even if the caller's Cancel were lost."""
    callee = SlowCallee()
    with anyio.fail_after(10):
        async with make_node("worker", {"slow": callee.slow}), make_node("caller") as caller:
            await caller.wait_function_async("slow", timeout=5)
            with caller.as_current(), anyio.move_on_after(0.3):
                await slow()
            with anyio.fail_after(1):
                await callee.ended.wait()
    assert callee.log == ["started", "cancelled"]


def cyclic_context(exc: BaseException) -> bool:
    """Whether ``exc.__context__`` leads back into the chain (Python never builds that)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None:
        if any(current is other for other in seen):
            return True
        seen.append(current)
        current = current.__context__
    return False


async def test_caller_task_cancelled_mid_call(make_node: NodeFactory) -> None:
    """The caller's whole node runs in a task that is cancelled while it waits on a call."""
    callee = SlowCallee(duration=30)
    cycles: list[str] = []
    with anyio.fail_after(10):
        async with make_node("worker", {"slow": callee.slow}) as worker:

            async def run_caller(*, task_status: anyio.abc.TaskStatus[None]) -> None:
                try:
                    async with make_node("caller") as caller:
                        await caller.wait_function_async("slow", timeout=5)
                        task_status.started()
                        with caller.as_current():
                            await slow()
                except BaseException as exc:
                    # A cancellation whose __context__ chain loops makes anyio's asyncio
                    # task_done callback spin forever (the loop hangs at 100 % CPU, and no
                    # fail_after can fire): note it, and cut it so the test can fail instead.
                    if cyclic_context(exc):
                        cycles.append(f"{type(exc).__name__}: {exc}")
                        exc.__context__ = None
                    raise

            async with anyio.create_task_group() as tg:
                await tg.start(run_caller)
                await callee.started.wait()
                tg.cancel_scope.cancel()
            with anyio.fail_after(1):
                await callee.ended.wait()
            await worker.wait_process_async("worker", timeout=1)  # still up
    assert callee.log == ["started", "cancelled"]
    assert not cycles, (
        "leaving `async with Global` by cancellation raised an exception whose __context__ "
        f"chain is cyclic: {cycles}"
    )


async def test_departed_caller_gets_its_remote_work_cancelled(make_node: NodeFactory) -> None:
    """A caller that leaves while its BG call runs: the controller cancels the work."""
    callee = SlowCallee(duration=30)
    with anyio.fail_after(10):
        async with make_node("worker", {"slow": callee.slow}):
            async with make_node("caller") as caller:
                await caller.wait_function_async("slow", timeout=5)
                with caller.as_current():
                    result = await slow_in_background()
                await callee.started.wait()
                # leaving the block says goodbye while the call is still in flight
            with anyio.fail_after(1):
                await callee.ended.wait()
    assert callee.log == ["started", "cancelled"]
    # the caller's own result is settled too: with an error saying its Global stopped
    assert result.ready
    assert isinstance(result.error, DaffiError), result.error


async def test_slow_sync_callback_does_not_block_async_calls(make_node: NodeFactory) -> None:
    started = threading.Event()
    finished = threading.Event()

    def block_cb(x: Any) -> Any:
        started.set()
        time.sleep(0.5)
        finished.set()
        return x

    async def quick_cb(x: Any) -> Any:
        return x

    results: list[Any] = []
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"block": block_cb, "quick": quick_cb}),
            make_node("caller") as caller,
        ):
            await caller.wait_process_async("worker", timeout=5)
            with caller.as_current():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(block, "slow")
                    assert await anyio.to_thread.run_sync(started.wait, 5)
                    t0 = time.monotonic()
                    for i in range(5):
                        results.append(await quick(i))
                    elapsed = time.monotonic() - t0
                    blocked_meanwhile = not finished.is_set()
    assert results == list(range(5))
    assert blocked_meanwhile, "the quick calls waited for the sync callback"
    assert elapsed < 0.4


async def test_cancelled_sync_callback_result_is_dropped(make_node: NodeFactory) -> None:
    calls: list[Any] = []
    finished = threading.Event()

    def block_cb(x: Any) -> Any:
        calls.append(x)
        if x == "stale":
            time.sleep(0.5)
            finished.set()
        return x

    with anyio.fail_after(10):
        async with make_node("worker", {"block": block_cb}), make_node("caller") as caller:
            await caller.wait_function_async("block", timeout=5)
            with caller.as_current():
                t0 = time.monotonic()
                with pytest.raises(DaffiTimeoutError):
                    await block.call("stale", exec_modifier=FG(timeout=0.2))
                assert time.monotonic() - t0 < 0.45  # did not wait for the thread
                # the thread finishes on its own; its result goes nowhere
                assert await anyio.to_thread.run_sync(finished.wait, 5)
                assert await block("fresh") == "fresh"
                assert await block.call("again", exec_modifier=FG(timeout=2)) == "again"
    assert calls == ["stale", "fresh", "again"]


def make_waiter(started: anyio.Event, ended: Callable[[str], None]) -> Callable[[], Any]:
    async def slow_cb() -> None:
        started.set()
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            ended("cancelled")
            raise

    return slow_cb


async def test_bg_cancel_cancels_the_remote_execution(make_node: NodeFactory) -> None:
    started = anyio.Event()
    ended = anyio.Event()
    how: list[str] = []

    def note(what: str) -> None:
        how.append(what)
        ended.set()

    with anyio.fail_after(10):
        async with (
            make_node("worker", {"slow": make_waiter(started, note)}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("slow", timeout=5)
            with caller.as_current():
                result = await slow.call(exec_modifier=BG())
                await started.wait()
                assert result.cancel(), "AsyncResult.cancel() did not cancel a running call"
                with anyio.fail_after(1):
                    await ended.wait()
    assert how == ["cancelled"]
