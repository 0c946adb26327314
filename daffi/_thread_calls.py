"""The caller's side of a node, from threads and loops that are not daffi's.

A call made from outside daffi's loop (a sync caller without a call channel, an async caller
on another event loop, a BG call from any thread) is one mechanism: its thread registers a
pending entry and writes the Call itself (:meth:`ThreadCaller.send_from_thread`); the
session's receive loop finishes the entry, which wakes the caller the way it waits (a lock, a
wake-up of its loop, a future); whatever ends the wait early abandons the call
(:meth:`ThreadCaller.abandon`): the entry goes and the remote work is cancelled.

A sync caller with a call channel (see ``daffi._channel``) writes its calls on the channel
and reads the replies itself (:meth:`ThreadCaller._call_on_channel`).
"""

from __future__ import annotations

import builtins
import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import msgspec

from daffi._caller import remaining_time
from daffi._calls import (
    CallTable,
    Failed,
    Pending,
    broadcast_outcome,
    call_timed_out,
    link_lost,
    wait_answered,
)
from daffi._connection import encode_frame
from daffi._crossloop import loop_waker
from daffi._executor import current_chain
from daffi._link import Link
from daffi._mirror import DirectoryMirror
from daffi._protocol import Call, Cancel, Error, Result
from daffi.exceptions import (
    RemoteStoppedUnexpectedly,
    TimeoutError,
    UnableToFindCandidate,
    daffi_error_info,
    exception_from_error_info,
)

if TYPE_CHECKING:
    from daffi._channel import ChannelPool, SyncChannel
    from daffi._codec import PayloadCodec

__all__ = ["ThreadCaller", "ThreadLink"]


class ThreadLink(Protocol):
    """What calls from other threads need from the node's session."""

    @property
    def conn(self) -> Link | None:
        """The link to the controller, or None while it is down."""
        ...

    @property
    def channels(self) -> ChannelPool | None:
        """The session's call channels (None: none for this node or this session)."""
        ...

    @property
    def stopping(self) -> bool:
        """The node is leaving."""
        ...


