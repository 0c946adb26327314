"""NATS mode means what controller mode means: streams in both directions with the same credit
rules, cancellation and deadlines (compare tests/integration/test_streams.py and
test_cancellation.py, whose assertions these repeat).

Flow control: the window is ``daffi._protocol.STREAM_WINDOW`` items, credit comes back in
batches of half of it; a producer runs ahead of its consumer by about the window, never more.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import pytest

from daffi import BG, FG, Global
from daffi._protocol import STREAM_WINDOW
from daffi.decorators import alias, fetcher
from daffi.exceptions import RemoteCallError
from daffi.exceptions import TimeoutError as DaffiTimeoutError
from daffi.registry import CallbackRegistry

from ._servers import NatsServer

pytestmark = pytest.mark.anyio

BATCH = STREAM_WINDOW // 2
LARGE = 10**9  # "forever": the consumer always stops first


@fetcher
async def numbers(n):
    pass


@alias("numbers")
@fetcher
def numbers_blocking(n):
    pass


@fetcher
async def record(n):
    for i in range(n):
        yield i


@alias("record")
@fetcher
def record_blocking(n):
    yield from range(n)


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
async def time_left():
    pass


@alias("time_left")
@fetcher(FG(timeout=2))
async def time_left_within_two():
    pass


def registry_with(callbacks: dict[str, Callable[..., Any]] | None = None) -> CallbackRegistry:
    registry = CallbackRegistry()
    for name, fn in (callbacks or {}).items():
        registry.add(fn, name)
    return registry


def node(
    server: NatsServer, name: str, callbacks: dict[str, Callable[..., Any]] | None = None
) -> Global:
    return Global(name, address=f"nats://{server.url}", registry=registry_with(callbacks))


class Counted:
    """A generator callback (sync or async) that counts its items and notes its end."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.produced = 0
        self.finished = threading.Event()  # its `finally` ran (set from any thread)
        self.reached_window = threading.Event()

    def _next(self, i: int) -> int:
        self.produced += 1
        if self.produced >= STREAM_WINDOW:
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
    """Let a producer that still could run do so before we look at its count (as in
    tests/integration/test_streams.py: "no more progress" is the absence of an event; the
    bounded wait covers worker threads and the hops through the NATS server)."""
    await anyio.wait_all_tasks_blocked()
    await anyio.sleep(0.2)
    await anyio.wait_all_tasks_blocked()


