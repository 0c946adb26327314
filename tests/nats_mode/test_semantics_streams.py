"""Streams and deadlines in NATS mode, beyond what tests/integration/test_streams.py and
test_cancellation.py check over both fabrics (they run over NATS too): many short downloads
in a row (a reply must not overtake the stream's last items), an outer scope that expires
while the remote call runs, and the sync face's streams and timeouts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import pytest

from daffi import FG, Global
from daffi._protocol import STREAM_WINDOW
from daffi.decorators import alias, fetcher
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


# ---------------------------------------------------------------- generator callbacks


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
