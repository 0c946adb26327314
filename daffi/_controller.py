"""The controller: accepts nodes, keeps the directory, routes every call.

The controller never decodes user payloads: it decodes each envelope to route it and forwards
the frame bytes it received unchanged. It tracks the calls in flight so that when a node goes
away, every caller waiting on that node is failed at once (``RemoteStoppedUnexpectedly``) and
every call that node was waiting on is cancelled on its executor.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping

import anyio
import anyio.abc

from daffi._accepting import (
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    ConnectionGate,
    reap_stalled_peers,
    serve_listener,
)
from daffi._admission import Peer, first_message, join, reoffer, retire
from daffi._auth import HOLD_INTERVALS, Guard, HeldNames
from daffi._connection import Connection
from daffi._controller_channels import ChannelService
from daffi._direct_path import DirectPath
from daffi._frames import DEFAULT_MAX_FRAME_SIZE, encode_frame
from daffi._link import DirectHandler, Link, Outlet, cancelled_from_outside, say_last
from daffi._protocol import (
    Attach,
    Bye,
    Call,
    Cancel,
    Credit,
    Error,
    Message,
    Ping,
    Pong,
    Register,
    RegistrationLimits,
    Result,
    StreamEnd,
    StreamItem,
    YieldItem,
    error_reply,
)
from daffi._router import DEFAULT_MAX_CALLS_IN_FLIGHT, InFlight, Router, valid_timeout
from daffi._stream_relay import StreamFrame, stream_hop
from daffi._tls import TlsConfig, certificate_names
from daffi.exceptions import ProtocolError
from daffi.transports import PLAIN_SOCKET, Address, Listening, get_transport
from daffi.transports._base import Bound, describe_peer

__all__ = ["Controller"]

logger = logging.getLogger("daffi.controller")

NodeEventHook = Callable[[str, bool], Awaitable[None]]


class Controller:
    """Routes calls between the nodes connected to it.

    Args:
        name: the controller's process name (used in error messages).
        addresses: where to listen; port 0 picks a free TCP port (see :attr:`addresses`);
            a ``Bound`` is sockets its transport bound already (``Transport.bind_now``).
        on_node_event: awaited as ``hook(node_name, joined)`` when a node joins or leaves.
        handshake_timeout: seconds a new connection has to send its ``Hello``.
        heartbeat_interval: nodes ping at this interval; a connection silent for three
            intervals is closed as dead.
    """

    def __init__(
        self,
        name: str,
        addresses: list[Address | Bound],
        *,
        on_node_event: NodeEventHook | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        handshake_timeout: float = 10.0,
        heartbeat_interval: float = 5.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
        registration: RegistrationLimits | None = None,
        max_calls_in_flight: int = DEFAULT_MAX_CALLS_IN_FLIGHT,
        tls: TlsConfig | None = None,
        auth_secret: bytes | None = None,
        bind_names: bool = False,
    ) -> None:
        self.name = name
        #: the TLS its listeners serve (None: plaintext)
        self.tls = tls if tls is not None and tls.server is not None else None
        #: who may join: the token, mutual TLS, names bound to certificates and to sessions
        self.guard = Guard(
            secret=auth_secret,
            mutual_tls=self.tls is not None and self.tls.mutual,
            bind_names=bind_names,
            held=HeldNames(HOLD_INTERVALS * heartbeat_interval),
        )
        #: how many callbacks a node may offer, in how large a registration
        self.registration = registration if registration is not None else RegistrationLimits()
        #: seconds a frame may take from its first byte to its last
        self.frame_timeout = frame_timeout
        #: the connections open through its listeners, against ``max_connections``
        self.gate = ConnectionGate(max_connections)
        self.requested_addresses = addresses
        self.addresses: list[Address] = []
        self.on_node_event = on_node_event
        self.max_frame_size = max_frame_size
        self.handshake_timeout = handshake_timeout
        self.heartbeat_interval = heartbeat_interval
        #: the directory, the routing decision and the calls in flight (see daffi._router)
        self.router: Router[Peer] = Router(max_calls_in_flight)
        self._task_group: anyio.abc.TaskGroup | None = None
        self._loop_thread = threading.get_ident()
        #: the node in this process, if any (its connection is the in-process link)
        self._local: Peer | None = None
        #: Bye was sent to every node (a stop): a connection cancelled afterwards says nothing
        self._said_goodbye = False
        #: serves the nodes' call and work channels (see daffi._controller_channels)
        self.channels: ChannelService[Peer] = ChannelService(
            self, self.router, name=name, max_frame_size=max_frame_size
        )
        #: routes replies and calls where the loop (or a worker thread) read them
        self.direct = DirectPath(
            self.router,
            self.channels,
            self._reply_destination,
            lambda: threading.get_ident() == self._loop_thread,
        )

    @property
    def peers(self) -> Mapping[str, Peer]:
        """The connected nodes (an immutable snapshot)."""
        return self.router.directory.peers

    @property
    def local(self) -> Peer | None:
        """The node in this process, if any (its connection is the in-process link)."""
        return self._local

    # ------------------------------------------------------------------ lifecycle

    async def serve(self, *, task_status: anyio.abc.TaskStatus[list[Address]]) -> None:
        """Listen on every address and serve until cancelled; reports the bound addresses."""
        listenings: list[Listening] = []
        self._loop_thread = threading.get_ident()
        try:
            plain: list[bool] = []  # per listener: its transport declares PLAIN_SOCKET
            for address in self.requested_addresses:
                if isinstance(address, Bound):
                    transport = get_transport(address.address.scheme)
                    listenings.append(await transport.adopt(address))
                else:
                    transport = get_transport(address.scheme)
                    listenings.append(await transport.listen(address))
                plain.append(PLAIN_SOCKET in transport.capabilities)
            self.addresses = [item.address for item in listenings]
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                for item, plain_socket in zip(listenings, plain, strict=True):
                    handler = functools.partial(self.handle_stream, plain_socket=plain_socket)
                    tg.start_soon(serve_listener, item.listener, handler, tg, self.gate)
                    logger.info("controller %r listening on %s", self.name, item.address)
                tg.start_soon(self._reap_silent_peers)
                task_status.started(self.addresses)
        finally:
            self._task_group = None
            with anyio.CancelScope(shield=True):
                for item in listenings:
                    await item.aclose()

    async def goodbye(self) -> None:
        """Tell every node the controller is leaving (best effort).

        The caller bounds it and shields it (the Global does, whatever ends it).
        """
        self._said_goodbye = True
        frame = encode_frame(Bye("controller stopping"))
        for peer in list(self.peers.values()):
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await peer.conn.send_frame(frame)

    async def _reap_silent_peers(self) -> None:
        await reap_stalled_peers(
            lambda: self.peers.values(), self.heartbeat_interval, self.frame_timeout
        )

    # ------------------------------------------------------------------ connections

    async def handle_stream(
        self, stream: anyio.abc.ByteStream, *, plain_socket: bool = False
    ) -> None:
        """Serve one node connecting through a transport, until it closes.

        ``plain_socket``: the listener's transport declares ``PLAIN_SOCKET`` (the
        connection may then bypass the stream).
        """
        origin = describe_peer(stream)
        certificate: frozenset[str] | None = None
        cipher = None
        if self.tls is not None:
            cipher = await self.tls.accept(stream, self.handshake_timeout, origin)
            if cipher is None:
                return
            certificate = certificate_names(cipher)
        # Until it joined, a connection may send no more than a registration.
        limit = min(self.max_frame_size, self.registration.max_first_frame)
        conn = Connection(
            stream, max_frame_size=limit, plain_socket=plain_socket, peer=origin, cipher=cipher
        )
        await self.handle_connection(conn, certificate=certificate)

    async def handle_connection(
        self, conn: Link, *, certificate: frozenset[str] | None = None
    ) -> None:
        """Serve one node connection until it closes (also the in-process node's link).

        ``certificate``: the names in the client certificate of a TLS connection.
        """
        peer: Peer | None = None
        async with anyio.create_task_group() as tg:
            # Finishes writes the socket could not take at once (large frames, slow peers).
            tg.start_soon(conn.run_writer)
            try:
                first = await first_message(conn, self.handshake_timeout)
                if first is None:
                    return
                conn.max_frame_size = self.max_frame_size
                if isinstance(first[0], Attach):
                    await self.channels.serve(conn, first[0])
                    return
                peer = await self._handshake(conn, *first, certificate=certificate)
                if peer is not None:
                    conn.direct = self.direct_handler(peer, None)
                    await self._serve_peer(peer)
            except ProtocolError as exc:
                logger.error("protocol error from %s: %s", conn.peer, exc)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the peer is gone: only this connection ends
            except OSError as exc:
                logger.warning("connection from %s failed: %s", conn.peer, exc)
            except anyio.get_cancelled_exc_class():
                if peer is not None and cancelled_from_outside():
                    # The loop is ending with this controller running: leave cleanly (its
                    # goodbye may have queued the Bye already).
                    await say_last(conn, None if self._said_goodbye else Bye("controller stopping"))
                raise
            finally:
                conn.direct = None
                tg.cancel_scope.cancel()
                if peer is not None and self.router.is_current(peer):
                    await self._drop_peer(peer)
                await conn.aclose()

    async def _handshake(
        self, conn: Link, msg: Message, size: int, *, certificate: frozenset[str] | None
    ) -> Peer | None:
        peer = await join(
            conn,
            msg,
            size,
            self.router,
            controller=self.name,
            limits=self.registration,
            guard=self.guard,
            certificate=certificate,
            timeout=self.handshake_timeout,
        )
        if peer is None:
            return None
        if conn.in_process:
            self._local = peer
        logger.info("node %r connected", peer.name)
        if self.on_node_event is not None:
            await self.on_node_event(peer.name, True)
        return peer

    async def _serve_peer(self, peer: Peer) -> None:
        conn = peer.conn
        while True:
            msg, frame = await conn.receive()
            if isinstance(msg, Call):
                await self.route_call(peer, msg, frame)
            elif isinstance(msg, Result | Error):
                await self.route_reply(peer, msg, frame)
            elif isinstance(msg, Cancel):
                await self.route_cancel(peer, msg, frame)
            elif isinstance(msg, StreamItem | StreamEnd | YieldItem | Credit):
                await self._relay_stream(peer, msg, frame)
            elif isinstance(msg, Ping):
                await self._send_on(peer.conn, Pong())
            elif isinstance(msg, Pong):
                pass
            elif isinstance(msg, Register):
                reoffer(
                    self.router,
                    peer,
                    msg,
                    len(frame),
                    limits=self.registration,
                    controller=self.name,
                )
            elif isinstance(msg, Bye):
                peer.said_bye = True
                return
            else:
                raise ProtocolError(f"unexpected {type(msg).__name__} from node {peer.name!r}")
            # A large frame's memory goes back now, not when the next one arrives.
            del msg, frame

    async def _drop_peer(self, peer: Peer) -> None:
        retire(self.router, peer)
        if peer.session_key is not None and not peer.said_bye:
            # It may come back: only its session may take the name meanwhile.
            self.guard.held.hold_for(peer.name, peer.session_key, anyio.current_time())
        if self._local is peer:
            self._local = None
        self.direct.forget_caller(peer.name)
        await self.channels.close_all(peer)
        how = "left" if peer.said_bye else "disconnected"
        logger.info("node %r %s", peer.name, how)
        with anyio.CancelScope(shield=True):
            for key, route in self.router.take_all(peer.name):
                if route.executor == peer.name:
                    await self.fail_running(key, route, peer.name, how)
                else:
                    # Nobody waits for this result any more: stop the work on its executor.
                    await self.send_to(route.executor, Cancel(key[1], key[0]))
            if self.on_node_event is not None:
                await self.on_node_event(peer.name, False)

    # ------------------------------------------------------------------ routing

    async def route_call(
        self,
        peer: Peer,
        msg: Call,
        frame: bytes | bytearray,
        *,
        channel: Outlet | None = None,
        target: Peer | None = None,
    ) -> None:
        if msg.src != peer.name:
            raise ProtocolError(f"node {peer.name!r} sent a call claiming to be from {msg.src!r}")
        if not valid_timeout(msg):
            raise ProtocolError(f"node {peer.name!r} sent a call with timeout {msg.timeout!r}")
        reply = channel if channel is not None else peer.conn
        if target is None:
            target = self.direct.chosen.pop((peer.name, msg.id), None)
        if target is not None and self.router.is_current(target):
            target_peer: Peer | None = target  # chosen already (a served channel's thread)
        else:
            target_peer = self.router.target(peer.name, msg)
        if target_peer is None:
            await self._fail(reply, msg, self.router.why_no_target(msg))
            return
        target_name = target_peer.name
        if msg.want_result and not self.router.record(
            (peer.name, msg.id), InFlight(target_name, msg.name, channel)
        ):
            text = self.router.why_too_many(peer.name, self.name)
            await self._send_on(
                reply, error_reply(msg.id, msg.src, "GlobalContextError", text, self.name)
            )
            return
        try:
            if self.channels.sent_to_work_channel(target_peer, msg, peer.name, frame):
                return
            conn = target_peer.conn
            if conn.offer_direct(msg, frame):
                return  # the node in this process took it at once
            await conn.send_frame(frame)
        except anyio.BrokenResourceError:
            self.router.forget((peer.name, msg.id))
            if msg.want_result:
                await self._send_on(
                    reply,
                    error_reply(
                        msg.id,
                        peer.name,
                        "RemoteStoppedUnexpectedly",
                        f"process {target_name!r} disconnected before it received {msg.name!r}",
                        target_name,
                    ),
                )

    async def _fail(self, reply: Outlet, msg: Call, text: str) -> None:
        if msg.want_result:
            await self._send_on(
                reply, error_reply(msg.id, msg.src, "UnableToFindCandidate", text, self.name)
            )
        else:
            logger.warning("dropped call %r from %r: %s", msg.name, msg.src, text)

    async def fail_running(
        self, key: tuple[str, int], route: InFlight, process: str, why: str
    ) -> None:
        """Tell the caller of call ``key`` that ``process`` stopped (``why``: "left",
        "disconnected", ...) while running it."""
        caller, call_id = key
        error = error_reply(
            call_id,
            caller,
            "RemoteStoppedUnexpectedly",
            f"process {process!r} {why} while running {route.callback!r}",
            process,
        )
        reply = self._reply_link(caller, route.channel)
        if reply is not None:
            await self._send_on(reply, error)

    def _reply_link(self, dst: str, channel: Outlet | None) -> Outlet | None:
        if channel is not None:
            return channel
        caller = self.peers.get(dst)
        return caller.conn if caller is not None else None

    async def route_reply(self, peer: Peer, msg: Result | Error, frame: bytes | bytearray) -> None:
        conn = self._reply_destination(peer, msg)
        if conn is not None:
            with contextlib.suppress(anyio.BrokenResourceError):
                if conn.offer_direct(msg, frame):
                    return
                await conn.send_frame(frame)

    def _reply_destination(self, peer: Peer, msg: Result | Error) -> Outlet | None:
        """Where ``peer``'s reply goes (its call's route is done), or None: nowhere (the
        caller cancelled or left, or ``peer`` does not run that call)."""
        entry = self.router.answered((msg.dst, msg.id), peer.name)
        return None if entry is None else self._reply_link(msg.dst, entry.channel)

    def direct_handler(self, peer: Peer, channel: Link | None) -> DirectHandler:
        """What ``peer``'s connection (or call ``channel``) hands over without a task switch
        (see daffi._direct_path)."""
        return self.direct.handler(peer, channel)

    def reply_now(self, peer: Peer, msg: Result | Error, frame: bytes | bytearray) -> None:
        """Route a reply of ``peer`` without waiting (any thread)."""
        self.direct.reply_now(peer, msg, frame)

    async def route_cancel(self, peer: Peer, msg: Cancel, frame: bytes | bytearray) -> None:
        if msg.src != peer.name:
            raise ProtocolError(f"node {peer.name!r} tried to cancel a call of {msg.src!r}")
        entry = self.router.forget((msg.src, msg.id))
        if entry is not None:
            target = self.peers.get(entry.executor)
            if target is not None:
                with contextlib.suppress(anyio.BrokenResourceError):
                    await target.conn.send_frame(frame)

    async def _relay_stream(self, peer: Peer, msg: StreamFrame, frame: bytes | bytearray) -> None:
        hop = stream_hop(self.router, peer, msg)
        if hop is not None:
            await self._forward(hop, frame)

    async def _forward(self, name: str, frame: bytes | bytearray) -> None:
        # Waiting here when the receiver is slow is the backpressure: the sender's stream
        # window bounds what can pile up.
        target = self.peers.get(name)
        if target is not None:
            with contextlib.suppress(anyio.BrokenResourceError):
                await target.conn.send_frame(frame)

    async def _send_on(self, conn: Outlet, msg: Message) -> None:
        with contextlib.suppress(anyio.BrokenResourceError):
            await conn.send(msg)

    async def send_to(self, name: str, msg: Message) -> None:
        peer = self.peers.get(name)
        if peer is not None:
            await self._send_on(peer.conn, msg)
