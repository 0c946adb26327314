"""The controller's side of call channels, work channels and served channels.

A node opens these beside its connection, each starting with an ``Attach`` frame that carries
the node's channel token (see :mod:`daffi._channel`):

- a **call channel** carries the ``Call`` and ``Cancel`` frames of one of the node's threads
  and the replies to them. The loop reads it or, when this process has a node with ``def``
  callbacks, a thread of its own does (a *served* channel, :mod:`daffi._served`), which runs
  that node's plain calls itself;
- a **work channel** is a thread of the node blocked reading it: while it is idle, the
  controller sends it the next plain call of one of the node's ``def`` callbacks, and the
  thread answers on it.

:class:`ChannelService` serves them for the controller and owns the table of calls running
on work channels. It talks to the controller through :class:`ChannelHost`: every call read
from a channel is routed by the controller (which asks the :class:`~daffi._router.Router`,
as every path does), and replies go back through it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import anyio

from daffi._admission import may_attach
from daffi._executor import DEFAULT_GRACE
from daffi._frames import encode_frame
from daffi._link import DirectHandler, Link, Outlet
from daffi._protocol import (
    PROTOCOL_VERSION,
    Attach,
    Call,
    CallbackInfo,
    Cancel,
    Error,
    Message,
    Reject,
    Result,
    Welcome,
)
from daffi._router import InFlight, Router, valid_timeout
from daffi.exceptions import ProtocolError

if TYPE_CHECKING:
    from daffi._served import Route, ServedChannel

__all__ = ["ChannelHost", "ChannelService", "Peer", "runs_in_a_thread"]

logger = logging.getLogger("daffi.controller")


class Peer(Protocol):
    """What the service reads of a connected node (the controller's record of it)."""

    @property
    def name(self) -> str: ...

    @property
    def callbacks(self) -> Mapping[str, CallbackInfo]: ...

    @property
    def conn(self) -> Link: ...

    @property
    def said_bye(self) -> bool: ...

    @property
    def channel_token(self) -> bytes | None:
        """The secret that lets the node open channels (None: it may not)."""
        ...

    @property
    def channels(self) -> set[Outlet]:
        """Its open call channels (served ones too)."""
        ...

    @property
    def work(self) -> set[Link]:
        """Its work channels."""
        ...

    @property
    def work_idle(self) -> list[Link]:
        """Its work channels with no call running (ready for a ``def`` callback's call)."""
        ...


P = TypeVar("P", bound=Peer)


class ChannelHost(Protocol[P]):
    """What the service asks of the controller: routing and sending."""

    @property
    def local(self) -> P | None:
        """The node in this process, if any (its link is the in-process one)."""
        ...

    async def route_call(
        self,
        peer: P,
        msg: Call,
        frame: bytes | bytearray,
        *,
        channel: Outlet | None = None,
        target: P | None = None,
    ) -> None:
        """Route a call ``peer`` sent (its reply to go to ``channel``), to ``target`` if a
        served channel's thread chose it already."""
        ...

    async def route_cancel(self, peer: P, msg: Cancel, frame: bytes | bytearray) -> None: ...

    async def route_reply(self, peer: P, msg: Result | Error, frame: bytes | bytearray) -> None: ...

    def reply_now(self, peer: P, msg: Result | Error, frame: bytes | bytearray) -> None:
        """Route a reply of ``peer`` without waiting (any thread)."""
        ...

    def direct_handler(self, peer: P, channel: Link | None) -> DirectHandler:
        """What a link of ``peer`` hands over without a task switch (see ``Link.direct``)."""
        ...

    async def send_to(self, name: str, msg: Message) -> None:
        """Send ``msg`` to node ``name``'s connection, if it is connected."""
        ...

    async def fail_running(
        self, key: tuple[str, int], route: InFlight, process: str, why: str
    ) -> None:
        """Tell the caller of call ``key`` that ``process`` stopped (``why``) running it."""
        ...


def runs_in_a_thread(info: CallbackInfo | None, msg: Call) -> bool:
    """Whether ``msg`` is a plain call (wanting its result) of the ``def`` callback ``info``:
    one a thread runs start to end, so a work or served channel's thread can take it."""
    return (
        info is not None
        and not info.is_async
        and not info.is_generator
        and msg.want_result
        and msg.schedule is None
        and not msg.stream_in
    )


class ChannelService(Generic[P]):
    """Serves the call and work channels of the controller's nodes (see the module
    docstring).

    Args:
        host: the controller, which routes and sends.
        router: the controller's router (the directory, the calls in flight).
        name: the controller's process name (in its ``Welcome``).
        max_frame_size: the limit for frames a served channel's thread reads.
    """

    def __init__(
        self, host: ChannelHost[P], router: Router[P], *, name: str, max_frame_size: int
    ) -> None:
        self._host = host
        self._router = router
        self._name = name
        self._max_frame_size = max_frame_size
        #: (caller, call id) -> the work channel running it
        self.on_work: dict[tuple[str, int], Link] = {}
        #: call channels served by a thread of their own (see daffi._served)
        self.served_threads = 0

    async def serve(self, conn: Link, msg: Attach) -> None:
        """Serve a call or work channel of a connected node, until it closes."""
        conn.peer = f"{msg.name!r} (call channel)"
        peer = self._router.directory.peers.get(msg.name)
        if peer is None or not may_attach(msg, peer.channel_token):
            logger.warning("refused a call channel for node %r: unknown node or token", msg.name)
            with contextlib.suppress(anyio.BrokenResourceError):
                await conn.send(Reject("unknown node or channel token", "InitializationError"))
            return
        welcome = Welcome(PROTOCOL_VERSION, self._name, "msgpack")
        if msg.work:
            await conn.send(welcome)
            await self._serve_work_channel(peer, conn)
            return
        await self._serve_call_channel(peer, conn, welcome)

    async def close_all(self, peer: P) -> None:
        """Close every channel of ``peer`` (it left); each one's handler settles its calls."""
        for channel in [*peer.channels, *peer.work]:
            await channel.aclose()

    # ------------------------------------------------------------------ call channels

    async def _serve_call_channel(self, peer: P, conn: Link, welcome: Welcome) -> None:
        host = self._host
        served = self._serve_in_thread(peer, conn, welcome)
        link: Outlet = conn
        if served is None:
            await conn.send(welcome)
            conn.direct = host.direct_handler(peer, conn)
        else:
            link = served
        peer.channels.add(link)
        if served is not None:
            self.served_threads += 1
            served.start()  # once it is among the peer's channels (its first reply may be fast)
        try:
            while True:
                hint: P | None = None
                if served is None:
                    msg_, frame = await conn.receive()
                else:
                    msg_, frame, hint = await served.receive()
                if not self._router.is_current(peer):
                    return  # its node left (and maybe came back as a new session)
                if isinstance(msg_, Call):
                    await host.route_call(peer, msg_, frame, channel=link, target=hint)
                elif isinstance(msg_, Cancel):
                    await host.route_cancel(peer, msg_, frame)
                else:
                    raise ProtocolError(
                        f"unexpected {type(msg_).__name__} on a call channel of {peer.name!r}"
                    )
                del msg_, frame  # (a large frame's memory goes back before the next arrives)
        finally:
            conn.direct = None
            peer.channels.discard(link)
            if served is not None:
                self.served_threads -= 1
                await served.aclose()
                with anyio.CancelScope(shield=True):
                    # Its thread ends once the callback it runs returns (bounded, as for
                    # the node's executor: see daffi._executor).
                    if not await served.join(DEFAULT_GRACE):
                        logger.warning(
                            "the thread serving a call channel of %r did not end within %.1f s",
                            peer.name,
                            DEFAULT_GRACE,
                        )
            with anyio.CancelScope(shield=True):
                # Nobody reads the replies of the calls still running for it: cancel them.
                for key, route in self._router.take_via(link):
                    await host.send_to(route.executor, Cancel(key[1], key[0]))

    def _serve_in_thread(self, peer: P, conn: Link, welcome: Welcome) -> ServedChannel | None:
        """Hand call channel ``conn`` of ``peer`` over to a thread of its own (to start), if
        this process has a node with ``def`` callbacks (and a thread for it to spare); None:
        the loop serves it. The thread runs that node's plain calls of those callbacks itself
        (see :mod:`daffi._served`)."""
        local = self._host.local
        if local is None or not self._router.is_current(local):
            return None
        local_conn = local.conn
        if conn.in_process or not local_conn.in_process:
            return None
        if self.served_threads >= local_conn.inline_slots_of_other:
            return None
        if all(info.is_async or info.is_generator for info in local.callbacks.values()):
            return None
        detached = conn.detach_socket()
        if detached is None:
            return None
        from daffi._served import ServedChannel

        sock, leftover = detached
        served = ServedChannel(
            sock,
            leftover,
            first=encode_frame(welcome),
            route=self._served_route(peer),
            peer=conn.peer,
            max_frame_size=self._max_frame_size,
        )
        return served

    def _served_route(self, peer: P) -> Route:
        """What a served call channel of ``peer`` does with a call, in its thread: runs it
        if it is a plain call of a ``def`` callback of the node in this process (as one of
        that node's workers), else leaves it to the controller's routing with the target it
        chose (so round-robin advances once per call).

        Reads the directory without the loop, through the router (one snapshot per lookup).
        """
        router = self._router

        def route(msg: Call) -> tuple[Result | Error | None, Any]:
            if msg.src != peer.name or not valid_timeout(msg) or not router.is_current(peer):
                return None, None
            target = router.target(peer.name, msg)
            local = self._host.local
            local_conn = None if local is None else local.conn
            if (
                target is None
                or target is not local
                or local_conn is None
                or not local_conn.in_process
                or not runs_in_a_thread(local.callbacks.get(msg.name), msg)
            ):
                return None, target
            return local_conn.run_inline(msg), local

        return route

    # ------------------------------------------------------------------ work channels

    async def _serve_work_channel(self, peer: P, conn: Link) -> None:
        """Serve a work channel of ``peer``: calls go out on it, one at a time, and come
        back answered (see :meth:`sent_to_work_channel`)."""
        host = self._host
        router = self._router
        conn.peer = f"{peer.name!r} (work channel)"
        peer.work.add(conn)
        peer.work_idle.append(conn)

        def take(msg: Message, frame: bytes | bytearray) -> bool:
            if not isinstance(msg, Result | Error) or not router.is_current(peer):
                return False
            self._work_done(peer, conn, msg)
            host.reply_now(peer, msg, frame)
            return True

        conn.direct = take
        try:
            while True:
                msg, frame = await conn.receive()
                if not router.is_current(peer):
                    return
                if not isinstance(msg, Result | Error):
                    raise ProtocolError(
                        f"unexpected {type(msg).__name__} on a work channel of {peer.name!r}"
                    )
                self._work_done(peer, conn, msg)
                await host.route_reply(peer, msg, frame)
                del msg, frame  # (a large frame's memory goes back before the next arrives)
        finally:
            conn.direct = None
            peer.work.discard(conn)
            with contextlib.suppress(ValueError):
                peer.work_idle.remove(conn)
            with anyio.CancelScope(shield=True):
                for key, channel in list(self.on_work.items()):
                    if channel is not conn or self.on_work.pop(key, None) is None:
                        continue
                    entry = router.forget(key)
                    if entry is None:
                        continue
                    if router.is_current(peer):
                        why = "lost its work connection"  # its node is still connected
                    else:
                        why = "left" if peer.said_bye else "disconnected"
                    await host.fail_running(key, entry, peer.name, why)

    def _work_done(self, peer: P, conn: Link, msg: Result | Error) -> None:
        # The node answered the call its work channel ran: the channel is free again.
        if self.on_work.pop((msg.dst, msg.id), None) is conn and conn not in peer.work_idle:
            peer.work_idle.append(conn)

    def sent_to_work_channel(
        self, target: P, msg: Call, caller: str, frame: bytes | bytearray
    ) -> bool:
        """Send ``msg`` on an idle work channel of ``target`` if it is a plain call of a
        ``def`` callback (the channel's thread runs it at once, with no hand-off from the
        node's loop to a worker thread); whether it went there. The call is in flight
        already: its reply may come back before this returns."""
        if not (target.work_idle and runs_in_a_thread(target.callbacks.get(msg.name), msg)):
            return False
        conn = target.work_idle.pop()
        key = (caller, msg.id)
        self.on_work[key] = conn
        try:
            conn.send_frame_threadsafe(frame)  # one call at a time: nothing to wait for
        except anyio.BrokenResourceError:
            self.on_work.pop(key, None)  # a work channel closing: the node's connection
            return False
        return True
