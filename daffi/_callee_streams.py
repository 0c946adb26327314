"""The callee's side of streams: arguments streamed into a callback, and generator callbacks.

Both run as tasks the :class:`~daffi._dispatch.Dispatcher` starts, and both keep to the
credit window (see :mod:`daffi._streams`):

* a **stream into a callback** (a generator fetcher's items): the items wait in a memory
  stream of ``STREAM_WINDOW`` opened when the call arrives, so the first items behind the
  call find it; the callback runs once per item, in order, and credit goes back every
  ``CREDIT_BATCH`` items;
* a **generator callback**: each value is sent as a ``YieldItem`` once the caller granted
  credit for it; a sync generator is pulled in batches in the executor's threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daffi._callee_payloads import Payloads
from daffi._executor import Executor, Job
from daffi._link import Link
from daffi._protocol import STREAM_WINDOW, Call, Credit, Message, StreamEnd, StreamItem, YieldItem
from daffi._streams import CREDIT_BATCH, CreditGate, take_batch
from daffi.exceptions import GlobalContextError, ProtocolError, RemoteStoppedUnexpectedly
from daffi.registry._store import CallbackEntry

__all__ = ["CalleeStreams", "StreamHost"]

#: a call, by its caller and id
Key = tuple[str, int]


def _run_in_order(func: Callable[..., Any], calls: list[tuple[list[Any], dict[str, Any]]]) -> None:
    """Call ``func`` once per item, in order (in a worker thread); the first error stops."""
    for args, kwargs in calls:
        func(*args, **kwargs)


class StreamHost(Protocol):
    """What streams need from the dispatcher that runs them."""

    @property
    def executor(self) -> Executor:
        """Runs the ``def`` callbacks and sync generators, in the ``workers`` slots."""
        ...

    @property
    def conn(self) -> Link | None:
        """The node's link to the controller (None while it is down)."""
        ...

    async def send(self, msg: Message) -> None:
        """Send ``msg`` to the controller if connected."""
        ...

    @property
    def payloads(self) -> Payloads:
        """Decodes the items' arguments and encodes the values yielded."""
        ...

    async def run_entry(self, entry: CallbackEntry, args: Any, kwargs: dict[str, Any]) -> Any:
        """Run a callback once (async on the loop, ``def`` in the executor)."""
        ...


class CalleeStreams:
    """The streams of the calls running on one node, by ``(caller, call id)``."""

    def __init__(self, host: StreamHost) -> None:
        self.host = host
        self._inbound: dict[
            Key,
            tuple[MemoryObjectSendStream[msgspec.Raw], MemoryObjectReceiveStream[msgspec.Raw]],
        ] = {}
        self._gates: dict[Key, CreditGate] = {}

    def open_inbound(self, key: Key) -> None:
        """Make room for the items of streaming call ``key`` (before its task starts)."""
        self._inbound[key] = anyio.create_memory_object_stream[msgspec.Raw](STREAM_WINDOW)

    def forget(self, key: Key) -> None:
        """Call ``key`` ended: items still arriving for it are dropped."""
        self._inbound.pop(key, None)

    def on_stream(self, msg: StreamItem | StreamEnd) -> None:
        """The next argument item of a streaming call (or its end)."""
        channel = self._inbound.get((msg.src, msg.id))
        if channel is None:
            return
        inbound = channel[0]
        if isinstance(msg, StreamEnd):
            inbound.close()
            return
        try:
            inbound.send_nowait(msg.payload)
        except anyio.WouldBlock:
            raise ProtocolError(
                f"node {msg.src!r} streamed more than {STREAM_WINDOW} items without credit"
            ) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the callback failed; the caller gets its error

    def on_credit(self, msg: Credit) -> None:
        """A consumer allows a generator callback running here ``msg.n`` more items."""
        gate = self._gates.get((msg.peer, msg.id))
        if gate is not None:
            gate.grant(msg.n)

    async def run_stream_in(self, msg: Call, entry: CallbackEntry) -> None:
        """Run ``entry`` once per item streamed by the caller, in order."""
        if entry.is_generator or entry.is_async_generator:
            raise GlobalContextError(
                f"callback {entry.name!r} is a generator; it cannot also receive a stream"
            )
        host = self.host
        key = (msg.src, msg.id)
        send, receive = self._inbound[key]
        unacknowledged = 0
        try:
            with send, receive:
                async for first in receive:
                    # Every item already here is taken at once: a `def` callback then runs
                    # them one after the other in a single trip to a worker thread.
                    payloads = [first]
                    while len(payloads) < CREDIT_BATCH:
                        try:
                            payloads.append(receive.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    calls = [host.payloads.item_arguments(entry, payload) for payload in payloads]
                    if entry.runs_in_thread:
                        await host.executor.run_async(
                            Job(None, entry.name), _run_in_order, entry.fn, calls
                        )
                    else:
                        for args, kwargs in calls:
                            await host.run_entry(entry, args, kwargs)
                    unacknowledged += len(calls)
                    while unacknowledged >= CREDIT_BATCH:
                        unacknowledged -= CREDIT_BATCH
                        await host.send(Credit(msg.id, msg.src, CREDIT_BATCH, False))
        finally:
            self._inbound.pop(key, None)

    async def run_generator(
        self, msg: Call, entry: CallbackEntry, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        """Send the values of generator callback ``entry`` to the caller, within credit."""
        host = self.host
        key = (msg.src, msg.id)
        gate = self._gates[key] = CreditGate()
        conn = host.conn
        if conn is None:
            raise RemoteStoppedUnexpectedly("not connected to the controller")

        async def emit(value: Any) -> None:
            payload = host.payloads.encode(value, msg, "a value yielded by")
            await gate.take()
            await conn.send(YieldItem(msg.id, msg.src, payload))

        try:
            if entry.is_async_generator:
                agen = entry.fn(*args, **kwargs)
                try:
                    async for value in agen:
                        await emit(value)
                finally:
                    with anyio.CancelScope(shield=True):
                        await agen.aclose()
            else:
                gen = entry.fn(*args, **kwargs)
                try:
                    exhausted = False
                    while not exhausted:
                        limit = max(min(gate.available, CREDIT_BATCH), 1)
                        items, exhausted, error = await host.executor.run_async(
                            Job(None, entry.name), take_batch, gen, limit
                        )
                        for value in items:
                            await emit(value)
                        if error is not None:
                            raise error
                finally:
                    with contextlib.suppress(ValueError):  # still running in its thread
                        gen.close()
        finally:
            del self._gates[key]