class ThreadCaller:
    """Calls other nodes' callbacks from any thread, or from an event loop not daffi's.

    Args:
        name: this node's name (the ``src`` of its calls).
        table: the calls this node waits on (shared with the loop's :class:`Caller`).
        directory: the directory mirror (argument checks, broadcast targets).
        link: the session, for the link to the controller and its call channels.
        codec: decodes the answers.
    """

    def __init__(
        self,
        name: str,
        table: CallTable,
        directory: DirectoryMirror,
        link: ThreadLink,
        codec: PayloadCodec,
    ) -> None:
        self.name = name
        self.table = table
        self.directory = directory
        self.link = link
        self.codec = codec
        #: this node's side of the pickle rule (the mirror's: it encodes the arguments)
        self.pickling = directory.pickling

    def call_from_thread(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        receiver: str | None = None,
        timeout: float | None = None,
        structure: Callable[[Any], Any] | None = None,
    ) -> tuple[bool, Any]:
        """FG from a thread that is not daffi's loop, without a loop round trip per call.

        The calling thread encodes and queues its request and waits on a lock that the
        receive loop releases. Returns ``(False, None)`` when this path does not apply (not
        connected, or a generator callback), so the caller takes the portal path.
        """
        conn = self.link.conn
        if conn is None:
            return False, None
        payload, info = self.directory.prepare_info(name, args, kwargs, receiver)
        if info.is_generator:
            return False, None
        pool = self.link.channels
        channel = pool.acquire() if pool is not None else None
        if channel is not None:
            assert pool is not None
            values = self._call_on_channel(
                pool, channel, name, payload, [receiver], timeout, structure
            )
            return True, values[0]
        call_id, pending = self._send_from_thread(conn, name, payload, receiver, timeout)
        return True, self._wait_in_thread(conn, name, call_id, pending, timeout, structure)

    def broadcast_from_thread(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout: float | None = None,
        structure: Callable[[Any], Any] | None = None,
    ) -> tuple[bool, Any]:
        """BROADCAST from a thread that is not daffi's loop (see :meth:`call_from_thread`).

        The calls to every node go out at once; their replies are read in node order.
        """
        conn = self.link.conn
        if conn is None:
            return False, None
        targets = self.directory.broadcast_targets(name)
        payload, info = self.directory.prepare_info(name, args, kwargs, targets[0])
        if info.is_generator:
            return False, None
        pool = self.link.channels
        channel = pool.acquire() if pool is not None else None
        if channel is not None:
            assert pool is not None
            outcomes = self._call_on_channel(
                pool, channel, name, payload, targets, timeout, structure, gather=True
            )
            results: dict[str, Any] = {}
            errors: dict[str, Exception] = {}
            for target, outcome in zip(targets, outcomes, strict=True):
                if isinstance(outcome, UnableToFindCandidate):
                    continue  # it left before the call reached it
                if isinstance(outcome, Failed):
                    errors[target] = outcome.error
                else:
                    results[target] = outcome
            return True, broadcast_outcome(name, results, errors)
        sent = [
            (target, *self._send_from_thread(conn, name, payload, target, timeout))
            for target in targets
        ]
        deadline = None if timeout is None else time.monotonic() + timeout
        results = {}
        errors = {}
        for target, call_id, pending in sent:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                results[target] = self._wait_in_thread(
                    conn, name, call_id, pending, left, structure
                )
            except UnableToFindCandidate:
                pass  # it left before the call reached it: it no longer has the callback
            except Exception as exc:
                errors[target] = exc
        return True, broadcast_outcome(name, results, errors)

    def _call_on_channel(
        self,
        pool: ChannelPool,
        channel: SyncChannel,
        name: str,
        payload: msgspec.Raw,
        receivers: Sequence[str | None],
        timeout: float | None,
        structure: Callable[[Any], Any] | None,
        *,
        gather: bool = False,
    ) -> list[Any]:
        """Send one call per receiver on ``channel`` and read the replies in this thread.

        Returns the values in ``receivers`` order. With ``gather``, a failed call gives a
        :class:`Failed` in its place (an :class:`UnableToFindCandidate` stays as is);
        otherwise its error is raised.
        """
        from daffi._channel import ChannelClosed  # loaded with the pool already

        deadline = None if timeout is None else time.monotonic() + timeout
        ids = {next(self.table.ids): index for index in range(len(receivers))}
        replies: list[Result | Error | TimeoutError | None] = [None] * len(receivers)
        clean = False
        try:
            chain = current_chain()
            pickling = self.pickling
            frames = []
            for call_id, index in ids.items():
                call = Call(
                    call_id, name, payload, self.name, receivers[index], timeout, chain=chain
                )
                frames.append(encode_frame(pickling.mark(call) if pickling.allowed else call))
            channel.send_frame(frames[0] if len(frames) == 1 else b"".join(frames), deadline)
            waiting = len(ids)
            while waiting:
                msg = channel.receive(deadline)
                if isinstance(msg, Result | Error):
                    index = ids.pop(msg.id, -1)
                    if index >= 0:
                        replies[index] = msg
                        waiting -= 1
                # anything else (a late reply of an earlier call) is skipped
            clean = True
        except builtins.TimeoutError:
            # Closing the channel (below) makes the controller cancel the remote work.
            timed_out = call_timed_out(name, timeout)
            if not gather:
                raise timed_out from None
            for index in ids.values():  # the others' replies are kept
                replies[index] = timed_out
        except ChannelClosed:
            if self.link.stopping:
                raise RemoteStoppedUnexpectedly(
                    f"node {self.name!r} stopped before the call to {name!r} finished"
                ) from None
            raise link_lost("calling", name) from None
        finally:
            if clean:
                pool.release(channel)
            else:
                pool.discard(channel)
        values: list[Any] = []
        for reply in replies:
            assert reply is not None
            if isinstance(reply, TimeoutError):
                values.append(Failed(reply))
                continue
            if isinstance(reply, Error):
                error = exception_from_error_info(reply.error)
                if not gather:
                    raise error
                values.append(error if isinstance(error, UnableToFindCandidate) else Failed(error))
                continue
            if reply.pickled:  # unpickled only if this node allows it
                try:
                    values.append(self.pickling.loads_result(reply.payload))
                except Exception as exc:
                    if not gather:
                        raise
                    values.append(Failed(exc))
                continue
            value = self.codec.decode_value(reply.payload)
            values.append(structure(value) if structure is not None else value)
        return values

    def send_from_thread(
        self,
        conn: Link,
        name: str,
        payload: msgspec.Raw,
        receiver: str | None,
        timeout: float | None,
        pending: Pending,
        *,
        blocking: bool = True,
        call_id: int | None = None,
    ) -> int:
        """Register ``pending`` and send the call from this thread; its id (``call_id``, or
        a new one).

        ``blocking``: the caller's thread waits for the answer, so the call carries the
        chain of the ``def`` callback this thread runs, if any (see ``daffi._executor``).
        """
        if call_id is None:
            call_id = next(self.table.ids)
        self.table.pending[call_id] = pending
        chain = current_chain() if blocking else ""
        msg = Call(call_id, name, payload, self.name, receiver, timeout, chain=chain)
        if self.pickling.allowed:
            msg = self.pickling.mark(msg)
        try:
            conn.send_threadsafe(msg)
        except anyio.BrokenResourceError:
            self.table.pending.pop(call_id, None)
            raise link_lost("calling", name) from None
        return call_id

    def abandon(self, conn: Link, call_id: int, pending: Pending) -> None:
        """The wait for call ``call_id`` is over: forget it and, if it was not answered,
        cancel it remotely (any thread)."""
        self.table.pending.pop(call_id, None)
        if not pending.done:
            with contextlib.suppress(anyio.BrokenResourceError):
                conn.send_threadsafe(Cancel(call_id, self.name))

    def _send_from_thread(
        self,
        conn: Link,
        name: str,
        payload: msgspec.Raw,
        receiver: str | None,
        timeout: float | None,
    ) -> tuple[int, Pending]:
        pending = Pending(threaded=True)
        return self.send_from_thread(conn, name, payload, receiver, timeout, pending), pending

    def _wait_in_thread(
        self,
        conn: Link,
        name: str,
        call_id: int,
        pending: Pending,
        timeout: float | None,
        structure: Callable[[Any], Any] | None,
    ) -> Any:
        assert pending.lock is not None
        answered = False
        try:
            answered = pending.lock.acquire(timeout=-1 if timeout is None else timeout)
        finally:
            # Whatever ends the wait (the timeout, KeyboardInterrupt in the main thread),
            # nothing is left pending and an unanswered call is cancelled remotely.
            self.abandon(conn, call_id, pending)
        if not answered:
            raise call_timed_out(name, timeout)
        return pending.outcome(self.codec, structure, self.pickling)

    async def call_from_other_loop(
        self,
        name: str,
        payload: msgspec.Raw,
        *,
        receiver: str | None = None,
        timeout: float | None = None,
        structure: Callable[[Any], Any] | None = None,
    ) -> tuple[bool, Any]:
        """FG awaited on an event loop that is not daffi's (asyncio or trio), without a
        round trip through daffi's loop: the same meaning as :meth:`roundtrip` (remaining
        time sent, ``Cancel`` when the caller's scope or the timeout ends the wait).

        Returns ``(False, None)`` when not connected (the caller then goes through
        daffi's loop, which waits for the connection).
        """
        conn = self.link.conn
        if conn is None:
            return False, None
        own, remaining = remaining_time(timeout)
        answered = anyio.Event()
        waker = loop_waker()
        pending = Pending(callback=lambda: waker.soon(answered.set))
        call_id = next(self.table.ids)
        self.table.pending[call_id] = pending

        def lost() -> None:  # the link closed before the call went out
            pending.error = daffi_error_info(
                "RemoteStoppedUnexpectedly",
                f"the connection to the controller was lost while calling {name!r}",
                self.name,
            )
            pending.finish()

        # The calls this loop's tasks make in one turn go out in one write, in order with
        # their cancels (a burst of 64 calls: one system call, not 64).
        msg = Call(call_id, name, payload, self.name, receiver, remaining)
        if self.pickling.allowed:
            msg = self.pickling.mark(msg)
        frame = encode_frame(msg)
        waker.send_this_turn(conn, frame, lost)
        try:
            timed_out = await wait_answered(answered.wait, own, timeout)
        finally:
            self.table.pending.pop(call_id, None)
            if not pending.done:
                waker.send_this_turn(conn, encode_frame(Cancel(call_id, self.name)), _nothing)
        if timed_out:
            raise call_timed_out(name, timeout)
        return True, pending.outcome(self.codec, structure, self.pickling)

    def call_in_background(
        self,
        name: str,
        payload: msgspec.Raw,
        *,
        receiver: str | None = None,
        structure: Callable[[Any], Any] | None = None,
    ) -> concurrent.futures.Future[Any] | None:
        """A ``BG`` call (no timeout) from any thread, without a task on daffi's loop: its
        future, resolved by the receive loop. Cancelling the future cancels the call. None
        when not connected (the caller then goes through daffi's loop)."""
        conn = self.link.conn
        if conn is None:
            return None
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        call_id = next(self.table.ids)  # known before the reply can come

        def resolve() -> None:
            try:
                value = pending.outcome(self.codec, structure, self.pickling)
            except Exception as exc:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    future.set_exception(exc)
            else:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    future.set_result(value)
            self.table.pending.pop(call_id, None)

        pending = Pending(callback=resolve)
        self.send_from_thread(
            conn, name, payload, receiver, None, pending, blocking=False, call_id=call_id
        )

        def on_done(done: concurrent.futures.Future[Any]) -> None:
            if done.cancelled():
                self.abandon(conn, call_id, pending)

        future.add_done_callback(on_done)
        return future


def _nothing() -> None:
    """A cancel that finds the link closed: the controller cancels the call itself."""