# ---------------------------------------------------------------- generator callbacks


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_download_complete_and_in_order(
    nats_server: NatsServer, anyio_backend: str, kind: str
) -> None:
    source = Counted(kind)
    with anyio.fail_after(20):
        async with (
            node(nats_server, "worker", {"numbers": source.callback()}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_function_async("numbers", timeout=5)
            with caller.as_current():
                # many windows' worth: credit must flow back over NATS
                received = [x async for x in await numbers(20 * STREAM_WINDOW)]
                blocking = await anyio.to_thread.run_sync(
                    lambda: list(numbers_blocking(5 * STREAM_WINDOW))
                )
                result = await numbers.call(300, exec_modifier=BG())
                collected = await result.get_async()
    assert received == list(range(20 * STREAM_WINDOW))
    assert blocking == list(range(5 * STREAM_WINDOW))
    assert collected == list(range(300))


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_download_backpressure(
    nats_server: NatsServer, anyio_backend: str, kind: str
) -> None:
    source = Counted(kind)
    with anyio.fail_after(15):
        async with (
            node(nats_server, "worker", {"numbers": source.callback()}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_function_async("numbers", timeout=5)
            with caller.as_current():
                stream = await numbers(LARGE)  # and nobody reads it
                await wait_thread_event(source.reached_window)
                await settle()
                stalled_at = source.produced
                await settle()
                still = source.produced
                got = [await stream.__anext__() for _ in range(BATCH)]
                await settle()
                after_reading = source.produced
                await stream.aclose()
                await wait_thread_event(source.finished)
    assert stalled_at == still, "the producer kept going without credit"
    assert STREAM_WINDOW <= stalled_at <= STREAM_WINDOW + BATCH, stalled_at
    assert got == list(range(BATCH))
    assert stalled_at < after_reading <= stalled_at + BATCH + 1, (stalled_at, after_reading)


@pytest.mark.parametrize("face", ["async-iterator", "def-iterator"])
async def test_leaving_early_stops_the_remote_generator(
    nats_server: NatsServer, anyio_backend: str, face: str
) -> None:
    source = Counted("async")
    with anyio.fail_after(15):
        async with (
            node(nats_server, "worker", {"numbers": source.callback()}),
            node(nats_server, "caller") as caller,
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
                assert [x async for x in await numbers(3)] == [0, 1, 2]
    assert first == list(range(10))
    assert produced < 10 + 2 * STREAM_WINDOW, produced


async def test_many_short_downloads(nats_server: NatsServer, anyio_backend: str) -> None:
    """Streams that are over at once (no item to a few): the caller must get every item
    before the end, however soon the end follows them (the end must not overtake them on
    the caller's side)."""

    async def numbers_cb(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    outcomes: list[tuple[int, list[int]]] = []
    sizes = [0, 1, 2, 3, 4] * 20
    with anyio.fail_after(20):
        async with (
            node(nats_server, "worker", {"numbers": numbers_cb}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_function_async("numbers", timeout=5)
            with caller.as_current():
                for n in sizes:
                    with anyio.fail_after(2):
                        outcomes.append((n, [x async for x in await numbers(n)]))
    lost = [(n, got) for n, got in outcomes if got != list(range(n))]
    assert lost == [], f"{len(lost)} of {len(sizes)} downloads lost items: {lost[:5]}"


# ---------------------------------------------------------------- generator fetchers


@pytest.mark.parametrize("face", ["async-generator", "def-generator"])
async def test_upload_every_item_in_order_once(
    nats_server: NatsServer, anyio_backend: str, face: str
) -> None:
    recorded: list[Any] = []
    total = 20 * STREAM_WINDOW
    with anyio.fail_after(20):
        async with (
            node(nats_server, "worker", {"record": recorded.append}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_function_async("record", timeout=5)
            with caller.as_current():
                if face == "async-generator":
                    assert await record(total) is None
                else:
                    assert await anyio.to_thread.run_sync(record_blocking, total) is None
    assert recorded == list(range(total))


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


@pytest.mark.parametrize("face", ["async-generator", "def-generator"])
async def test_upload_backpressure(nats_server: NatsServer, anyio_backend: str, face: str) -> None:
    recorded: list[Any] = []
    release = anyio.Event()
    first_item = anyio.Event()
    producer = Producer(mark=STREAM_WINDOW)

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

    total = 600
    with anyio.fail_after(20):
        async with (
            node(nats_server, "worker", {"record": record_cb}),
            node(nats_server, "caller") as caller,
        ):
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
    slack = 2 if face == "async-generator" else BATCH
    assert STREAM_WINDOW <= ahead <= STREAM_WINDOW + slack, ahead
    assert recorded == list(range(total))


# ---------------------------------------------------------------- cancellation and deadlines


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


async def test_fg_timeout_cancels_the_remote_execution(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    callee = SlowCallee()
    with anyio.fail_after(15):
        async with (
            node(nats_server, "worker", {"slow": callee.slow}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_function_async("slow", timeout=5)
            with caller.as_current():
                t0 = time.monotonic()
                with pytest.raises(DaffiTimeoutError):
                    await slow_with_timeout()
                elapsed = time.monotonic() - t0
                with anyio.fail_after(1):
                    await callee.ended.wait()
    assert 0.25 <= elapsed < 0.6, f"FG(timeout=0.3) raised after {elapsed:.2f} s"
    assert callee.log == ["started", "cancelled"]
    assert callee.ended_at - callee.started_at < 0.7


async def test_caller_cancel_scope_cancels_the_remote_call(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    callee = SlowCallee()
    with anyio.fail_after(15):
        async with (
            node(nats_server, "worker", {"slow": callee.slow}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_function_async("slow", timeout=5)
            with caller.as_current():
                # a scope without a deadline, cancelled by hand: only the Cancel message,
                # not the deadline carried with the call, can stop the callee
                async with anyio.create_task_group() as tg:
                    tg.start_soon(slow)
                    await callee.started.wait()
                    tg.cancel_scope.cancel()
                cancelled_at = time.monotonic()
                with anyio.fail_after(1):
                    await callee.ended.wait()
                callee.duration = 0
                assert await slow() == "finished"  # the node serves again afterwards
    assert callee.log[:2] == ["started", "cancelled"]
    assert callee.ended_at - cancelled_at < 0.5


async def time_left_cb() -> float | None:
    """As docs/examples/basics/server.py: seconds until the caller's deadline, or None."""
    deadline = anyio.current_effective_deadline()
    return None if deadline == math.inf else deadline - anyio.current_time()


@pytest.mark.parametrize("how", ["fg-timeout", "outer-scope", "none"])
async def test_the_callee_runs_under_the_callers_deadline(
    nats_server: NatsServer, anyio_backend: str, how: str
) -> None:
    with anyio.fail_after(15):
        async with (
            node(nats_server, "worker", {"time_left": time_left_cb}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_function_async("time_left", timeout=5)
            with caller.as_current():
                if how == "fg-timeout":
                    left = await time_left_within_two()
                elif how == "outer-scope":
                    with anyio.fail_after(2):
                        left = await time_left()
                else:
                    left = await time_left()
    if how == "none":
        # no timeout of its own: the call still carries the deadline its caller runs under
        # (this test's fail_after(15)), as in controller mode
        assert left is not None
        assert 10 < left <= 15, left
    else:
        assert left is not None
        assert 1.5 < left <= 2.0, left


async def test_an_expired_outer_scope_ends_the_remote_call(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    callee = SlowCallee()
    with anyio.fail_after(15):
        async with (
            node(nats_server, "worker", {"slow": callee.slow}),
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_function_async("slow", timeout=5)
            with caller.as_current(), anyio.move_on_after(0.3):
                await slow()
            with anyio.fail_after(1):
                await callee.ended.wait()
    assert callee.log == ["started", "cancelled"]


async def test_departed_caller_gets_its_remote_work_cancelled(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    callee = SlowCallee(duration=30)
    with anyio.fail_after(15):
        async with node(nats_server, "worker", {"slow": callee.slow}):
            async with node(nats_server, "caller") as caller:
                await caller.wait_function_async("slow", timeout=5)
                with caller.as_current():
                    result = await slow_in_background()
                await callee.started.wait()
            with anyio.fail_after(2):
                await callee.ended.wait()
    assert callee.log == ["started", "cancelled"]
    assert result.ready
    assert isinstance(result.error, Exception), result.error


async def test_a_stream_error_reaches_the_consumer_after_its_items(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    k = STREAM_WINDOW + 36  # more than a window: credit has to flow before the error

    async def failing(n: int) -> AsyncIterator[int]:
        for i in range(n):
            if i == k:
                raise ValueError(f"generator failed after {i} items")
            yield i

    received: list[int] = []
    with anyio.fail_after(15):
        async with (
            node(nats_server, "worker", {"numbers": failing}),
            node(nats_server, "caller") as caller,
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


# ---------------------------------------------------------------- the sync face


@alias("slow")
@fetcher(FG(timeout=0.3))
def slow_blocking_with_timeout():
    pass


async def test_sync_face_streams_and_timeouts(nats_server: NatsServer, anyio_backend: str) -> None:
    """A Global with the sync face (built in a worker thread; its loop runs in a thread of
    its own) streams both ways and times out from plain threads, as in controller mode."""
    source = Counted("async")
    callee = SlowCallee()
    recorded: list[Any] = []
    total = 5 * STREAM_WINDOW
    with anyio.fail_after(20):
        async with node(
            nats_server,
            "worker",
            {"numbers": source.callback(), "record": recorded.append, "slow": callee.slow},
        ):
            caller = await anyio.to_thread.run_sync(
                lambda: Global(
                    "caller",
                    address=f"nats://{nats_server.url}",
                    registry=CallbackRegistry(),
                    backend=anyio_backend,
                    connect_timeout=5,
                )
            )
            try:
                await anyio.to_thread.run_sync(caller.wait_process, "worker", 5)

                def calls() -> dict[str, Any]:
                    with caller.as_current():
                        got = list(numbers_blocking(total))
                        record_blocking(total)
                        t0 = time.monotonic()
                        try:
                            slow_blocking_with_timeout()
                        except DaffiTimeoutError as exc:
                            timed_out: Exception | None = exc
                        else:
                            timed_out = None
                        return {"got": got, "timed_out": timed_out, "after": time.monotonic() - t0}

                outcome = await anyio.to_thread.run_sync(calls)
                with anyio.fail_after(1):
                    await callee.ended.wait()
            finally:
                await anyio.to_thread.run_sync(caller.stop)
    assert outcome["got"] == list(range(total))
    assert recorded == list(range(total))
    assert isinstance(outcome["timed_out"], DaffiTimeoutError)
    assert 0.25 <= outcome["after"] < 0.6, outcome["after"]
    assert callee.log == ["started", "cancelled"]
