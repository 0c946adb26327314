"""BROADCAST calls: every other node offering the callback, results and errors by node."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from daffi import BROADCAST
from daffi.decorators import alias, fetcher
from daffi.exceptions import RemoteCallError, UnableToFindCandidate
from daffi.exceptions import TimeoutError as DaffiTimeoutError

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.fabrics("memory", "nats")]

NODES = ("n1", "n2", "n3")


@fetcher(BROADCAST)
async def who():
    pass


@alias("who")
@fetcher(BROADCAST(timeout=0.3))
async def who_with_timeout():
    pass


@alias("who")
@fetcher(BROADCAST(return_result=False))
async def who_forget():
    pass


@fetcher(BROADCAST)
async def count_up(n):
    pass


@fetcher(BROADCAST)
async def nobody_offers_this():
    pass


def returns(name: str) -> Callable[[], str]:
    def who_cb() -> str:
        return name

    return who_cb


async def test_broadcast_collects_every_node_but_the_caller(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with (
            make_node("n3", {"who": returns("n3")}),
            make_node("n1", {"who": returns("n1")}),
            make_node("n2", {"who": returns("n2")}),
            # the caller offers `who` too, and is left out
            make_node("caller", {"who": returns("caller")}) as caller,
        ):
            for name in NODES:
                await caller.wait_process_async(name, timeout=5)
            with caller.as_current():
                result = await who()
    assert result == {"n1": "n1", "n2": "n2", "n3": "n3"}
    assert list(result) == ["n1", "n2", "n3"]


@pytest.mark.parametrize("failing_answers", ["first", "last"])
async def test_one_failing_node(make_node: NodeFactory, failing_answers: str) -> None:
    failed = anyio.Event()
    succeeded: dict[str, anyio.Event] = {"n1": anyio.Event(), "n3": anyio.Event()}

    def ok(name: str) -> Callable[[], Any]:
        async def who_cb() -> str:
            if failing_answers == "first":
                await failed.wait()
                # the error reply travels first; give it a head start over our answers
                await anyio.sleep(0.05)
            succeeded[name].set()
            return name

        return who_cb

    async def broken() -> str:
        if failing_answers == "last":
            for event in succeeded.values():
                await event.wait()
            await anyio.sleep(0.05)  # let both answers reach the caller first
        failed.set()
        raise ValueError("n2 is broken")

    with anyio.fail_after(10):
        async with (
            make_node("n1", {"who": ok("n1")}),
            make_node("n2", {"who": broken}),
            make_node("n3", {"who": ok("n3")}),
            make_node("caller") as caller,
        ):
            for name in NODES:
                await caller.wait_process_async(name, timeout=5)
            with caller.as_current(), pytest.raises(RemoteCallError) as info:
                await who()
    error = info.value
    assert failed.is_set()
    assert all(event.is_set() for event in succeeded.values())
    assert error.results == {"n1": "n1", "n3": "n3"}
    assert list(error.results) == ["n1", "n3"]
    assert list(error.errors) == ["n2"]
    node_error = error.errors["n2"]
    assert isinstance(node_error, RemoteCallError)
    assert isinstance(node_error, ValueError)  # `except ValueError` works per node
    assert node_error.remote_type == "ValueError"
    assert node_error.process_name == "n2"
    assert "n2 is broken" in str(node_error)
    assert "n2" in str(error)


async def test_broadcast_timeout_reports_the_slow_node(make_node: NodeFactory) -> None:
    cancelled = anyio.Event()

    async def slow() -> str:
        try:
            await anyio.sleep(5)
        finally:
            cancelled.set()
        return "n3"

    with anyio.fail_after(10):
        async with (
            make_node("n1", {"who": returns("n1")}),
            make_node("n2", {"who": returns("n2")}),
            make_node("n3", {"who": slow}),
            make_node("caller") as caller,
        ):
            for name in NODES:
                await caller.wait_process_async(name, timeout=5)
            with caller.as_current(), pytest.raises(RemoteCallError) as info:
                await who_with_timeout()
            with anyio.fail_after(2):
                await cancelled.wait()  # the slow node's execution was cancelled
    assert info.value.results == {"n1": "n1", "n2": "n2"}
    assert list(info.value.errors) == ["n3"]
    assert isinstance(info.value.errors["n3"], DaffiTimeoutError)


async def test_broadcast_without_result_runs_everywhere(make_node: NodeFactory) -> None:
    ran = {name: anyio.Event() for name in NODES}

    def mark(name: str) -> Callable[[], Any]:
        async def who_cb() -> str:
            ran[name].set()
            return name

        return who_cb

    with anyio.fail_after(10):
        async with (
            make_node("n1", {"who": mark("n1")}),
            make_node("n2", {"who": mark("n2")}),
            make_node("n3", {"who": mark("n3")}),
            make_node("caller") as caller,
        ):
            for name in NODES:
                await caller.wait_process_async(name, timeout=5)
            with caller.as_current():
                assert await who_forget() is None
            for event in ran.values():
                await event.wait()


async def test_broadcast_of_a_generator_callback(make_node: NodeFactory) -> None:
    def counter(name: str) -> Callable[[int], AsyncIterator[str]]:
        async def count_up_cb(n: int) -> AsyncIterator[str]:
            for i in range(n):
                yield f"{name}-{i}"

        return count_up_cb

    def counter_sync(n: int) -> Any:
        yield from range(n)

    with anyio.fail_after(10):
        async with (
            make_node("n1", {"count_up": counter("n1")}),
            make_node("n2", {"count_up": counter("n2")}),
            make_node("n3", {"count_up": counter_sync}),
            make_node("caller") as caller,
        ):
            for name in NODES:
                await caller.wait_process_async(name, timeout=5)
            with caller.as_current():
                result = await count_up(200)
    assert list(result) == ["n1", "n2", "n3"]
    assert result["n1"] == [f"n1-{i}" for i in range(200)]
    assert result["n2"] == [f"n2-{i}" for i in range(200)]
    assert result["n3"] == list(range(200))


async def test_broadcast_without_candidates(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with (
            make_node("n1", {"who": returns("n1")}),
            make_node("caller", {"who": returns("caller")}) as caller,
        ):
            await caller.wait_process_async("n1", timeout=5)
            with caller.as_current():
                with pytest.raises(UnableToFindCandidate):
                    await nobody_offers_this()
                with pytest.raises(UnableToFindCandidate):  # fire-and-forget raises at once too
                    await nobody_offers_this.call(exec_modifier=BROADCAST(return_result=False))


async def test_broadcast_only_the_caller_offers_it(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("caller", {"who": returns("caller")}) as caller:
            with caller.as_current(), pytest.raises(UnableToFindCandidate):
                await who()
