"""Streams in both directions: generator callbacks (download) and generator fetchers (upload).

Flow control: the stream window is 64 items (``daffi._protocol.STREAM_WINDOW``); credit comes
back in batches of 32. A producer may run ahead of its consumer by about the window, never more.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest

from daffi import BG, BROADCAST, FG, Args, AsyncResult
from daffi.decorators import alias, fetcher
from daffi.exceptions import RemoteCallError

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.fabrics("memory", "nats")]

WINDOW = 64
BATCH = 32
LARGE = 10**9  # "forever": the consumer always stops first


# ---------------------------------------------------------------- download fetchers


@fetcher
async def numbers(n):
    pass


@alias("numbers")
@fetcher
def numbers_blocking(n):
    pass


# ---------------------------------------------------------------- upload (generator) fetchers


@fetcher
async def record(n):
    for i in range(n):
        yield i


@alias("record")
@fetcher
def record_blocking(n):
    yield from range(n)


@alias("record")
@fetcher(BROADCAST)
async def record_everywhere(n):
    for i in range(n):
        yield i


@fetcher
async def pairs(n):
    for i in range(n):
        if i % 3 == 0:
            yield Args(i, tag="args")
        elif i % 3 == 1:
            yield (i, "tuple")
        else:
            yield i


class Producer:
    """Counts what an upload fetcher's generator produced; tells when it reached ``mark``."""

    def __init__(self, mark: int) -> None:
        self.produced = 0
        self.mark = mark
        self.reached = threading.Event()

    def made_one(self) -> None:
        self.produced += 1
        if self.produced >= self.mark:
            self.reached.set()


# ---------------------------------------------------------------- callbacks


class Counted:
    """A generator callback (sync or async) that counts its items and notes its end."""

    def __init__(self, kind: str, fail_after: int | None = None) -> None:
        self.kind = kind
        self.fail_after = fail_after
        self.produced = 0
        self.finished = threading.Event()  # its `finally` ran (set from any thread)
        self.reached_window = threading.Event()

    def _next(self, i: int) -> int:
        if self.fail_after is not None and i == self.fail_after:
            raise ValueError(f"generator failed after {i} items")
        self.produced += 1
        if self.produced >= WINDOW:
            self.reached_window.set()
        return i

    def callback(self) -> Callable[[int], Any]:
        def numbers_sync(n: int) -> Iterator[int]:
            try:
                for i in range(n):
                    yield self._next(i)
            finally:
                self.finished.set()

        async def numbers_async(n: int) -> AsyncIterator[int]:
            try:
                for i in range(n):
                    yield self._next(i)
            finally:
                self.finished.set()

        return numbers_sync if self.kind == "sync" else numbers_async


async def wait_thread_event(event: threading.Event, timeout: float = 5) -> None:
    assert await anyio.to_thread.run_sync(event.wait, timeout), "event not set in time"


async def settle() -> None:
    """Let a producer that still could run do so before we look at its count.

    Waiting for "no more progress" cannot be an event: it is the absence of one. The
    callee's task blocks on the credit gate (wait_all_tasks_blocked sees that on the loop),
    but a sync generator runs in a worker thread, which the loop cannot see; the bounded
    wait covers that thread and the hops through the controller.
    """
    await anyio.wait_all_tasks_blocked()
    await anyio.sleep(0.15)
    await anyio.wait_all_tasks_blocked()


