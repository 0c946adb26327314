"""FG calls between in-process nodes: values, signatures, routing, timeouts and concurrency."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import anyio
import pytest

from daffi import FG, Args
from daffi.decorators import alias, fetcher
from daffi.exceptions import GlobalContextError, UnableToFindCandidate
from daffi.exceptions import TimeoutError as DaffiTimeoutError
from daffi.registry import Fetcher

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.fabrics("memory", "nats")]


@dataclass
class Point:
    x: int
    y: int
    label: str = ""


@dataclass
class Moved:
    point: Point
    when: datetime
    pair: tuple[int, str]


# ---------------------------------------------------------------- fetchers used by the tests


@fetcher
async def echo(x):
    pass


@alias("echo")
@fetcher
def echo_blocking(x):
    pass


@fetcher
async def describe(*args, **kwargs):
    """Proxy: a docstring is not a body."""


@fetcher
async def move(p: Point, when: datetime, pair: tuple[int, str]) -> Moved:
    pass


@fetcher
async def kwonly(a, b=2, *, c, d=4): ...


@fetcher
async def whoami():
    pass


@fetcher
async def slow():
    pass


@alias("slow")
@fetcher(FG(timeout=0.5))
async def slow_half_second():
    pass


@fetcher
async def block():
    pass


@fetcher
async def nap():
    pass


@alias("describe")
@fetcher
async def body_tuple(a, b):
    return a * 10, b


@alias("describe")
@fetcher
async def body_args(a, b):
    return Args(a, key=b)


@alias("describe")
@fetcher
async def body_single(a, b):
    return {"a": a, "b": b}


@alias("describe")
@fetcher
def body_tuple_blocking(a, b):
    return a, b * 2


class PinnedToB(Fetcher):
    exec_modifier = FG(receiver="b", timeout=5)

    async def whoami(self):
        pass


class Plain(Fetcher):
    async def echo(self, x):
        pass


# ---------------------------------------------------------------- callbacks


def describe_cb(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


def returns(value: str) -> Callable[[], str]:
    def whoami_cb() -> str:
        return value

    return whoami_cb


# ---------------------------------------------------------------- values and signatures


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_args_and_kwargs_round_trip(make_node: NodeFactory, kind: str) -> None:
    async def describe_async(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return describe_cb(*args, **kwargs)

    cb = describe_cb if kind == "sync" else describe_async
    with anyio.fail_after(10):
        async with make_node("worker", {"describe": cb}), make_node("caller") as caller:
            await caller.wait_function_async("describe", timeout=5)
            with caller.as_current():
                result = await describe(
                    1,
                    "two",
                    3.5,
                    None,
                    True,
                    [1, [2, 3]],
                    {"k": "v"},
                    b"\x00\xff",
                    flag=False,
                    nested={"a": [1, 2]},
                )
    assert result == {
        "args": [1, "two", 3.5, None, True, [1, [2, 3]], {"k": "v"}, b"\x00\xff"],
        "kwargs": {"flag": False, "nested": {"a": [1, 2]}},
    }


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_rich_values_are_structured_from_annotations(
    make_node: NodeFactory, kind: str
) -> None:
    received: list[tuple[type, type, type]] = []

    def move_sync(p: Point, when: datetime, pair: tuple[int, str]) -> Moved:
        received.append((type(p), type(when), type(pair)))
        return Moved(Point(p.x + 1, p.y * 2, p.label.upper()), when + timedelta(hours=1), pair)

    async def move_async(p: Point, when: datetime, pair: tuple[int, str]) -> Moved:
        return move_sync(p, when, pair)

    cb = move_sync if kind == "sync" else move_async
    when = datetime(2024, 5, 1, 12, 30, 15)
    with anyio.fail_after(10):
        async with make_node("worker", {"move": cb}), make_node("caller") as caller:
            await caller.wait_function_async("move", timeout=5)
            with caller.as_current():
                result = await move(Point(1, 2, "p"), when, (7, "seven"))
    assert received == [(Point, datetime, tuple)]
    assert result == Moved(Point(2, 4, "P"), datetime(2024, 5, 1, 13, 30, 15), (7, "seven"))
    assert isinstance(result.point, Point)
    assert isinstance(result.pair, tuple)


async def test_aware_datetime_and_tuple_without_annotations(make_node: NodeFactory) -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with anyio.fail_after(10):
        async with make_node("worker", {"echo": lambda_free_echo}), make_node("caller") as c:
            await c.wait_function_async("echo", timeout=5)
            with c.as_current():
                assert await echo(when) == when  # same instant (now in UTC)
                assert await echo((1, "a", (2, 3))) == [1, "a", [2, 3]]


def lambda_free_echo(x: Any) -> Any:
    return x


async def test_keyword_only_parameters_and_defaults(make_node: NodeFactory) -> None:
    def kwonly_cb(a: int, b: int = 2, *, c: int, d: int = 4) -> list[int]:
        return [a, b, c, d]

    with anyio.fail_after(10):
        async with make_node("worker", {"kwonly": kwonly_cb}), make_node("caller") as caller:
            await caller.wait_function_async("kwonly", timeout=5)
            with caller.as_current():
                assert await kwonly(1, c=3) == [1, 2, 3, 4]
                assert await kwonly(1, 5, c=3, d=6) == [1, 5, 3, 6]
                assert await kwonly(a=9, c=8) == [9, 2, 8, 4]


async def test_fetcher_bodies_decide_what_is_sent(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"describe": describe_cb}), make_node("caller") as caller:
            await caller.wait_function_async("describe", timeout=5)
            with caller.as_current():
                assert await body_tuple(1, "x") == {"args": [10, "x"], "kwargs": {}}
                assert await body_args(1, "x") == {"args": [1], "kwargs": {"key": "x"}}
                assert await body_single(1, "x") == {
                    "args": [{"a": 1, "b": "x"}],
                    "kwargs": {},
                }
                # a blocking fetcher with a body, from a worker thread
                result = await anyio.to_thread.run_sync(body_tuple_blocking, 1, "y")
                assert result == {"args": [1, "yy"], "kwargs": {}}


async def test_def_fetcher_on_the_loop_thread_is_refused(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"echo": lambda_free_echo}), make_node("caller") as caller:
            await caller.wait_function_async("echo", timeout=5)
            with caller.as_current():
                with pytest.raises(GlobalContextError, match="async"):
                    echo_blocking(1)
                # the same fetcher works from a worker thread, and the node still works
                assert await anyio.to_thread.run_sync(echo_blocking, 7) == 7
                assert await echo(8) == 8


# ---------------------------------------------------------------- routing


async def test_round_robin_alternates_evenly(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with (
            make_node("a", {"whoami": returns("a")}),
            make_node("b", {"whoami": returns("b")}),
            make_node("caller") as caller,
        ):
            await caller.wait_process_async("a", timeout=5)
            await caller.wait_process_async("b", timeout=5)
            with caller.as_current():
                results = [await whoami() for _ in range(10)]
    assert Counter(results) == {"a": 5, "b": 5}
    assert all(x != y for x, y in pairwise(results)), results


async def test_round_robin_never_picks_the_caller(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with (
            make_node("a", {"whoami": returns("a")}),
            make_node("b", {"whoami": returns("b")}),
            make_node("c", {"whoami": returns("c")}) as c,
        ):
            await c.wait_process_async("a", timeout=5)
            await c.wait_process_async("b", timeout=5)
            with c.as_current():
                results = [await whoami() for _ in range(10)]
    assert Counter(results) == {"a": 5, "b": 5}


async def test_only_the_caller_offers_it(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("a", {"whoami": returns("a")}) as a:
            with a.as_current(), pytest.raises(UnableToFindCandidate):
                await whoami()
            # daffi 2 programs catch it as a GlobalContextError
            with a.as_current(), pytest.raises(GlobalContextError):
                await whoami()


async def test_receiver_pins_the_process(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with (
            make_node("a", {"whoami": returns("a")}),
            make_node("b", {"whoami": returns("b")}),
            make_node("c", {"whoami": returns("c")}) as c,
        ):
            await c.wait_process_async("a", timeout=5)
            await c.wait_process_async("b", timeout=5)
            with c.as_current():
                pinned_b = [await whoami.call(exec_modifier=FG(receiver="b")) for _ in range(4)]
                pinned_a = [await whoami.call(exec_modifier=FG(receiver="a")) for _ in range(3)]
                # a Fetcher class's exec_modifier pins too; .call() overrides it once
                remote = PinnedToB()
                by_class = [await remote.whoami() for _ in range(3)]
                override = await remote.whoami.call(exec_modifier=FG(receiver="a"))
    assert pinned_b == ["b"] * 4
    assert pinned_a == ["a"] * 3
    assert by_class == ["b"] * 3
    assert override == "a"


async def test_receiver_may_be_the_caller_itself(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("a", {"whoami": returns("a")}) as a:
            with a.as_current():
                assert await whoami.call(exec_modifier=FG(receiver="a")) == "a"


async def test_fetcher_class_with_default_modifier(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"echo": lambda_free_echo}), make_node("caller") as caller:
            await caller.wait_function_async("echo", timeout=5)
            with caller.as_current():
                assert await Plain().echo({"x": [1]}) == {"x": [1]}


# ---------------------------------------------------------------- timeouts and cancellation


@pytest.mark.parametrize("how", ["call-override", "decorator"])
async def test_fg_timeout_raises_and_cancels_the_remote_call(
    make_node: NodeFactory, how: str
) -> None:
    started = anyio.Event()
    cancelled = anyio.Event()

    async def slow_cb() -> str:
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            cancelled.set()
        return "finished"

    with anyio.fail_after(10):
        async with make_node("worker", {"slow": slow_cb}), make_node("caller") as caller:
            await caller.wait_function_async("slow", timeout=5)
            with caller.as_current():
                t0 = time.monotonic()
                caught: BaseException | None = None
                try:
                    if how == "decorator":
                        await slow_half_second()
                    else:
                        await slow.call(exec_modifier=FG(timeout=0.5))
                except TimeoutError as exc:  # the built-in name catches daffi's TimeoutError
                    caught = exc
                elapsed = time.monotonic() - t0
            assert isinstance(caught, DaffiTimeoutError)
            assert 0.4 <= elapsed < 1.5
            assert started.is_set()
            with anyio.fail_after(2):
                await cancelled.wait()


# ---------------------------------------------------------------- concurrency


async def test_fifty_concurrent_calls(make_node: NodeFactory) -> None:
    async def square_cb(x: int) -> list[int]:
        await anyio.sleep(0.01)
        return [x, x * x]

    results: dict[int, Any] = {}
    with anyio.fail_after(10):
        async with make_node("worker", {"echo": square_cb}), make_node("caller") as caller:
            await caller.wait_function_async("echo", timeout=5)
            with caller.as_current():

                async def one(i: int) -> None:
                    results[i] = await echo(i)

                async with anyio.create_task_group() as tg:
                    for i in range(50):
                        tg.start_soon(one, i)
    assert results == {i: [i, i * i] for i in range(50)}


async def test_blocking_sync_callback_does_not_block_async_ones(make_node: NodeFactory) -> None:
    def block_cb() -> str:
        time.sleep(0.5)
        return "sync"

    async def nap_cb() -> str:
        await anyio.sleep(0.5)
        return "async"

    results: dict[str, Any] = {}
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"block": block_cb, "nap": nap_cb}),
            make_node("caller") as caller,
        ):
            await caller.wait_process_async("worker", timeout=5)
            with caller.as_current():

                async def run(name: str, fn: Any) -> None:
                    results[name] = await fn()

                t0 = time.monotonic()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run, "block", block)
                    tg.start_soon(run, "nap", nap)
                elapsed = time.monotonic() - t0
    assert results == {"block": "sync", "nap": "async"}
    assert elapsed < 0.85, f"calls ran one after the other ({elapsed:.2f} s)"
