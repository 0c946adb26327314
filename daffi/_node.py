"""One node: its link to the controller, its directory mirror and its call table.

Task structure (all inside :meth:`Node.run`)::

    supervisor (reconnects with backoff)
     └─ session task group (one per connection to the controller)
         ├─ heartbeat
         ├─ receive loop
         └─ one task per incoming call, each in its own CancelScope

When the connection is lost the session group is cancelled: callbacks still running for
callers that the controller has already failed are interrupted, and every call this node was
waiting on fails with ``RemoteStoppedUnexpectedly``.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import contextlib
import functools
import inspect
import itertools
import logging
import math
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import msgspec

from daffi._calls import Pending, Upload, UploadGroup
from daffi._codec import PayloadEncodeError, default_codec
from daffi._connection import DEFAULT_MAX_FRAME_SIZE, encode_frame
from daffi._crossloop import loop_waker
from daffi._dispatch import Dispatcher
from daffi._executor import current_chain
from daffi._link import Link
from daffi._protocol import (
    PROTOCOL_VERSION,
    STREAM_WINDOW,
    Bye,
    Call,
    CallbackInfo,
    Cancel,
    Credit,
    Error,
    Hello,
    Message,
    NodeDown,
    NodeUp,
    Ping,
    Pong,
    Register,
    Reject,
    Result,
    ScheduleSpec,
    StreamEnd,
    StreamItem,
    Welcome,
    YieldItem,
)
from daffi._streams import CreditGate, Download
from daffi.exceptions import (
    DaffiError,
    ProtocolError,
    RemoteStoppedUnexpectedly,
    TimeoutError,
    UnableToFindCandidate,
    broadcast_error,
    daffi_error_info,
    exception_from_error_info,
)
from daffi.registry._inspect import check_arguments, signature_from_info
from daffi.registry._store import CallbackRegistry

if TYPE_CHECKING:
    from daffi._channel import ChannelPool, SyncChannel

__all__ = ["Node"]

logger = logging.getLogger("daffi.node")

NodeEventHook = Callable[[str, bool], Awaitable[None]]
#: opens the link to the controller: a Connection made by whoever knows the transport (it
#: decides whether the connection may bypass the stream), or the in-process link
Connector = Callable[[], Awaitable[Link]]


class _Rejected(Exception):
    def __init__(self, error: DaffiError) -> None:
        super().__init__(str(error))
        self.error = error


#: room kept in a frame for the envelope around a payload (names, ids, options), at most
FRAME_OVERHEAD = 64 * 1024


def _link_lost(doing: str, name: str) -> RemoteStoppedUnexpectedly:
    return RemoteStoppedUnexpectedly(
        f"the connection to the controller was lost while {doing} {name!r}"
    )


def _broadcast_outcome(
    name: str, results: dict[str, Any], errors: dict[str, Exception]
) -> dict[str, Any]:
    """A broadcast's answer: the values by node name, or the error carrying them."""
    if errors:
        raise broadcast_error(f"broadcast of {name!r}", results, errors)
    return {target: results[target] for target in sorted(results)}