# ---------------------------------------------------------------- generator callbacks


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_download_complete_and_in_order(make_node: NodeFactory, kind: str) -> None:
    source = Counted(kind)
    with anyio.fail_after(15):
        async with (
            make_node("worker", {"numbers": source.callback()}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("numbers", timeout=5)
            with caller.as_current():
                received = [x async for x in await numbers(5000)]
                # a `def` fetcher iterates from a worker thread
                blocking = await anyio.to_thread.run_sync(lambda: list(numbers_blocking(1000)))
                # BG on a generator callback: the result is the list of its values
                result = await numbers.call(300, exec_modifier=BG())
                assert isinstance(result, AsyncResult)
                collected = await result.get_async()
    assert received == list(range(5000))
    assert blocking == list(range(1000))
    assert collected == list(range(300))


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("face", ["async-iterator", "def-iterator"])
async def test_leaving_early_stops_the_remote_generator(
    make_node: NodeFactory, kind: str, face: str
) -> None:
    source = Counted(kind)
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"numbers": source.callback()}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("numbers", timeout=5)
            with caller.as_current():
                if face == "async-iterator":
                    stream = await numbers(LARGE)
                    first = []
                    async for x in stream:
                        first.append(x)
                        if len(first) == 10:
                            break
                    await stream.aclose()
                else:

                    def take_ten() -> list[int]:
                        it = numbers_blocking(LARGE)
                        got = [next(it) for _ in range(10)]
                        it.close()
                        return got

                    first = await anyio.to_thread.run_sync(take_ten)
                await wait_thread_event(source.finished)
                produced = source.produced
                # the node still serves calls afterwards
                assert [x async for x in await numbers(3)] == [0, 1, 2]
    assert first == list(range(10))
    assert produced < 10 + 2 * WINDOW, produced


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_download_backpressure(make_node: NodeFactory, kind: str) -> None:
    source = Counted(kind)
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"numbers": source.callback()}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("numbers", timeout=5)
            with caller.as_current():
                stream = await numbers(LARGE)  # and nobody reads it
                await wait_thread_event(source.reached_window)
                await settle()
                stalled_at = source.produced
                await settle()
                still = source.produced
                # reading a few items lets it go on, by about what was consumed
                got = [await stream.__anext__() for _ in range(BATCH)]
                await settle()
                after_reading = source.produced
                await stream.aclose()
                await wait_thread_event(source.finished)
    assert stalled_at == still, "the producer kept going without credit"
    assert WINDOW <= stalled_at <= WINDOW + BATCH, stalled_at
    assert got == list(range(BATCH))
    assert stalled_at < after_reading <= stalled_at + BATCH + 1, (stalled_at, after_reading)


# k = 5 fails inside the first batch a sync generator is pulled in; k = 100 is more than a
# window, so credit has to flow before the error.
@pytest.mark.parametrize("k", [5, 100])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_generator_error_reaches_the_consumer_after_its_items(
    make_node: NodeFactory, kind: str, k: int
) -> None:
    source = Counted(kind, fail_after=k)
    received: list[int] = []
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"numbers": source.callback()}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("numbers", timeout=5)

            async def drain() -> None:
                async for x in await numbers(1000):
                    received.append(x)

            with caller.as_current(), pytest.raises(RemoteCallError) as info:
                await drain()
    assert received == list(range(k))
    assert isinstance(info.value, ValueError)
    assert f"generator failed after {k} items" in str(info.value)


# ---------------------------------------------------------------- generator fetchers


def recorder(kind: str, out: list[Any], fail_on: int | None = None) -> Callable[..., Any]:
    def record_sync(x: Any) -> None:
        if x == fail_on:
            raise ValueError(f"cannot take {x}")
        out.append(x)

    async def record_async(x: Any) -> None:
        record_sync(x)

    return record_sync if kind == "sync" else record_async


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_upload_every_item_in_order_once(make_node: NodeFactory, kind: str) -> None:
    recorded: list[Any] = []
    with anyio.fail_after(15):
        async with (
            make_node("worker", {"record": recorder(kind, recorded)}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("record", timeout=5)
            with caller.as_current():
                assert await record(2000) is None
                first = list(recorded)
                recorded.clear()
                # a `def` generator fetcher blocks: from a worker thread
                assert await anyio.to_thread.run_sync(record_blocking, 500) is None
    assert first == list(range(2000))
    assert recorded == list(range(500))


async def test_many_short_uploads(make_node: NodeFactory) -> None:
    """Streams that are over at once (no item, one item): the callee must not miss the first
    item or the end, however soon they follow the call."""
    recorded: list[Any] = []
    outcomes: list[tuple[int, list[Any]]] = []
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"record": recorder("sync", recorded)}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("record", timeout=5)
            with caller.as_current():
                for n in [0, 1, 2, 3] * 10:
                    recorded.clear()
                    with anyio.fail_after(2):
                        await record(n)
                    outcomes.append((n, list(recorded)))
    assert outcomes == [(n, list(range(n))) for n in [0, 1, 2, 3] * 10]


async def test_upload_items_as_args_tuple_or_value(make_node: NodeFactory) -> None:
    recorded: list[tuple[int, str]] = []

    def pairs_cb(x: int, tag: str = "value") -> None:
        recorded.append((x, tag))

    with anyio.fail_after(10):
        async with make_node("worker", {"pairs": pairs_cb}), make_node("caller") as caller:
            await caller.wait_function_async("pairs", timeout=5)
            with caller.as_current():
                await pairs(9)
    assert recorded == [(i, ("args", "tuple", "value")[i % 3]) for i in range(9)]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_upload_fg_raises_the_first_error(make_node: NodeFactory, kind: str) -> None:
    recorded: list[Any] = []
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"record": recorder(kind, recorded, fail_on=5)}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("record", timeout=5)
            with caller.as_current():
                with pytest.raises(ValueError, match="cannot take 5") as info:
                    await record(500)
                assert isinstance(info.value, RemoteCallError)
                assert recorded == [0, 1, 2, 3, 4]  # nothing after the failing item
                # the node still takes streams
                recorded.clear()
                await record.call(3, exec_modifier=FG(receiver="worker"))
    assert recorded == [0, 1, 2]


