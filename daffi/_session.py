"""A node's link to the controller: connect, handshake, receive, heartbeat, reconnect.

Task structure (:meth:`Session.supervise`, a task of :meth:`daffi._node.Node.run`)::

    supervisor (reconnects with backoff)
     └─ session task group (one per connection to the controller)
         ├─ writer (frames queued by other threads)
         ├─ heartbeat
         ├─ receive loop
         └─ one task per incoming call, each in its own CancelScope

The receive loop hands each message to whom it concerns: replies, generator values and
upload credit to the node's :class:`~daffi._calls.CallTable`; calls, stream items, callee
credit and cancels to the node's dispatcher (the :class:`Callee`); directory changes to the
:class:`~daffi._mirror.DirectoryMirror`.

When the connection is lost the session group is cancelled: callbacks still running for
callers that the controller has already failed are interrupted, and every call this node was
waiting on fails with ``RemoteStoppedUnexpectedly``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.abc

from daffi._calls import CallTable
from daffi._greeting import Introduction, Rejected, warn_unreachable
from daffi._link import Link, cancelled_from_outside, say_last
from daffi._mirror import DirectoryMirror
from daffi._protocol import (
    Bye,
    Call,
    Cancel,
    Credit,
    Error,
    Message,
    NodeDown,
    NodeUp,
    Ping,
    Pong,
    Reject,
    Result,
    StreamEnd,
    StreamItem,
    YieldItem,
)
from daffi.exceptions import ProtocolError, RemoteStoppedUnexpectedly, daffi_error_info
from daffi.registry._store import CallbackRegistry

if TYPE_CHECKING:
    from daffi._channel import ChannelPool
    from daffi._executor import Executor

__all__ = ["Callee", "Connector", "NodeEventHook", "Session"]

logger = logging.getLogger("daffi.node")

NodeEventHook = Callable[[str, bool], Awaitable[None]]
#: opens the link to the controller: a Connection made by whoever knows the transport (it
#: decides whether the connection may bypass the stream), or the in-process link
Connector = Callable[[], Awaitable[Link]]


class Callee(Protocol):
    """What the session hands incoming calls to (the node's dispatcher)."""

    @property
    def executor(self) -> Executor:
        """Runs ``def`` callbacks; also starts (and joins) the work channel's thread."""
        ...

    async def on_call(self, msg: Call, tg: anyio.abc.TaskGroup) -> None: ...

    def start_in_thread(self, msg: Call) -> bool: ...

    def on_stream(self, msg: StreamItem | StreamEnd) -> None: ...

    def on_credit(self, msg: Credit) -> None: ...

    def on_cancel(self, msg: Cancel) -> None: ...

    def run_here(self, msg: Call) -> Result | Error: ...

    def run_inline(self, msg: Call) -> Result | Error | None: ...


class Session:
    """The node's link to the controller, kept up (see the module docstring).

    Args:
        name: the node's name.
        registry: the callbacks it offers (sent in every handshake and on changes).
        connect: opens the link to the controller (called again on every reconnect).
        directory: the directory mirror this session keeps current.
        table: the calls the node waits on (failed when the link is lost).
        callee: runs the calls that arrive.
        controller_label: how log lines and errors name the controller's address.
        on_node_event: awaited as ``hook(node_name, joined)`` for every node that joins or
            leaves, this one included; must not block (spawn work elsewhere).
        workers: the node's ``workers`` (the in-process link runs that many inline).
        open_channel: opens a blocking socket to the controller, for call channels (None:
            sync callers go through the loop).
        introduction: how the node introduces itself (name, limits, credentials, the
            handshake's timeout); default: by name, with the default limits.
    """

    def __init__(
        self,
        name: str,
        registry: CallbackRegistry,
        connect: Connector,
        *,
        directory: DirectoryMirror,
        table: CallTable,
        callee: Callee,
        controller_label: str,
        on_node_event: NodeEventHook | None,
        workers: int,
        max_frame_size: int,
        heartbeat_interval: float,
        max_backoff: float,
        open_channel: Callable[[float], socket.socket | None] | None,
        introduction: Introduction | None = None,
    ) -> None:
        self.name = name
        #: how this node introduces itself on every (re)connection
        self.introduction = introduction if introduction is not None else Introduction(name)
        self.registry = registry
        self._connect = connect
        self.directory = directory
        self.table = table
        self.callee = callee
        self.controller_label = controller_label
        self.on_node_event = on_node_event
        self.workers = workers
        self.max_frame_size = max_frame_size
        self.heartbeat_interval = heartbeat_interval
        self.max_backoff = max_backoff
        self.conn: Link | None = None
        self._connected = anyio.Event()
        self._session_ended = anyio.Event()
        self._open_channel = open_channel
        #: the session's call channels for sync callers (None: they go through the loop)
        self.channels: ChannelPool | None = None
        self._work_started = False

    _connected_once = False
    _stopping = False
    #: the controller said Bye on the current session (it stopped; it did not crash)
    _controller_left = False
    #: the other nodes known when the controller link was lost (None: no outage)
    _peers_before_outage: set[str] | None = None

    @property
    def stopping(self) -> bool:
        """The node is leaving (it said goodbye, or it is being cancelled)."""
        return self._stopping

    async def supervise(self) -> None:
        """Connect (and reconnect, with backoff) to the controller until cancelled."""
        delay = initial = 0.05
        failures = 0
        while True:
            try:
                link = await self._connect()
            except Rejected as exc:  # a TLS handshake failed (and was logged)
                if self._refused(exc):
                    return
                await anyio.sleep(self.max_backoff)  # (a certificate may be renewed)
                continue
            except OSError as exc:
                failures += 1
                warn_unreachable(
                    self.name,
                    self.controller_label,
                    exc,
                    failures,
                    self._connected_once,
                    self.introduction.connect_timeout,
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
            except Rejected as exc:
                if self._refused(exc):
                    return
                logger.error(
                    "node %r: could not reconnect to %s: %s", self.name, self.controller_label, exc
                )
            except ProtocolError as exc:
                logger.error("node %r: protocol error on the controller link: %s", self.name, exc)
            except anyio.EndOfStream:
                pass
            if self._stopping:
                return  # it said goodbye: the controller closed the link; no reconnecting
            await anyio.sleep(delay * random.uniform(0.5, 1.0))

    def _refused(self, rejected: Rejected) -> bool:
        """Whether ``rejected`` ends the node: it came before its first connection (whoever
        waits for that gets the error). Later, the node keeps trying."""
        if self._connected_once:
            return False
        self.directory.fail(rejected.error)
        self._connected.set()
        return True

    async def wait_connected(self) -> None:
        """Wait for the first successful handshake; raise if the controller refused it."""
        await self._connected.wait()
        if self.directory.fatal_error is not None:
            raise self.directory.fatal_error

    async def connection(self, timeout: float | None) -> Link:
        """The link to the controller, waiting up to 5 s (or ``timeout``) while it is down.

        Raises:
            RemoteStoppedUnexpectedly: still not connected after that.
        """
        conn = self.conn
        if conn is not None:
            return conn
        if self.directory.fatal_error is not None:
            raise self.directory.fatal_error
        with anyio.move_on_after(min(timeout, 5.0) if timeout is not None else 5.0):
            await self._connected.wait()
        if self.conn is None:
            raise RemoteStoppedUnexpectedly(
                f"node {self.name!r} is not connected to the controller at "
                f"{self.controller_label} (reconnecting in the background)"
            )
        return self.conn

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
            infos = self.registry.infos()
            frame, why = self.introduction.offer(infos)
            if why is not None:
                logger.error(
                    "node %r: the callbacks it offers now were not sent: %s", self.name, why
                )
                return
            # If the link is broken, the next handshake carries the callbacks.
            with contextlib.suppress(anyio.BrokenResourceError):
                await conn.send_frame(frame)
            self._start_work_channel()

    async def send(self, msg: Message) -> None:
        """Send ``msg`` to the controller if connected (dropped when the link is down)."""
        conn = self.conn
        if conn is not None:
            with contextlib.suppress(anyio.BrokenResourceError):
                await conn.send(msg)

    # ------------------------------------------------------------------ one session

    async def _session(self, conn: Link) -> None:
        try:
            offered = self.registry.infos()
            first = await self.introduction.shake_hands(conn, offered, self.controller_label)
            directory = {k: {i.name: i for i in v} for k, v in first.directory.items()}
            self.directory.replace(directory, dict(first.seen))
            if first.channel_token and self._open_channel is not None:
                from daffi._channel import ChannelPool  # not for a node beside its controller

                self.channels = ChannelPool(
                    self._open_channel,
                    self.name,
                    first.channel_token,
                    max_frame_size=self.max_frame_size,
                    handshake_timeout=self.introduction.timeout,
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
                conn.inline = self.callee.run_inline
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn.run_writer)
                tg.start_soon(self._heartbeat, conn)
                # Errors that end the session are kept out of the task group (which would
                # wrap them in exception groups) and raised after it.
                try:
                    while True:
                        msg = (await conn.receive())[0]
                        if not await self._handle(msg, tg):
                            break
                        del msg  # (a large one's memory goes back before the next arrives)
                except anyio.EndOfStream:
                    pass
                except ProtocolError as exc:
                    failure = exc
                finally:
                    tg.cancel_scope.cancel()
            if failure is not None:
                raise failure
        except anyio.get_cancelled_exc_class():
            if self.conn is conn and cancelled_from_outside():
                # The loop is ending with this node running (a daffi 2 style app that
                # never stopped its Global): leave cleanly, as a stop would (its goodbye
                # may have queued the Bye already).
                await say_last(conn, None if self._stopping else Bye("node stopping"))
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
        now = set(self.directory.peers)
        for name in sorted(before - now):
            await self._event(name, False)
        for name in sorted(now - before):
            await self._event(name, True)

    def _lost_connection(self) -> None:
        self._peers_before_outage = set(self.directory.peers)
        left, self._controller_left = self._controller_left, False
        where = f"the controller at {self.controller_label}"
        if self._stopping:
            why = f"node {self.name!r} stopped before the call finished"
            logger.info("node %r disconnected from the controller", self.name)
        elif left:
            why = f"{where} stopped before the call finished"
            logger.info("node %r: %s left; reconnecting", self.name, where)
        else:
            why = f"the connection to {where} was lost before the call finished"
            logger.warning("node %r lost the connection to %s; reconnecting", self.name, where)
        self.table.fail_all(daffi_error_info("RemoteStoppedUnexpectedly", why, self.name))
        self.directory.replace({}, {})

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
        self._work_started = self.callee.executor.spawn(
            functools.partial(pool.serve_work, self.callee.run_here), f"daffi-{self.name}-work"
        )

    def _take_direct(self, msg: Message, frame: bytes | bytearray) -> bool:
        """What the controller in this process hands over without queueing (on the loop).

        Replies to this node's calls, and calls of ``def`` callbacks (they start in a worker
        thread); everything else goes through the session's receive loop.
        """
        if isinstance(msg, Result | Error):
            self.table.on_reply(msg)
            return True
        if isinstance(msg, Call):
            return self.callee.start_in_thread(msg)
        return False

    async def _handle(self, msg: Message, tg: anyio.abc.TaskGroup) -> bool:
        if isinstance(msg, Call):
            await self.callee.on_call(msg, tg)
        elif isinstance(msg, Result | Error):
            self.table.on_reply(msg)
        elif isinstance(msg, YieldItem):
            self.table.on_yield(msg)
        elif isinstance(msg, StreamItem | StreamEnd):
            self.callee.on_stream(msg)
        elif isinstance(msg, Credit):
            if msg.to_callee:
                self.callee.on_credit(msg)
            else:
                self.table.on_credit(msg)
        elif isinstance(msg, Cancel):
            self.callee.on_cancel(msg)
        elif isinstance(msg, NodeUp):
            if self.directory.node_up(msg.name, msg.callbacks, msg.address, msg.since):
                await self._event(msg.name, True)
        elif isinstance(msg, NodeDown):
            logger.info(
                "node %r: process %r %s",
                self.name,
                msg.name,
                "left" if msg.clean else "disconnected",
            )
            if self.directory.node_down(msg.name):
                await self._event(msg.name, False)
        elif isinstance(msg, Ping):
            await self.send(Pong())
        elif isinstance(msg, Pong):
            pass
        elif isinstance(msg, Reject):
            # A change of what this node offers was refused; it keeps its earlier offer.
            logger.error("node %r: %s", self.name, msg.reason)
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

    async def _event(self, name: str, joined: bool) -> None:
        if self.on_node_event is not None:
            try:
                await self.on_node_event(name, joined)
            except Exception:
                logger.exception("node event hook failed for %r", name)