class _Failed:
    """A broadcast target's error, kept beside the other targets' values."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class Node:
    """A daffi node: offers the callbacks of ``registry`` and calls other nodes' callbacks.

    Args:
        name: this process's unique name.
        registry: the callbacks to offer (changes are advertised via :meth:`advertise`).
        connect: opens the link to the controller (called again on every reconnect).
        controller_label: how log lines and errors name the controller's address.
        on_node_event: awaited as ``hook(node_name, joined)`` for every node that joins or
            leaves, this one included; must not block (spawn work elsewhere).
        workers: how many sync callbacks may run at once in worker threads.
        max_concurrent_calls: incoming calls running at once beyond which new ones are
            refused with an error (a flood from a peer cannot exhaust this process).
    """

    def __init__(
        self,
        name: str,
        registry: CallbackRegistry,
        connect: Connector,
        *,
        controller_label: str = "controller",
        on_node_event: NodeEventHook | None = None,
        workers: int = 40,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        heartbeat_interval: float = 5.0,
        handshake_timeout: float = 10.0,
        max_backoff: float = 2.0,
        max_concurrent_calls: int = 10_000,
        open_channel: Callable[[float], socket.socket | None] | None = None,
    ) -> None:
        self.name = name
        self.registry = registry
        self._connect = connect
        self.controller_label = controller_label
        self.on_node_event = on_node_event
        self.workers = workers
        self.max_frame_size = max_frame_size
        self.heartbeat_interval = heartbeat_interval
        self.handshake_timeout = handshake_timeout
        self.max_backoff = max_backoff
        self.codec = default_codec
        self.conn: Link | None = None
        #: the other nodes and what they offer
        self.peers: dict[str, dict[str, CallbackInfo]] = {}
        self._offers: dict[str, dict[str, CallbackInfo]] = {}  # callback -> node -> info
        self._signatures: dict[CallbackInfo, inspect.Signature] = {}
        self._arities: dict[CallbackInfo, int] = {}
        self._pending: dict[int, Pending] = {}
        self._ids = itertools.count(1)
        self._changed = anyio.Event()
        self._connected = anyio.Event()
        self._session_ended = anyio.Event()
        self.fatal_error: DaffiError | None = None
        self._open_channel = open_channel
        #: the session's call channels for sync callers (None: they go through the loop)
        self.channels: ChannelPool | None = None
        self._work_started = False
        #: runs the calls other nodes send here (and hosts the scheduler)
        self.dispatch = Dispatcher(self, workers=workers, max_concurrent_calls=max_concurrent_calls)

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_connected(self) -> bool:
        return self.conn is not None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect (and reconnect) to the controller until cancelled.

        Hosts the scheduler too: schedules live as long as the node, across reconnections.
        """
        async with anyio.create_task_group() as tg:
            await tg.start(self.dispatch.run)
            task_status.started()
            try:
                await self._supervise()
            finally:
                tg.cancel_scope.cancel()

    async def _supervise(self) -> None:
        delay = initial = 0.05
        failures = 0
        while True:
            try:
                link = await self._connect()
            except OSError as exc:
                failures += 1
                log = logger.warning if failures == 1 else logger.debug
                log(
                    "node %r: controller at %s is not reachable (%s); retrying with backoff",
                    self.name,
                    self.controller_label,
                    exc,
                )
                await anyio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.max_backoff)
                continue
            if failures:
                logger.info(
                    "node %r: controller at %s is reachable again", self.name, self.controller_label
                )
            failures = 0
            delay = initial
            try:
                await self._session(link)
            except _Rejected as exc:
                if not self._connected_once:
                    self.fatal_error = exc.error
                    self._notify()
                    self._connected.set()  # wake whoever waits for the first connection
                    return
                logger.error("node %r: controller refused the reconnection: %s", self.name, exc)
            except ProtocolError as exc:
                logger.error("node %r: protocol error on the controller link: %s", self.name, exc)
            except anyio.EndOfStream:
                pass
            if self._stopping:
                return  # it said goodbye: the controller closed the link; no reconnecting
            await anyio.sleep(delay * random.uniform(0.5, 1.0))

    _connected_once = False
    _stopping = False
    #: the controller said Bye on the current session (it stopped; it did not crash)
    _controller_left = False
    #: the other nodes known when the controller link was lost (None: no outage)
    _peers_before_outage: set[str] | None = None

    async def wait_connected(self) -> None:
        """Wait for the first successful handshake; raise if the controller refused it."""
        await self._connected.wait()
        if self.fatal_error is not None:
            raise self.fatal_error

    async def goodbye(self) -> None:
        """Tell the controller this node is leaving (best effort).

        The caller bounds it and shields it (the Global does, whatever ends it).
        """
        self._stopping = True
        conn = self.conn
        if conn is None:
            return
        ended = self._session_ended
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await conn.send(Bye("node stopping"))
            # The controller closes the link once it has taken this node off (callers of
            # its running calls told it left): only then may its call and work channels
            # close, or the controller could see them close first, as if it crashed.
            await ended.wait()

    async def advertise(self) -> None:
        """Send the registry's current callbacks to the controller (after a change)."""
        conn = self.conn
        if conn is not None:
            # If the link is broken, the next handshake carries the callbacks.
            with contextlib.suppress(anyio.BrokenResourceError):
                await conn.send(Register(self.registry.infos()))
            self._start_work_channel()

    # ------------------------------------------------------------------ session

    async def _session(self, conn: Link) -> None:
        try:
            offered = self.registry.infos()
            await conn.send(Hello(PROTOCOL_VERSION, self.name, ("msgpack",), offered))
            with anyio.fail_after(self.handshake_timeout):
                first, _ = await conn.receive()
            if isinstance(first, Reject):
                raise _Rejected(
                    exception_from_error_info(daffi_error_info(first.kind, first.reason))
                )
            if not isinstance(first, Welcome):
                raise ProtocolError(f"expected Welcome from the controller, got {first!r}")
            self._set_directory({k: {i.name: i for i in v} for k, v in first.directory.items()})
            if first.channel_token and self._open_channel is not None:
                from daffi._channel import ChannelPool  # not for a node beside its controller

                self.channels = ChannelPool(
                    self._open_channel,
                    self.name,
                    first.channel_token,
                    max_frame_size=self.max_frame_size,
                    handshake_timeout=self.handshake_timeout,
                )
                self._work_started = False
                self._start_work_channel()
            self._session_ended = anyio.Event()
            self.conn = conn
            self._connected_once = True
            self._connected.set()
            logger.info(
                "node %r connected to controller %r at %s",
                self.name,
                first.controller,
                self.controller_label,
            )
            if self.registry.infos() != offered:
                await self.advertise()  # registered while the handshake was in flight
            await self._event(self.name, True)
            await self._replay_missed_events()
            failure: ProtocolError | None = None
            conn.direct = self._take_direct
            if conn.in_process:
                conn.inline_slots = self.workers
                conn.inline = self.dispatch.run_inline
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn.run_writer)
                tg.start_soon(self._heartbeat, conn)
                # Errors that end the session are kept out of the task group (which would
                # wrap them in exception groups) and raised after it.
                try:
                    while True:
                        msg, _ = await conn.receive()
                        if not await self._handle(msg, tg):
                            break
                except anyio.EndOfStream:
                    pass
                except ProtocolError as exc:
                    failure = exc
                finally:
                    tg.cancel_scope.cancel()
            if failure is not None:
                raise failure
        except builtins.TimeoutError as exc:
            if isinstance(exc, DaffiError):
                raise
            raise ProtocolError("the controller did not answer the handshake") from exc
        except anyio.get_cancelled_exc_class():
            self._stopping = True  # the node itself is being cancelled: no reconnecting
            raise
        finally:
            conn.direct = None
            if conn.in_process:
                conn.inline = None
            was_connected = self.conn is conn
            self.conn = None
            if was_connected:
                self._session_ended.set()
            channels, self.channels = self.channels, None
            if channels is not None:
                channels.close()
            if self._connected.is_set():
                self._connected = anyio.Event()
            await conn.aclose()
            if was_connected:
                self._lost_connection()
                with anyio.CancelScope(shield=True):
                    await self._event(self.name, False)

    async def _replay_missed_events(self) -> None:
        """After a reconnection: hooks for the nodes that left or joined while we were away."""
        before, self._peers_before_outage = self._peers_before_outage, None
        if before is None:
            return
        now = set(self.peers)
        for name in sorted(before - now):
            await self._event(name, False)
        for name in sorted(now - before):
            await self._event(name, True)

    def _lost_connection(self) -> None:
        self._peers_before_outage = set(self.peers)
        left, self._controller_left = self._controller_left, False
        if self._stopping:
            why = f"node {self.name!r} stopped before the call finished"
            logger.info("node %r disconnected from the controller", self.name)
        elif left:
            why = f"the controller at {self.controller_label} stopped before the call finished"
            logger.info(
                "node %r: the controller at %s left; reconnecting",
                self.name,
                self.controller_label,
            )
        else:
            why = (
                f"the connection to the controller at {self.controller_label} was lost "
                "before the call finished"
            )
            logger.warning(
                "node %r lost the connection to the controller at %s; reconnecting",
                self.name,
                self.controller_label,
            )
        pending, self._pending = self._pending, {}
        for item in pending.values():
            item.error = daffi_error_info("RemoteStoppedUnexpectedly", why, self.name)
            item.finish()
        self._set_directory({})

    def _start_work_channel(self) -> None:
        """Open the session's work channel once this node offers a ``def`` callback.

        One thread blocks on it; the controller sends it such calls while it is free, so
        they run without a hand-off from this loop to a worker thread (the others still go
        through the node's connection and the worker pool).
        """
        pool = self.channels
        if pool is None or self._work_started or self.workers < 2:
            return
        if not any(not i.is_async and not i.is_generator for i in self.registry.infos()):
            return
        # Its runs take the executor's slots like any other; the executor joins the thread.
        self._work_started = self.dispatch.executor.spawn(
            functools.partial(pool.serve_work, self.dispatch.run_here), f"daffi-{self.name}-work"
        )

    def _take_direct(self, msg: Message, frame: bytes | bytearray) -> bool:
        """What the controller in this process hands over without queueing (on the loop).

        Replies to this node's calls, and calls of ``def`` callbacks (they start in a worker
        thread); everything else goes through the session's receive loop.
        """
        if isinstance(msg, Result | Error):
            self._on_reply(msg)
            return True
        if isinstance(msg, Call):
            return self.dispatch.start_in_thread(msg)
        return False

    def _on_reply(self, msg: Result | Error) -> None:
        pending = self._pending.get(msg.id)
        if pending is not None:
            if isinstance(msg, Result):
                pending.payload = msg.payload
            else:
                pending.error = msg.error
            pending.finish()

    async def _handle(self, msg: Message, tg: anyio.abc.TaskGroup) -> bool:
        if isinstance(msg, Call):
            await self.dispatch.on_call(msg, tg)
        elif isinstance(msg, Result | Error):
            self._on_reply(msg)
        elif isinstance(msg, YieldItem):
            pending = self._pending.get(msg.id)
            if pending is not None and pending.items is not None:
                try:
                    pending.items.send_nowait(msg.payload)
                except anyio.WouldBlock:
                    raise ProtocolError(
                        f"a generator callback sent more than {STREAM_WINDOW} items without credit"
                    ) from None
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    pass  # the consumer left; its cancel is on the way
        elif isinstance(msg, StreamItem | StreamEnd):
            self.dispatch.on_stream(msg)
        elif isinstance(msg, Credit):
            if msg.to_callee:
                self.dispatch.on_credit(msg)
            else:
                pending = self._pending.get(msg.id)
                if pending is not None and pending.gate is not None:
                    pending.gate.grant(msg.n)
        elif isinstance(msg, Cancel):
            self.dispatch.on_cancel(msg)
        elif isinstance(msg, NodeUp):
            joined = msg.name not in self.peers
            directory = dict(self.peers)
            directory[msg.name] = {info.name: info for info in msg.callbacks}
            self._set_directory(directory)
            if joined:
                await self._event(msg.name, True)
        elif isinstance(msg, NodeDown):
            logger.info(
                "node %r: process %r %s",
                self.name,
                msg.name,
                "left" if msg.clean else "disconnected",
            )
            if msg.name in self.peers:
                directory = dict(self.peers)
                del directory[msg.name]
                self._set_directory(directory)
                await self._event(msg.name, False)
        elif isinstance(msg, Ping):
            await self._send(Pong())
        elif isinstance(msg, Pong):
            pass
        elif isinstance(msg, Bye):
            logger.info("node %r: the controller is stopping (%s)", self.name, msg.reason)
            self._controller_left = True
            return False
        else:
            raise ProtocolError(f"unexpected {type(msg).__name__} from the controller")
        return True

    async def _heartbeat(self, conn: Link) -> None:
        limit = 3 * self.heartbeat_interval
        while True:
            await anyio.sleep(self.heartbeat_interval)
            silent = time.monotonic() - conn.last_received
            if silent > limit:
                logger.warning(
                    "node %r: the controller sent nothing for %.1f s; reconnecting",
                    self.name,
                    silent,
                )
                await conn.aclose()
                return
            try:
                await conn.send(Ping())
            except anyio.BrokenResourceError:
                return

    async def _send(self, msg: Message) -> None:
        conn = self.conn
        if conn is not None:
            with contextlib.suppress(anyio.BrokenResourceError):
                await conn.send(msg)

    async def _event(self, name: str, joined: bool) -> None:
        if self.on_node_event is not None:
            try:
                await self.on_node_event(name, joined)
            except Exception:
                logger.exception("node event hook failed for %r", name)

    # ------------------------------------------------------------------ directory

    def _set_directory(self, peers: dict[str, dict[str, CallbackInfo]]) -> None:
        self.peers = peers
        offers: dict[str, dict[str, CallbackInfo]] = {}
        for node, callbacks in peers.items():
            for cb_name, info in callbacks.items():
                offers.setdefault(cb_name, {})[node] = info
        self._offers = offers
        self._notify()

    def _notify(self) -> None:
        event, self._changed = self._changed, anyio.Event()
        event.set()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait, without polling, until ``condition()`` holds after a directory change."""
        while True:
            event = self._changed
            if condition():
                return
            if self.fatal_error is not None:
                raise self.fatal_error
            await event.wait()

    def offers(self, name: str) -> bool:
        return name in self._offers

    def _target_info(self, name: str, receiver: str | None) -> CallbackInfo:
        if receiver is not None:
            if receiver == self.name:
                entry = self.registry.get(name)
                info = entry.info if entry is not None else None
            else:
                info = self.peers.get(receiver, {}).get(name)
            if info is None:
                where = (
                    f"process {receiver!r} is not connected"
                    if receiver != self.name and receiver not in self.peers
                    else f"process {receiver!r} has no callback {name!r}"
                )
                raise UnableToFindCandidate(f"cannot call {name!r}: {where}")
            return info
        providers = self._offers.get(name)
        if not providers:
            raise UnableToFindCandidate(
                f"no other process offers callback {name!r} (known callbacks: "
                f"{sorted(self._offers) or 'none'}); use wait_function({name!r}) to wait for it"
            )
        return next(iter(providers.values()))

    def _plain_arity(self, info: CallbackInfo) -> int:
        """How many positional arguments surely bind (-1: check with the signature)."""
        arity = self._arities.get(info)
        if arity is None:
            plain = all(
                p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD and not p.has_default
                for p in info.params
            )
            arity = self._arities[info] = len(info.params) if plain else -1
        return arity

    def _signature(self, info: CallbackInfo) -> inspect.Signature:
        sig = self._signatures.get(info)
        if sig is None:
            sig = self._signatures[info] = signature_from_info(info)
        return sig

    # ------------------------------------------------------------------ calling out

    def prepare(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], receiver: str | None
    ) -> msgspec.Raw:
        """Check that someone offers ``name`` and that the arguments bind; encode them.

        Safe to call from any thread (it only reads the directory mirror).

        Raises:
            UnableToFindCandidate: no node offers ``name`` (or ``receiver`` does not).
            ArgumentsError: the arguments do not fit the callback's signature.
            TypeError: an argument cannot be encoded.
        """
        return self.prepare_info(name, args, kwargs, receiver)[0]

    def prepare_info(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], receiver: str | None
    ) -> tuple[msgspec.Raw, CallbackInfo]:
        """Like :meth:`prepare`, also returning what the target advertises."""
        if self.fatal_error is not None:
            raise self.fatal_error
        info = self._target_info(name, receiver)
        if kwargs or len(args) != self._plain_arity(info):
            check_arguments(self._signature(info), name, args, kwargs)
        payload = self.codec.encode_args(args, kwargs)
        self.check_size(payload, f"the arguments of {name!r}")
        return msgspec.Raw(payload), info

    def check_size(self, payload: bytes, what: str) -> None:
        """Refuse a payload too large for one frame, before anything is sent.

        A peer closes a connection that sends an oversized frame (every call on it would
        fail), so the sender says it plainly instead.

        Raises:
            PayloadEncodeError: ``payload`` does not fit in ``max_frame_size``.
        """
        overhead = min(FRAME_OVERHEAD, self.max_frame_size // 8)
        if len(payload) > self.max_frame_size - overhead:
            raise PayloadEncodeError(
                f"{what} encode to {len(payload):,} bytes, more than one frame carries "
                f"(max_frame_size {self.max_frame_size:,} bytes, less {overhead:,} for the "
                "envelope); send it in pieces with a stream, or raise max_frame_size on "
                "every process"
            )

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
        """Send one prepared call (see :meth:`prepare`) and wait for its reply.

        The caller's remaining time (``timeout`` and any enclosing cancel scope deadline)
        travels with the call; the callee runs under it. If this task is cancelled or the
        timeout expires, a cancel is sent so the remote execution stops too.

        Raises:
            UnableToFindCandidate: ``receiver`` is gone, or nobody offers ``name`` any more.
            TimeoutError: ``timeout`` expired (the remote execution is cancelled).
            RemoteStoppedUnexpectedly: the executing node or the controller went away.
            RemoteCallError: the callback raised.
        """
        conn = self.conn or await self._connection(timeout)
        call_id = next(self._ids)
        now = anyio.current_time()
        own_deadline = now + timeout if timeout is not None else math.inf
        deadline = min(anyio.current_effective_deadline(), own_deadline)
        remaining = None if math.isinf(deadline) else max(deadline - now, 0.0)
        pending = self._pending[call_id] = Pending()
        msg = Call(call_id, name, payload, self.name, receiver, remaining, True, schedule)
        sent = timed_out = False
        try:
            try:
                await conn.send(msg)
            except anyio.BrokenResourceError:
                raise _link_lost("calling", name) from None
            sent = True
            if timeout is None:
                await pending.wait()  # no scope of our own: the common case stays cheap
            else:
                with anyio.CancelScope(deadline=own_deadline) as scope:
                    await pending.wait()
                timed_out = scope.cancelled_caught
        finally:
            self._pending.pop(call_id, None)
            if sent and not pending.done:
                await self._cancel_remote(conn, call_id)
        if timed_out:
            raise TimeoutError(
                f"call to {name!r} timed out after {timeout} s; the remote execution was cancelled"
            )
        return self.outcome(pending, structure)

    def _deadline(self, timeout: float | None) -> tuple[float, float | None]:
        now = anyio.current_time()
        own = now + timeout if timeout is not None else math.inf
        deadline = min(anyio.current_effective_deadline(), own)
        return own, None if math.isinf(deadline) else max(deadline - now, 0.0)

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
        conn = await self._connection(timeout)
        call_id = next(self._ids)
        own_deadline, remaining = self._deadline(timeout)
        pending = Pending()
        send, receive = anyio.create_memory_object_stream[msgspec.Raw](STREAM_WINDOW)
        pending.items = send
        self._pending[call_id] = pending
        try:
            await conn.send(Call(call_id, name, payload, self.name, receiver, remaining))
        except anyio.BrokenResourceError:
            self._pending.pop(call_id, None)
            raise _link_lost("calling", name) from None
        codec = self.codec

        def decode(raw: msgspec.Raw) -> Any:
            value = codec.decode_value(raw)
            return structure(value) if structure is not None else value

        async def grant(n: int) -> None:
            with contextlib.suppress(anyio.BrokenResourceError):
                await conn.send(Credit(call_id, self.name, n, True))

        async def cancel() -> None:
            self._pending.pop(call_id, None)
            if not pending.done:
                await self._cancel_remote(conn, call_id)

        def outcome() -> BaseException | None:
            self._pending.pop(call_id, None)
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
        self._target_info(name, receiver)  # raises when nobody offers it
        conn = await self._connection(timeout)
        call_id = next(self._ids)
        _, remaining = self._deadline(timeout)
        pending = Pending()
        pending.gate = CreditGate()
        self._pending[call_id] = pending
        empty = msgspec.Raw(self.codec.encode_args((), {}))
        msg = Call(call_id, name, empty, self.name, receiver, remaining, True, None, True)
        try:
            await conn.send(msg)
        except anyio.BrokenResourceError:
            self._pending.pop(call_id, None)
            raise _link_lost("calling", name) from None
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
        conn = await self._connection(None)
        msg = Call(next(self._ids), name, payload, self.name, receiver, None, False)
        try:
            await conn.send(msg)
        except anyio.BrokenResourceError:
            raise _link_lost("sending", name) from None

    def broadcast_targets(self, name: str) -> list[str]:
        """The other nodes offering ``name``, sorted by name.

        Raises:
            UnableToFindCandidate: none does.
        """
        targets = sorted(node for node in self._offers.get(name, {}) if node != self.name)
        if not targets:
            self._target_info(name, None)  # raises the usual error
        return targets

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
        return _broadcast_outcome(name, results, errors)

    async def _connection(self, timeout: float | None) -> Link:
        conn = self.conn
        if conn is not None:
            return conn
        if self.fatal_error is not None:
            raise self.fatal_error
        with anyio.move_on_after(min(timeout, 5.0) if timeout is not None else 5.0):
            await self._connected.wait()
        if self.conn is None:
            raise RemoteStoppedUnexpectedly(
                f"node {self.name!r} is not connected to the controller at "
                f"{self.controller_label} (reconnecting in the background)"
            )
        return self.conn

    async def _cancel_remote(self, conn: Link, call_id: int) -> None:
        with anyio.move_on_after(1, shield=True):
            with contextlib.suppress(anyio.BrokenResourceError):
                await conn.send(Cancel(call_id, self.name))

    # ------------------------------------------------------------------ running calls

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
        conn = self.conn
        if conn is None:
            return False, None
        payload, info = self.prepare_info(name, args, kwargs, receiver)
        if info.is_generator:
            return False, None
        pool = self.channels
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
        conn = self.conn
        if conn is None:
            return False, None
        targets = self.broadcast_targets(name)
        payload, info = self.prepare_info(name, args, kwargs, targets[0])
        if info.is_generator:
            return False, None
        pool = self.channels
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
                if isinstance(outcome, _Failed):
                    errors[target] = outcome.error
                else:
                    results[target] = outcome
            return True, _broadcast_outcome(name, results, errors)
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
        return True, _broadcast_outcome(name, results, errors)

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
        :class:`_Failed` in its place (an :class:`UnableToFindCandidate` stays as is);
        otherwise its error is raised.
        """
        from daffi._channel import ChannelClosed  # loaded with the pool already

        deadline = None if timeout is None else time.monotonic() + timeout
        ids = {next(self._ids): index for index in range(len(receivers))}
        replies: list[Result | Error | TimeoutError | None] = [None] * len(receivers)
        clean = False
        try:
            chain = current_chain()
            frames = [
                encode_frame(
                    Call(
                        call_id,
                        name,
                        payload,
                        self.name,
                        receivers[index],
                        timeout,
                        chain=chain,
                    )
                )
                for call_id, index in ids.items()
            ]
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
            timed_out = TimeoutError(
                f"call to {name!r} timed out after {timeout} s; the remote execution was cancelled"
            )
            if not gather:
                raise timed_out from None
            for index in ids.values():  # the others' replies are kept
                replies[index] = timed_out
        except ChannelClosed:
            if self._stopping:
                raise RemoteStoppedUnexpectedly(
                    f"node {self.name!r} stopped before the call to {name!r} finished"
                ) from None
            raise _link_lost("calling", name) from None
        finally:
            if clean:
                pool.release(channel)
            else:
                pool.discard(channel)
        values: list[Any] = []
        for reply in replies:
            assert reply is not None
            if isinstance(reply, TimeoutError):
                values.append(_Failed(reply))
                continue
            if isinstance(reply, Error):
                error = exception_from_error_info(reply.error)
                if not gather:
                    raise error
                values.append(error if isinstance(error, UnableToFindCandidate) else _Failed(error))
                continue
            value = self.codec.decode_value(reply.payload)
            values.append(structure(value) if structure is not None else value)
        return values

    # A call made from outside daffi's loop (a sync caller without a call channel, an async
    # caller on another event loop, a BG call from any thread) is one mechanism: its thread
    # registers a pending entry and writes the Call itself (send_from_thread); the receive
    # loop finishes the entry, which wakes the caller the way it waits (a lock, a wake-up of
    # its loop, a future); whatever ends the wait early abandons the call (abandon): the
    # entry goes and the remote work is cancelled.

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
            call_id = next(self._ids)
        self._pending[call_id] = pending
        chain = current_chain() if blocking else ""
        try:
            conn.send_threadsafe(
                Call(call_id, name, payload, self.name, receiver, timeout, chain=chain)
            )
        except anyio.BrokenResourceError:
            self._pending.pop(call_id, None)
            raise _link_lost("calling", name) from None
        return call_id

    def abandon(self, conn: Link, call_id: int, pending: Pending) -> None:
        """The wait for call ``call_id`` is over: forget it and, if it was not answered,
        cancel it remotely (any thread)."""
        self._pending.pop(call_id, None)
        if not pending.done:
            with contextlib.suppress(anyio.BrokenResourceError):
                conn.send_threadsafe(Cancel(call_id, self.name))

    def outcome(self, pending: Pending, structure: Callable[[Any], Any] | None) -> Any:
        """The value of an answered call, or its error raised."""
        if pending.error is not None:
            raise exception_from_error_info(pending.error)
        assert pending.payload is not None
        value = self.codec.decode_value(pending.payload)
        return structure(value) if structure is not None else value

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
            raise TimeoutError(
                f"call to {name!r} timed out after {timeout} s; the remote execution was cancelled"
            )
        return self.outcome(pending, structure)

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
        conn = self.conn
        if conn is None:
            return False, None
        own, remaining = self._deadline(timeout)
        answered = anyio.Event()
        waker = loop_waker()
        pending = Pending(callback=lambda: waker.soon(answered.set))
        call_id = self.send_from_thread(
            conn, name, payload, receiver, remaining, pending, blocking=False
        )
        timed_out = False
        try:
            if timeout is None:
                await answered.wait()
            else:
                with anyio.CancelScope(deadline=own) as scope:
                    await answered.wait()
                timed_out = scope.cancelled_caught
        finally:
            self.abandon(conn, call_id, pending)
        if timed_out:
            raise TimeoutError(
                f"call to {name!r} timed out after {timeout} s; the remote execution was cancelled"
            )
        return True, self.outcome(pending, structure)

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
        conn = self.conn
        if conn is None:
            return None
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        call_id = next(self._ids)  # known before the reply can come

        def resolve() -> None:
            try:
                value = self.outcome(pending, structure)
            except Exception as exc:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    future.set_exception(exc)
            else:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    future.set_result(value)
            self._pending.pop(call_id, None)

        pending = Pending(callback=resolve)
        self.send_from_thread(
            conn, name, payload, receiver, None, pending, blocking=False, call_id=call_id
        )

        def on_done(done: concurrent.futures.Future[Any]) -> None:
            if done.cancelled():
                self.abandon(conn, call_id, pending)

        future.add_done_callback(on_done)
        return future

    # ------------------------------------------------------------------ schedules
