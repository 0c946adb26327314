"""The caller's side of a call in flight: what waits for a reply (:class:`Pending`, kept
in the node's :class:`CallTable`), and outgoing streams (:class:`Upload`)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from daffi._backends import LoopEvent
from daffi._link import Link
from daffi._protocol import STREAM_WINDOW, Credit, Error, Result, StreamEnd, StreamItem, YieldItem
from daffi._streams import CreditGate
from daffi.exceptions import (
    ErrorInfo,
    ProtocolError,
    RemoteStoppedUnexpectedly,
    TimeoutError,
    broadcast_error,
    exception_from_error_info,
)

if TYPE_CHECKING:
    from daffi._codec import PayloadCodec
    from daffi._pickling import Pickling

__all__ = [
    "CallTable",
    "Failed",
    "Pending",
    "Upload",
    "UploadGroup",
    "UploadOwner",
    "broadcast_outcome",
    "link_lost",
]

logger = logging.getLogger("daffi.node")


def call_timed_out(name: str, timeout: float | None) -> TimeoutError:
    """The error of a call whose own timeout ran out (its remote execution is cancelled)."""
    return TimeoutError(
        f"call to {name!r} timed out after {timeout} s; the remote execution was cancelled"
    )


async def wait_answered(
    wait: Callable[[], Awaitable[object]], deadline: float, timeout: float | None
) -> bool:
    """Await ``wait()`` on the caller's loop, within the call's own ``timeout`` (ending at
    ``deadline``); True if that timeout ran out first."""
    if timeout is None:
        await wait()  # no scope of our own: the common case stays cheap
        return False
    with anyio.CancelScope(deadline=deadline) as scope:
        await wait()
    return scope.cancelled_caught


def link_lost(doing: str, name: str) -> RemoteStoppedUnexpectedly:
    return RemoteStoppedUnexpectedly(
        f"the connection to the controller was lost while {doing} {name!r}"
    )


def broadcast_outcome(
    name: str, results: dict[str, Any], errors: dict[str, Exception]
) -> dict[str, Any]:
    """A broadcast's answer: the values by node name, or the error carrying them."""
    if errors:
        raise broadcast_error(f"broadcast of {name!r}", results, errors)
    return {target: results[target] for target in sorted(results)}


class Failed:
    """A broadcast target's error, kept beside the other targets' values."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class Pending:
    """A call waiting for its reply.

    What wakes its caller depends on where the caller waits: an anyio Event (a caller on
    daffi's loop), a lock (a sync caller blocked in its own thread), or ``callback``, called
    in the thread that finishes it (a caller on another event loop, a ``BG`` future).
    """

    __slots__ = (
        "callback",
        "done",
        "error",
        "event",
        "gate",
        "items",
        "lock",
        "payload",
        "pickled",
    )

    def __init__(
        self,
        *,
        threaded: bool = False,
        callback: Callable[[], object] | None = None,
        new_event: Callable[[], LoopEvent] = anyio.Event,
    ) -> None:
        self.done = False
        self.callback = callback
        self.event: LoopEvent | None = None
        self.lock: threading.Lock | None = None
        if threaded:
            self.lock = threading.Lock()
            self.lock.acquire()
        elif callback is None:
            self.event = new_event()
        self.payload: msgspec.Raw | None = None
        #: ``payload`` is pickled (``Result.pickled``)
        self.pickled = False
        self.error: ErrorInfo | None = None
        #: a generator callback's values, for downloads
        self.items: MemoryObjectSendStream[msgspec.Raw] | None = None
        #: credit the callee grants, for uploads
        self.gate: CreditGate | None = None

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.event is not None:
            self.event.set()
        if self.lock is not None:
            self.lock.release()
        if self.callback is not None:
            try:
                self.callback()
            except Exception:  # the waiter's loop is gone: nobody waits any more
                logger.debug("a caller's wake-up failed", exc_info=True)
        if self.items is not None:
            self.items.close()
        if self.gate is not None:
            self.gate.close(
                exception_from_error_info(self.error)
                if self.error is not None
                else ProtocolError("the callee ended the stream before its end")
            )

    async def wait(self) -> None:
        assert self.event is not None
        await self.event.wait()

    def outcome(
        self,
        codec: PayloadCodec,
        structure: Callable[[Any], Any] | None,
        pickling: Pickling,
    ) -> Any:
        """The value of an answered call, or its error raised.

        A pickled result is unpickled only if the caller allows pickle (``pickling``: see
        :meth:`~daffi._pickling.Pickling.loads_result`), and is not structured: it is the
        object the callee returned.
        """
        if self.error is not None:
            raise exception_from_error_info(self.error)
        assert self.payload is not None
        if self.pickled:
            return pickling.loads_result(self.payload)
        value = codec.decode_value(self.payload)
        return structure(value) if structure is not None else value


class CallTable:
    """The calls a node waits on, by id: filled by its callers (any thread), finished by
    the session's receive loop (or by the controller in its process, directly)."""

    def __init__(self) -> None:
        #: call id -> what waits for its reply
        self.pending: dict[int, Pending] = {}
        #: the ids of this node's calls (unique per node: the controller keys routes by them)
        self.ids = itertools.count(1)

    def on_reply(self, msg: Result | Error) -> None:
        pending = self.pending.get(msg.id)
        if pending is not None:
            if isinstance(msg, Result):
                pending.payload = msg.payload
                pending.pickled = msg.pickled
            else:
                pending.error = msg.error
            pending.finish()

    def on_yield(self, msg: YieldItem) -> None:
        """The next value of a generator callback, for its download."""
        pending = self.pending.get(msg.id)
        if pending is not None and pending.items is not None:
            try:
                pending.items.send_nowait(msg.payload)
            except anyio.WouldBlock:
                raise ProtocolError(
                    f"a generator callback sent more than {STREAM_WINDOW} items without credit"
                ) from None
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the consumer left; its cancel is on the way

    def on_credit(self, msg: Credit) -> None:
        """A callee allows an upload of this node ``msg.n`` more items."""
        pending = self.pending.get(msg.id)
        if pending is not None and pending.gate is not None:
            pending.gate.grant(msg.n)

    def fail_all(self, error: ErrorInfo) -> None:
        """Finish every call still waiting with ``error`` (the link to the controller is
        gone); calls registered meanwhile go into a fresh table."""
        pending, self.pending = self.pending, {}
        for item in pending.values():
            item.error = error
            item.finish()


class UploadOwner(Protocol):
    """What an :class:`Upload` needs from the caller's side that opened it."""

    @property
    def name(self) -> str:
        """The calling node's name."""
        ...

    @property
    def table(self) -> CallTable: ...

    def prepare(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], receiver: str | None
    ) -> msgspec.Raw:
        """Check and encode the arguments of one invocation."""
        ...

    async def cancel_remote(self, conn: Link, call_id: int) -> None:
        """Cancel call ``call_id`` on its callee (bounded, shielded)."""
        ...


