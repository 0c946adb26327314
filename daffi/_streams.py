"""Streams in both directions, with credit-based flow control on every hop.

* **Generator callbacks** (callee -> caller): the callee sends one ``YieldItem`` per value and
  may have at most ``STREAM_WINDOW`` values not yet granted back; the caller grants ``Credit``
  as it consumes. The call's ``Result`` ends the stream.
* **Generator fetchers** (caller -> callee): the caller sends one ``StreamItem`` per
  invocation (at most ``STREAM_WINDOW`` not yet processed) and ``StreamEnd`` at the end; the
  callee runs the callback once per item, in order, and grants ``Credit`` as it goes.

Since neither end sends more than the window allows, the controller (which forwards frames
and waits while a receiver is slow) never holds more than a window of items either.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from daffi._crossloop import Portal, run_in_portal
from daffi._protocol import STREAM_WINDOW
from daffi.exceptions import DaffiError, GlobalContextError, ProtocolError

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

__all__ = ["AsyncDownloadProxy", "CreditGate", "Download", "SyncDownload", "take_batch"]

#: Grant credit back after this many items were consumed.
CREDIT_BATCH = STREAM_WINDOW // 2


class CreditGate:
    """How many items the other side still allows; ``take`` waits for more."""

    def __init__(self, initial: int = STREAM_WINDOW) -> None:
        self.available = initial
        self._event = anyio.Event()
        self._error: BaseException | None = None

    def grant(self, n: int) -> None:
        # A receiver grants credit only for items it received: more than the window in
        # total would mean it grants for items that were never sent.
        if n <= 0 or self.available + n > STREAM_WINDOW:
            raise ProtocolError(
                f"invalid stream credit {n} ({self.available} still unused of {STREAM_WINDOW})"
            )
        self.available += n
        self._event.set()

    def close(self, error: BaseException) -> None:
        """Make waiting (and future) ``take`` calls raise ``error``."""
        self._error = error
        self._event.set()

    async def take(self) -> None:
        while self.available <= 0:
            if self._error is not None:
                raise self._error
            event = self._event = anyio.Event()
            await event.wait()
        if self._error is not None:
            raise self._error
        self.available -= 1


def take_batch(
    iterator: Iterator[Any], limit: int, budget: float = 0.002
) -> tuple[list[Any], bool, BaseException | None]:
    """Pull up to ``limit`` items from a sync iterator (run in a worker thread).

    Stops early once ``budget`` seconds have passed, so a slow producer's first items are
    not held back. Returns ``(items, exhausted, error)``: an exception raised by the iterator
    ends the batch without losing the items pulled before it.
    """
    items: list[Any] = []
    started = time.perf_counter()
    try:
        for item in iterator:
            items.append(item)
            if len(items) >= limit or time.perf_counter() - started > budget:
                return items, False, None
    except Exception as exc:
        return items, True, exc
    return items, True, None


class Download:
    """The caller's end of a generator callback's stream (an async iterator on daffi's loop).

    Leaving it early (``aclose``, ``break`` in ``async for`` with ``aclosing``, garbage
    collection is not relied upon) cancels the remote generator.
    """

    def __init__(
        self,
        name: str,
        receive: MemoryObjectReceiveStream[msgspec.Raw],
        *,
        decode: Callable[[msgspec.Raw], Any],
        grant: Callable[[int], Any],
        cancel: Callable[[], Any],
        outcome: Callable[[], BaseException | None],
        deadline: float,
    ) -> None:
        self.name = name
        self._receive = receive
        self._decode = decode
        self._grant = grant
        self._cancel = cancel
        self._outcome = outcome
        self._deadline = deadline
        self._consumed = 0
        self._handed_out = 0
        self._buffer: list[Any] = []
        self.finished = False

    async def receive_batch(self, limit: int = CREDIT_BATCH) -> list[Any] | None:
        """At least one item (waiting for it), at most ``limit``; ``None`` at the end."""
        if self.finished:
            return None
        try:
            with anyio.fail_after(
                self._deadline - anyio.current_time() if self._deadline != float("inf") else None
            ):
                first = await self._receive.receive()
        except anyio.EndOfStream:
            self.finished = True
            error = self._outcome()
            if error is not None:
                raise error from None
            return None
        except TimeoutError:
            await self.aclose()
            from daffi.exceptions import TimeoutError as DaffiTimeout

            raise DaffiTimeout(f"stream from {self.name!r} timed out") from None
        payloads = [first]
        while len(payloads) < limit:
            try:
                payloads.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        # Credit for the previous batch only: asking for more means the consumer took all of
        # it. A consumer that stops part way through a batch grants nothing more, so the
        # producer stops within one window.
        self._consumed += self._handed_out
        self._handed_out = len(payloads)
        if self._consumed >= CREDIT_BATCH:
            granted, self._consumed = self._consumed, 0
            await self._grant(granted)
        return [self._decode(payload) for payload in payloads]

    def __aiter__(self) -> Download:
        return self

    async def __anext__(self) -> Any:
        if not self._buffer:
            # Iterated here, item by item: credit follows the items actually taken (below),
            # not the batches handed out.
            self._handed_out = 0
            batch = await self.receive_batch()
            self._handed_out = 0
            if batch is None:
                raise StopAsyncIteration
            self._buffer = batch
            self._buffer.reverse()
        item = self._buffer.pop()
        self._consumed += 1
        if self._consumed >= CREDIT_BATCH:
            granted, self._consumed = self._consumed, 0
            await self._grant(granted)
        return item

    async def aclose(self) -> None:
        """Stop consuming: the remote generator is cancelled if it is still running."""
        if not self.finished:
            self.finished = True
            with anyio.CancelScope(shield=True):
                await self._cancel()
        self._receive.close()

    async def collect(self) -> list[Any]:
        """Every remaining item, as a list."""
        items: list[Any] = []
        try:
            while (batch := await self.receive_batch(STREAM_WINDOW)) is not None:
                items.extend(batch)
        finally:
            await self.aclose()
        return items


class SyncDownload:
    """A blocking iterator over a :class:`Download`, for ``def`` fetchers (any thread)."""

    def __init__(self, download: Download, portal: Portal) -> None:
        self._download = download
        self._portal = portal
        self._buffer: list[Any] = []
        self._done = False

    def __iter__(self) -> SyncDownload:
        return self

    def __next__(self) -> Any:
        if not self._buffer:
            if self._done:
                raise StopIteration
            if self._portal.on_loop_thread():
                name = self._download.name
                raise GlobalContextError(
                    f"iterating the stream of {name!r} blocks, and it was called from the "
                    "thread that runs daffi's event loop, where it would deadlock; use an "
                    f"`async def` fetcher and `async for` (for g.call: `async for item in await "
                    f"g.call.{name}(...).fg_async()`), or iterate in a worker thread"
                )
            batch = self._portal.call(self._download.receive_batch, CREDIT_BATCH)
            if batch is None:
                self._done = True
                raise StopIteration
            batch.reverse()
            self._buffer = batch
        return self._buffer.pop()

    def close(self) -> None:
        """Stop consuming and cancel the remote generator (also on ``break`` + ``del``)."""
        if not self._done:
            self._done = True
            # If daffi already stopped, the stream is gone anyway.
            with contextlib.suppress(RuntimeError, DaffiError):
                self._portal.call(self._download.aclose)

    def __enter__(self) -> SyncDownload:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._done:
            # At interpreter shutdown or with the loop gone there is nothing to cancel.
            with contextlib.suppress(Exception):
                self._portal.start_task_soon(self._download.aclose)


class AsyncDownloadProxy:
    """An async iterator over a :class:`Download` running on another thread's loop."""

    def __init__(self, download: Download, portal: Portal) -> None:
        self._download = download
        self._portal = portal
        self._buffer: list[Any] = []
        self._done = False

    def __aiter__(self) -> AsyncDownloadProxy:
        return self

    async def __anext__(self) -> Any:
        if not self._buffer:
            if self._done:
                raise StopAsyncIteration
            batch = await run_in_portal(self._portal, self._download.receive_batch, CREDIT_BATCH)
            if batch is None:
                self._done = True
                raise StopAsyncIteration
            batch.reverse()
            self._buffer = batch
        return self._buffer.pop()

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            with anyio.CancelScope(shield=True):
                await run_in_portal(self._portal, self._download.aclose)

    async def collect(self) -> list[Any]:
        items = [item async for item in self]
        return items