@pytest.mark.parametrize("face", ["async-generator", "def-generator"])
async def test_upload_bg_resolves_after_every_item(make_node: NodeFactory, face: str) -> None:
    recorded: list[Any] = []
    release = anyio.Event()

    async def record_cb(x: int) -> None:
        await release.wait()
        recorded.append(x)

    with anyio.fail_after(10):
        async with make_node("worker", {"record": record_cb}), make_node("caller") as caller:
            await caller.wait_function_async("record", timeout=5)
            with caller.as_current():
                if face == "async-generator":
                    result = await record.call(1000, exec_modifier=BG())
                else:
                    result = record_blocking.call(1000, exec_modifier=BG())
                assert isinstance(result, AsyncResult)
                assert not result.ready
                release.set()
                assert await result.get_async() is None
                assert recorded == list(range(1000))


async def test_upload_broadcast_reaches_every_node(make_node: NodeFactory) -> None:
    recorded: dict[str, list[Any]] = {"n1": [], "n2": [], "n3": []}
    with anyio.fail_after(10):
        async with (
            make_node("n1", {"record": recorder("sync", recorded["n1"])}),
            make_node("n2", {"record": recorder("async", recorded["n2"])}),
            make_node("n3", {"record": recorder("async", recorded["n3"])}),
            make_node("caller") as caller,
        ):
            for name in recorded:
                await caller.wait_process_async(name, timeout=5)
            with caller.as_current():
                result = await record_everywhere(500)
    assert result == {"n1": None, "n2": None, "n3": None}
    assert list(result) == ["n1", "n2", "n3"]
    for name, items in recorded.items():
        assert items == list(range(500)), name


@pytest.mark.parametrize("face", ["async-generator", "def-generator"])
async def test_upload_backpressure(make_node: NodeFactory, face: str) -> None:
    recorded: list[Any] = []
    release = anyio.Event()
    first_item = anyio.Event()
    producer = Producer(mark=WINDOW)

    async def record_cb(x: int) -> None:
        first_item.set()
        await release.wait()
        recorded.append(x)

    @alias("record")
    @fetcher
    async def counted_async(n: int) -> AsyncIterator[int]:
        for i in range(n):
            producer.made_one()
            yield i

    @alias("record")
    @fetcher
    def counted_sync(n: int) -> Iterator[int]:
        for i in range(n):
            producer.made_one()
            yield i

    total = 1000
    with anyio.fail_after(15):
        async with make_node("worker", {"record": record_cb}), make_node("caller") as caller:
            await caller.wait_function_async("record", timeout=5)
            with caller.as_current():
                async with anyio.create_task_group() as tg:
                    if face == "async-generator":
                        tg.start_soon(counted_async, total)
                    else:
                        tg.start_soon(anyio.to_thread.run_sync, counted_sync, total)
                    await first_item.wait()
                    await wait_thread_event(producer.reached)
                    await settle()
                    ahead = producer.produced
                    await settle()
                    still = producer.produced
                    release.set()
    assert ahead == still, "the fetcher kept producing while the callee was blocked"
    # the async generator is pulled one item at a time; a `def` generator in batches
    slack = 2 if face == "async-generator" else BATCH
    assert WINDOW <= ahead <= WINDOW + slack, ahead
    assert recorded == list(range(total))
    assert producer.produced == total


async def test_many_streams_at_once(make_node: NodeFactory) -> None:
    """Concurrent downloads on one connection do not mix up their items."""
    results: dict[int, list[int]] = {}

    async def numbers_cb(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i * 1000 + n

    with anyio.fail_after(10):
        async with make_node("worker", {"numbers": numbers_cb}), make_node("caller") as caller:
            await caller.wait_function_async("numbers", timeout=5)
            with caller.as_current():

                async def one(n: int) -> None:
                    results[n] = [x async for x in await numbers(n)]

                async with anyio.create_task_group() as tg:
                    for n in itertools.chain(range(1, 10), (500, 700)):
                        tg.start_soon(one, n)
    for n, items in results.items():
        assert items == [i * 1000 + n for i in range(n)], n
