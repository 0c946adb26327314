"""The caller's side of a node, on daffi's loop: calls, downloads, uploads and broadcasts.

Every call registers a :class:`~daffi._calls.Pending` in the node's
:class:`~daffi._calls.CallTable` under a fresh id, sends its ``Call`` on the link to the
controller and waits; the session's receive loop finishes the entry. Whatever ends the wait
early (a timeout, the caller's own cancel scope) sends ``Cancel``, so the remote execution
stops too. Calls made from other threads or other loops are in :mod:`daffi._thread_calls`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import msgspec

from daffi._backends import LoopPrimitives, loop_primitives
from daffi._calls import (
    CallTable,
    Pending,
    Upload,
    UploadGroup,
    broadcast_outcome,
    call_timed_out,
    link_lost,
    wait_answered,
)
from daffi._link import Link
from daffi._mirror import DirectoryMirror
from daffi._protocol import STREAM_WINDOW, Call, Cancel, Credit, ScheduleSpec
from daffi._streams import CreditGate, Download
from daffi.exceptions import UnableToFindCandidate, exception_from_error_info

if TYPE_CHECKING:
    from daffi._codec import PayloadCodec

__all__ = ["Caller", "ControllerLink", "remaining_time"]


class ControllerLink(Protocol):
    """What callers need from the node's session: its link to the controller."""

    @property
    def conn(self) -> Link | None:
        """The link, or None while it is down."""
        ...

    async def connection(self, timeout: float | None) -> Link:
        """The link, waiting a little while it is down (see ``Session.connection``)."""
        ...


def remaining_time(
    timeout: float | None,
    effective_deadline: Callable[[], float] = anyio.current_effective_deadline,
) -> tuple[float, float | None]:
    """``(own deadline, remaining time)`` of a call made on a loop with ``timeout``.

    The own deadline is ``timeout`` from now (``inf`` without one); the remaining time, sent
    with the call, also counts the caller's enclosing cancel scopes (None: unbounded).
    ``effective_deadline``: the loop's way to read them (see ``loop_primitives``).
    """
    scope_deadline = effective_deadline()
    if timeout is None and math.isinf(scope_deadline):
        return math.inf, None  # the common case: no clock reading needed
    now = anyio.current_time()
    own = now + timeout if timeout is not None else math.inf
    deadline = min(scope_deadline, own)
    return own, None if math.isinf(deadline) else max(deadline - now, 0.0)


