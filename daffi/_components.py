"""The controller and the node of one Global: how they are made, started and connected."""

from __future__ import annotations

import builtins
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from daffi._auth import NodeCredentials
from daffi._connection import Connection
from daffi._greeting import Introduction, Rejected
from daffi._local_link import LocalConnection
from daffi._node import Node
from daffi._pickling import OptIns
from daffi._protocol import RegistrationLimits
from daffi._settings import Configured
from daffi._tls import TlsHandshakeFailed
from daffi.exceptions import (
    AuthenticationError,
    DaffiError,
    GlobalContextError,
    InitializationError,
    TimeoutError,
)
from daffi.transports import PLAIN_SOCKET, get_transport
from daffi.transports._base import Bound

if TYPE_CHECKING:
    from daffi._controller import Controller
    from daffi._schedule_host import ScheduleReports

__all__ = ["GOODBYE_TIMEOUT", "Components"]

#: seconds the goodbye to peers may take when a Global stops (however it stops)
GOODBYE_TIMEOUT = 1.0

NodeEvent = Callable[[str, bool], Awaitable[None]]


class Components:
    """The controller and/or node a Global runs, as its settings ask.

    :meth:`start` makes and starts them in the core's task group; ``controller`` and ``node``
    stay ``None`` for the parts this process does not run (or before they start).
    """

    def __init__(
        self,
        settings: Configured,
        on_node_event: NodeEvent,
        schedule_reports: ScheduleReports,
    ) -> None:
        self.settings = settings
        self.on_node_event = on_node_event
        self.schedule_reports = schedule_reports
        #: how much a node may offer (the controller's limit and this node's own)
        self.registration = RegistrationLimits(
            settings.max_callbacks, settings.max_registration_size
        )
        self.controller: Controller | None = None
        self.node: Node | None = None
        #: the controller's sockets, bound by the constructor (see bind_now)
        self.bound: Bound | None = None

    def bind_now(self) -> None:
        """A controller created inside a running loop: bind its address now, without the
        loop, so that its port is known when the constructor returns (the core serves the
        sockets once it runs). Transports that cannot bind ahead bind when it starts.

        Raises:
            InitializationError: the address cannot be bound (in use, ...).
        """
        settings = self.settings
        if not settings.init_controller or settings.nats is not None:
            return
        try:
            self.bound = get_transport(settings.address.scheme).bind_now(settings.address)
        except (OSError, ValueError) as exc:
            raise InitializationError(
                f"controller {settings.process_name!r} cannot listen on {settings.address}: {exc}"
            ) from exc
        if self.bound is not None:
            settings.address = self.bound.address
            settings.port = settings.address.port

    def release(self) -> None:
        """Close the sockets bound ahead if the core never served them."""
        bound, self.bound = self.bound, None
        if bound is not None:
            bound.close()

    def require_node(self) -> Node:
        if self.node is None:
            raise GlobalContextError(
                "Support for invoking remote calls is not enabled in this process: it runs only "
                "the controller (init_node=False)"
            )
        return self.node

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Start the controller (listening; the settings learn the bound address), then the
        node, and wait for the node's first handshake (up to ``connect_timeout``)."""
        settings = self.settings
        if settings.init_controller:
            from daffi._controller import Controller  # a node alone never loads it

            self.controller = Controller(
                settings.process_name,
                [self.bound or settings.address],
                on_node_event=None if settings.init_node else self.on_node_event,
                max_frame_size=settings.max_frame_size,
                heartbeat_interval=settings.heartbeat_interval,
                max_connections=settings.max_connections,
                frame_timeout=settings.frame_timeout,
                registration=self.registration,
                max_calls_in_flight=settings.max_calls_in_flight,
                tls=settings.tls,
                auth_secret=settings.auth_secret,
                bind_names=settings.ssl_bind_names,
            )
            self.bound = None  # the controller owns (and closes) them now
            try:
                bound = await tg.start(self.controller.serve)
            except OSError as exc:
                raise InitializationError(
                    f"controller {settings.process_name!r} cannot listen on "
                    f"{settings.address}: {exc}"
                ) from exc
            settings.address = bound[0]
            settings.port = settings.address.port
        if not settings.init_node:
            return
        self.node = Node(
            settings.process_name,
            settings.registry,
            self._connector(tg),
            controller_label=str(settings.address),
            on_node_event=self.on_node_event,
            workers=settings.workers,
            max_frame_size=settings.max_frame_size,
            heartbeat_interval=settings.heartbeat_interval,
            max_concurrent_calls=settings.max_concurrent_calls,
            min_period_interval=settings.min_period_interval,
            open_channel=None if self.controller or settings.nats else self._channel_opener(),
            introduction=Introduction(
                settings.process_name,
                self.registration,
                NodeCredentials(secret=settings.auth_secret),
                closed=self._closed_error(),
                connect_timeout=settings.connect_timeout,
            ),
            opt_ins=OptIns(settings.allow_pickle, settings.allow_transfer),
            state_dir=settings.state_dir,
            metrics=settings.metrics,
        )
        self.node.dispatch.schedules.reports = self.schedule_reports
        await tg.start(self.node.run)
        try:
            with anyio.fail_after(settings.connect_timeout):
                await self.node.wait_connected()
        except builtins.TimeoutError as exc:
            if isinstance(exc, TimeoutError):
                raise
            what = "a NATS server" if settings.nats is not None else "a controller"
            raise InitializationError(
                f"node {settings.process_name!r} could not reach {what} at "
                f"{settings.address} within {settings.connect_timeout} s (connect_timeout); "
                f"is {'nats-server' if settings.nats is not None else 'the controller'} running?"
            ) from None

    async def goodbye(self) -> None:
        """Send ``Bye`` to the peers: shielded (it runs while being cancelled) and bounded."""
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + GOODBYE_TIMEOUT
            if self.node is not None:
                await self.node.goodbye()
            if self.controller is not None:
                await self.controller.goodbye()

    def _closed_error(self) -> DaffiError | None:
        """What a TLS controller ending the link before it answers the handshake means: it
        refused this node's client certificate, or its lack of one (TLS 1.3 tells the client
        only after the handshake). None: not TLS."""
        tls = self.settings.tls
        if tls is None or tls.client is None:
            return None
        if tls.client_certificate:
            return AuthenticationError(
                "the controller ended the connection right after the TLS handshake: it refused "
                "this node's client certificate (not signed by the CA it trusts?); its log "
                "says why"
            )
        return AuthenticationError(
            "the controller ended the connection right after the TLS handshake: it requires a "
            "client certificate (mutual TLS), and this node presents none; give it "
            "ssl_certificate and ssl_key signed by the CA the controller trusts"
        )

    def _connector(self, tg: anyio.abc.TaskGroup) -> Callable[[], Awaitable[Any]]:
        """How the node connects: to the controller in this process, over NATS, or to a
        controller through the address's transport."""
        if self.controller is not None:
            return self._local_connector(tg)
        if self.settings.nats is not None:
            return self._nats_connector()
        return self._remote_connector()

    def _nats_connector(self) -> Callable[[], Awaitable[Any]]:
        from daffi._nats_link import NatsLink  # controller mode never loads it

        settings = self.settings
        nats = settings.nats
        assert nats is not None

        async def connect() -> NatsLink:
            return await NatsLink.open(
                nats.servers,
                settings.process_name,
                heartbeat_interval=settings.heartbeat_interval,
                max_frame_size=settings.max_frame_size,
                max_calls_in_flight=settings.max_calls_in_flight,
                tls=nats.tls,
                connect_timeout=2.0,  # one attempt; the session retries within connect_timeout
            )

        return connect

    def _local_connector(self, tg: anyio.abc.TaskGroup) -> Callable[[], Awaitable[Any]]:
        controller = self.controller
        assert controller is not None

        async def connect() -> LocalConnection:
            ours, theirs = LocalConnection.pair()
            tg.start_soon(controller.handle_connection, theirs)
            return ours

        return connect

    def _remote_connector(self) -> Callable[[], Awaitable[Connection]]:
        transport = get_transport(self.settings.address.scheme)
        address = self.settings.address
        max_frame_size = self.settings.max_frame_size
        tls = self.settings.tls
        # Decided once per transport: may its connections bypass the stream? (TLS or not:
        # daffi seals every byte itself, on every path.)
        plain_socket = PLAIN_SOCKET in transport.capabilities

        async def connect() -> Connection:
            stream = await transport.connect(address)
            cipher = None
            if tls is not None:
                try:
                    cipher = await tls.connect(stream, address.host, str(address))
                except TlsHandshakeFailed as exc:
                    kind = AuthenticationError if exc.authentication else InitializationError
                    raise Rejected(kind(str(exc))) from exc
            return Connection(
                stream,
                cipher=cipher,
                max_frame_size=max_frame_size,
                peer="the controller",
                plain_socket=plain_socket,
            )

        return connect

    def _channel_opener(self) -> Callable[[float], socket.socket | None] | None:
        """Opens the blocking sockets of call and work channels; None (sync calls go through
        the loop) unless the transport declares PLAIN_SOCKET: a channel writes daffi's
        frames to its socket itself (with TLS, through the socket's own TLS session)."""
        transport = get_transport(self.settings.address.scheme)
        if PLAIN_SOCKET not in transport.capabilities:
            return None
        address = self.settings.address
        tls = self.settings.tls

        def open_channel(timeout: float) -> socket.socket | None:
            sock = transport.connect_blocking(address, timeout)
            if sock is None or tls is None or tls.client is None:
                return sock
            try:
                return tls.connect_blocking(sock, address.host, str(address))
            except TlsHandshakeFailed as exc:
                raise OSError(str(exc)) from exc

        return open_channel