class Upload:
    """The caller's end of a streaming call (a generator fetcher): push items, then finish."""

    def __init__(
        self,
        owner: UploadOwner,
        conn: Link,
        call_id: int,
        name: str,
        receiver: str | None,
        pending: Pending,
        timeout: float | None,
    ) -> None:
        self.owner = owner
        self.conn = conn
        self.call_id = call_id
        self.name = name
        self.receiver = receiver
        self.pending = pending
        self.timeout = timeout
        self.sent = 0

    async def push(self, items: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
        """Send the arguments of the next invocations, waiting for credit (backpressure).

        Raises:
            The callee's error as soon as it is known (the stream stops at the first error).
        """
        gate = self.pending.gate
        assert gate is not None
        for args, kwargs in items:
            payload = self.owner.prepare(self.name, args, kwargs, self.receiver)
            await gate.take()
            try:
                await self.conn.send(StreamItem(self.call_id, self.owner.name, payload))
            except anyio.BrokenResourceError:
                raise RemoteStoppedUnexpectedly(
                    f"the connection to the controller was lost while streaming to {self.name!r}"
                ) from None
            self.sent += 1

    async def finish(self) -> Any:
        """Tell the callee the stream ended and wait until it processed every item."""
        with anyio.fail_after(self.timeout):
            if not self.pending.done:
                with contextlib.suppress(anyio.BrokenResourceError):
                    await self.conn.send(StreamEnd(self.call_id, self.owner.name))
            await self.pending.wait()
        self.owner.table.pending.pop(self.call_id, None)
        if self.pending.error is not None:
            raise exception_from_error_info(self.pending.error)
        return None

    async def abort(self) -> None:
        """Give up: the callee stops processing this stream."""
        self.owner.table.pending.pop(self.call_id, None)
        if not self.pending.done:
            await self.owner.cancel_remote(self.conn, self.call_id)


class UploadGroup:
    """One generator fetcher's stream, sent to one node (FG/BG) or to several (BROADCAST).

    Under BROADCAST a failing node stops receiving items while the others carry on; its
    error is reported at the end, with the other nodes' results.
    """

    def __init__(self, name: str, uploads: dict[str, Upload], broadcast: bool) -> None:
        self.name = name
        self.uploads = uploads
        self.broadcast = broadcast
        self.errors: dict[str, Exception] = {}

    async def push(self, items: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
        for target, upload in list(self.uploads.items()):
            try:
                await upload.push(items)
            except Exception as exc:
                if not self.broadcast:
                    raise
                self.errors[target] = exc
                del self.uploads[target]
                await upload.abort()

    async def finish(self) -> Any:
        results: dict[str, Any] = {}
        for target, upload in self.uploads.items():
            try:
                results[target] = await upload.finish()
            except Exception as exc:
                if not self.broadcast:
                    raise
                self.errors[target] = exc
        if not self.broadcast:
            return None
        if self.errors:
            raise broadcast_error(f"streaming to {self.name!r}", results, self.errors)
        return {node: results[node] for node in sorted(results)}

    async def abort(self) -> None:
        with anyio.CancelScope(shield=True):
            for upload in self.uploads.values():
                await upload.abort()