class Caller:
    """Calls other nodes' callbacks from daffi's loop.

    Args:
        name: this node's name (the ``src`` of its calls).
        table: the calls this node waits on.
        directory: the directory mirror (argument checks, who offers what).
        link: the session, for the link to the controller.
        codec: decodes the answers.
    """

    def __init__(
        self,
        name: str,
        table: CallTable,
        directory: DirectoryMirror,
        link: ControllerLink,
        codec: PayloadCodec,
    ) -> None:
        self.name = name
        self.table = table
        self.directory = directory
        self.link = link
        self.codec = codec
        #: this node's side of the pickle rule (the mirror's: it encodes the arguments)
        self.pickling = directory.pickling
        #: the loop's deadline and event primitives (known once the first call runs on it)
        self._loop: LoopPrimitives | None = None

    def _primitives(self) -> LoopPrimitives:
        loop = self._loop
        if loop is None:
            loop = self._loop = loop_primitives()
        return loop

    def prepare(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], receiver: str | None
    ) -> msgspec.Raw:
        """See :meth:`DirectoryMirror.prepare` (for :class:`Upload`: one item of a stream,
        msgpack only)."""
        return self.directory.prepare(name, args, kwargs, receiver, stream=True)

    async def roundtrip(
        self,
        name: str,
        payload: msgspec.Raw,
        *,
        receiver: str | None = None,
        timeout: float | None = None,
        structure: Callable[[Any], Any] | None = None,
        schedule: ScheduleSpec | None = None,
    ) -> Any:
        """Send one prepared call (see :meth:`DirectoryMirror.prepare`) and wait for its
        reply.

        The caller's remaining time (``timeout`` and any enclosing cancel scope deadline)
        travels with the call; the callee runs under it. If this task is cancelled or the
        timeout expires, a cancel is sent so the remote execution stops too.

        Raises:
            UnableToFindCandidate: ``receiver`` is gone, or nobody offers ``name`` any more.
            TimeoutError: ``timeout`` expired (the remote execution is cancelled).
            RemoteStoppedUnexpectedly: the executing node or the controller went away.
            RemoteCallError: the callback raised.
        """
        conn = self.link.conn or await self.link.connection(timeout)
        table = self.table
        call_id = next(table.ids)
        loop = self._primitives()
        own_deadline, remaining = remaining_time(timeout, loop.effective_deadline)
        pending = table.pending[call_id] = Pending(new_event=loop.new_event)
        msg = Call(call_id, name, payload, self.name, receiver, remaining, True, schedule)
        if self.pickling.allowed:
            msg = self.pickling.mark(msg)
        sent = timed_out = False
        try:
            try:
                await conn.send(msg)
            except anyio.BrokenResourceError:
                raise link_lost("calling", name) from None
            sent = True
            timed_out = await wait_answered(pending.wait, own_deadline, timeout)
        finally:
            table.pending.pop(call_id, None)
            if sent and not pending.done:
                await self.cancel_remote(conn, call_id)
        if timed_out:
            raise call_timed_out(name, timeout)
        return pending.outcome(self.codec, structure, self.pickling)

    async def open_download(
        self,
        name: str,
        payload: msgspec.Raw,
        *,
        receiver: str | None = None,
        timeout: float | None = None,
        structure: Callable[[Any], Any] | None = None,
    ) -> Download:
        """Call a generator callback; its values arrive through the returned ``Download``."""
        conn = await self.link.connection(timeout)
        call_id = next(self.table.ids)
        loop = self._primitives()
        own_deadline, remaining = remaining_time(timeout, loop.effective_deadline)
        pending = Pending(new_event=loop.new_event)
        send, receive = anyio.create_memory_object_stream[msgspec.Raw](STREAM_WINDOW)
        pending.items = send
        self.table.pending[call_id] = pending
        msg = Call(call_id, name, payload, self.name, receiver, remaining)
        if self.pickling.allowed:
            msg = self.pickling.mark(msg)
        try:
            await conn.send(msg)
        except anyio.BrokenResourceError:
            self.table.pending.pop(call_id, None)
            raise link_lost("calling", name) from None
        codec = self.codec

        def decode(raw: msgspec.Raw) -> Any:
            value = codec.decode_value(raw)
            return structure(value) if structure is not None else value

        async def grant(n: int) -> None:
            with contextlib.suppress(anyio.BrokenResourceError):
                await conn.send(Credit(call_id, self.name, n, True))

        async def cancel() -> None:
            self.table.pending.pop(call_id, None)
            if not pending.done:
                await self.cancel_remote(conn, call_id)

        def outcome() -> BaseException | None:
            self.table.pending.pop(call_id, None)
            return exception_from_error_info(pending.error) if pending.error else None

        return Download(
            name,
            receive,
            decode=decode,
            grant=grant,
            cancel=cancel,
            outcome=outcome,
            deadline=own_deadline,
        )

    async def open_upload(
        self, name: str, *, receiver: str | None = None, timeout: float | None = None
    ) -> Upload:
        """Start a streaming call: one invocation of ``name`` per pushed item."""
        self.directory.target_info(name, receiver)  # raises when nobody offers it
        conn = await self.link.connection(timeout)
        call_id = next(self.table.ids)
        loop = self._primitives()
        _, remaining = remaining_time(timeout, loop.effective_deadline)
        pending = Pending(new_event=loop.new_event)
        pending.gate = CreditGate()
        self.table.pending[call_id] = pending
        empty = msgspec.Raw(self.codec.encode_args((), {}))
        msg = Call(call_id, name, empty, self.name, receiver, remaining, True, None, True)
        try:
            await conn.send(msg)
        except anyio.BrokenResourceError:
            self.table.pending.pop(call_id, None)
            raise link_lost("calling", name) from None
        return Upload(self, conn, call_id, name, receiver, pending, timeout)

    async def open_uploads(
        self, name: str, receivers: list[str | None], *, timeout: float | None, broadcast: bool
    ) -> UploadGroup:
        """Open one streaming call per receiver (``None``: the controller picks)."""
        uploads: dict[str, Upload] = {}
        try:
            for receiver in receivers:
                upload = await self.open_upload(name, receiver=receiver, timeout=timeout)
                uploads[receiver or ""] = upload
        except BaseException:
            await UploadGroup(name, uploads, broadcast).abort()
            raise
        return UploadGroup(name, uploads, broadcast)

    async def send_nowait(self, name: str, payload: msgspec.Raw, receiver: str | None) -> None:
        """Fire and forget: send a prepared call; no reply travels back."""
        conn = await self.link.connection(None)
        msg = Call(next(self.table.ids), name, payload, self.name, receiver, None, False)
        if self.pickling.allowed:
            msg = self.pickling.mark(msg)
        try:
            await conn.send(msg)
        except anyio.BrokenResourceError:
            raise link_lost("sending", name) from None

    async def broadcast(
        self,
        name: str,
        payload: msgspec.Raw,
        targets: list[str],
        *,
        timeout: float | None = None,
        structure: Callable[[Any], Any] | None = None,
        stream: bool = False,
    ) -> dict[str, Any]:
        """Run ``name`` on every node of ``targets`` at once; results by node name.

        With ``stream`` (a generator callback), each node's values are collected in a list.

        Raises:
            RemoteCallError: some nodes failed; ``.results`` holds the successes and
                ``.errors`` the failures, by node (independent of reply order).
        """
        results: dict[str, Any] = {}
        errors: dict[str, Exception] = {}

        async def one(target: str) -> None:
            try:
                if stream:
                    download = await self.open_download(
                        name, payload, receiver=target, timeout=timeout, structure=structure
                    )
                    results[target] = await download.collect()
                else:
                    results[target] = await self.roundtrip(
                        name, payload, receiver=target, timeout=timeout, structure=structure
                    )
            except UnableToFindCandidate:
                pass  # it left before the call reached it: it no longer has the callback
            except Exception as exc:
                errors[target] = exc

        async with anyio.create_task_group() as tg:
            for target in targets:
                tg.start_soon(one, target)
        return broadcast_outcome(name, results, errors)

    async def cancel_remote(self, conn: Link, call_id: int) -> None:
        """Cancel call ``call_id`` on its callee (at most 1 s, shielded)."""
        with anyio.move_on_after(1, shield=True):
            with contextlib.suppress(anyio.BrokenResourceError):
                await conn.send(Cancel(call_id, self.name))
