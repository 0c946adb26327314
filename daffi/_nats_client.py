"""NATS through nats-py, on either backend: the one module that imports nats-py.

nats-py runs on asyncio only. A :class:`NatsClient` uses it on daffi's own loop when that
loop is asyncio's. On trio it runs it on an asyncio loop in a thread of its own
(``daffi-<name>-nats``): :meth:`NatsClient.connect` starts that thread and
:meth:`NatsClient.aclose` stops it and joins it, bounded. The link that owns the client
(:class:`daffi._nats_link.NatsLink`) is opened and closed by the node's session, so the
thread lives and ends within the Global's task tree.

Between the two loops, messages cross in bursts: what daffi publishes (from any thread) is
queued and sent, in order, by one sender task on the NATS loop, woken once per burst; what
arrives is handed to daffi's loop through a :class:`~daffi._crossloop.LoopWaker`, also once
per burst (on asyncio, both sides are one loop and nothing crosses).

Addresses: ``nats://[user:password@]host:port[,host:port...][/namespace][?creds=FILE&nkey=FILE]``
(a token is ``nats://token@host:port``). The namespace (default ``daffi``) prefixes every
subject, so several daffi systems can share one NATS cluster.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

import anyio
import sniffio

from daffi._crossloop import LoopWaker, loop_call_soon, wait_future
from daffi._greeting import Rejected
from daffi._nats_address import NatsServers, require_nats
from daffi.exceptions import AuthenticationError

__all__ = ["NatsClient"]

logger = logging.getLogger("daffi.nats")

#: how long closing the client (and joining its thread) may take
CLOSE_TIMEOUT = 5.0

#: (subject, payload, reply subject or "")
Outgoing = tuple[str, bytes, str]
#: called on daffi's loop for each message received: (subject, payload, headers)
Received = Callable[[str, bytes, "dict[str, str] | None"], None]


class NatsClient:
    """One connection to a NATS server or cluster, usable from daffi's loop and any thread.

    Make it with :meth:`connect`; close it with :meth:`aclose`. :meth:`publish` never blocks
    and keeps the order of the messages one thread publishes.
    """

    def __init__(self, name: str, received: Received, on_closed: Callable[[], None]) -> None:
        self.name = name
        self._received = received
        self._on_closed = on_closed
        self._nc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the NATS loop
        self._thread: threading.Thread | None = None  # trio: the NATS loop's thread
        self._daffi_waker: LoopWaker | None = None  # trio: hands messages to daffi's loop
        self._lock = threading.Lock()
        self._outgoing: collections.deque[Outgoing] = collections.deque()
        self._kicked = False
        self._wake: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self.closed = False
        self._last_error: Exception | None = None

    # ------------------------------------------------------------------ open and close

    @classmethod
    async def connect(
        cls,
        address: NatsServers,
        *,
        name: str,
        received: Received,
        on_closed: Callable[[], None],
        tls: ssl.SSLContext | None = None,
        connect_timeout: float = 5.0,
    ) -> NatsClient:
        """Connect to ``address``; ``received`` gets every message of the subscriptions
        (on daffi's loop), ``on_closed`` is called (on daffi's loop) if the client ends
        for good (the servers are gone for longer than nats-py keeps trying).

        Raises:
            ConnectionError: no server could be reached (the session tries again).
            Rejected: a server refused the credentials (``AuthenticationError``) or the
                connection (``InitializationError``).
            InitializationError: nats-py is not installed.
        """
        require_nats()
        client = cls(name, received, on_closed)
        if sniffio.current_async_library() == "asyncio":
            client._loop = asyncio.get_running_loop()
        else:
            client._daffi_waker = LoopWaker(loop_call_soon())
            client._start_thread()
        try:
            await client._run(client._open(address, tls, connect_timeout))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await client.aclose()
            raise
        return client

    def _start_thread(self) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"daffi-{self.name}-nats", daemon=True)
        self._thread.start()
        started.wait(CLOSE_TIMEOUT)

    async def _run(self, coro: Any) -> Any:
        """Run ``coro`` on the NATS loop and return its result (awaited from daffi's loop)."""
        if self._thread is None:
            return await coro
        assert self._loop is not None
        return await wait_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _open(self, address: NatsServers, tls: ssl.SSLContext | None, timeout: float) -> None:
        import nats
        import nats.errors

        self._wake = asyncio.Event()
        options: dict[str, Any] = {
            "servers": list(address.servers),
            "name": self.name,
            "connect_timeout": timeout,
            "allow_reconnect": True,
            "no_echo": True,  # a node never hears itself (see NatsLink: a NodeUp of its name)
            # The first connection is tried once per server: the session retries (with
            # backoff, saying so) while no server is reachable, as it does for a controller.
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.05,
            "error_cb": self._error,
            "closed_cb": self._closed,
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
        }
        if tls is not None:
            options["tls"] = tls
        if address.credentials is not None:
            options["user_credentials"] = address.credentials
        if address.nkey_seed is not None:
            options["nkeys_seed"] = address.nkey_seed
        try:
            # nats-py retries a TLS failure without end: the attempt is bounded here.
            self._nc = await asyncio.wait_for(nats.connect(**options), timeout + 0.5)
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            cause = self._last_error or exc
            text = str(cause).lower()
            if isinstance(
                cause, nats.errors.SecureConnRequiredError | ssl.SSLCertVerificationError
            ):
                raise Rejected(
                    AuthenticationError(
                        f"the NATS server at {address} requires TLS, and its certificate could "
                        f"not be verified ({cause}): give this Global ssl_ca (the CA that signed "
                        "it; and ssl_certificate and ssl_key if it checks client certificates)"
                    )
                ) from None
            if isinstance(cause, ssl.SSLError):
                raise Rejected(
                    AuthenticationError(f"TLS with the NATS server at {address} failed: {cause}")
                ) from None
            if not ("authorization" in text or "authentication" in text):
                raise ConnectionError(f"no NATS server answered at {address} ({cause!r})") from None
            raise Rejected(
                AuthenticationError(
                    f"the NATS server at {address} refused node {self.name!r}: {cause} "
                    "(check the user, password, token or credentials in the address)"
                )
            ) from None
        # From now on nats-py reconnects by itself, for as long as it takes.
        self._nc.options["max_reconnect_attempts"] = -1
        self._nc.options["reconnect_time_wait"] = 0.5
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    async def aclose(self) -> None:
        """Close the connection (what was published is flushed first, bounded) and, on trio,
        stop and join the NATS loop's thread. Shielded; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            with contextlib.suppress(Exception):
                await self._run(self._shutdown())
            if self._thread is not None:
                assert self._loop is not None
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._loop.stop)
                await anyio.to_thread.run_sync(self._thread.join, CLOSE_TIMEOUT)

    async def _shutdown(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            await self._send_pending()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.flush(), 1.0)
            with contextlib.suppress(Exception):
                await nc.close()

    # ------------------------------------------------------------------ nats-py callbacks

    async def _error(self, exc: Exception) -> None:
        self._last_error = exc
        logger.debug("node %r: NATS error: %r", self.name, exc)

    async def _disconnected(self) -> None:
        if self.closed:
            return  # nats-py says so on an intended close too
        logger.warning("node %r: disconnected from NATS; reconnecting", self.name)

    async def _reconnected(self) -> None:
        url = getattr(self._nc, "connected_url", None)
        logger.info("node %r: reconnected to NATS at %s", self.name, _netloc(url))

    async def _closed(self) -> None:
        if not self.closed:
            self._to_daffi(self._on_closed)

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(self, subject: str) -> None:
        """Receive the messages of ``subject`` (``received`` gets them)."""
        await self._run(self._subscribe(subject))

    async def _subscribe(self, subject: str) -> None:
        await self._nc.subscribe(subject, cb=self._deliver)

    async def _deliver(self, msg: Any) -> None:
        headers = msg.headers
        if self._daffi_waker is None:
            self._received(msg.subject, msg.data, headers)
        else:
            self._to_daffi(functools.partial(self._received, msg.subject, msg.data, headers))

    def _to_daffi(self, func: Callable[[], object]) -> None:
        if self._daffi_waker is None:
            func()
            return
        with contextlib.suppress(RuntimeError):  # daffi's loop has ended
            self._daffi_waker.soon(func)

    # ------------------------------------------------------------------ publishing

    def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        """Queue ``payload`` for ``subject`` (any thread; never blocks; in order).

        Raises:
            anyio.BrokenResourceError: the client is closed.
        """
        if self.closed:
            raise anyio.BrokenResourceError("the NATS connection is closed")
        with self._lock:
            self._outgoing.append((subject, payload, reply))
            if self._kicked:
                return
            self._kicked = True
        loop = self._loop
        assert loop is not None
        try:
            if self._thread is None and _on_loop(loop):
                loop.call_soon(self._kick)
            else:
                loop.call_soon_threadsafe(self._kick)
        except RuntimeError:
            raise anyio.BrokenResourceError("the NATS connection is closed") from None

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _send_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._send_pending()

    async def _send_pending(self) -> None:
        import nats.errors

        with self._lock:
            batch = list(self._outgoing)
            self._outgoing.clear()
            self._kicked = False
        nc = self._nc
        for subject, payload, reply in batch:
            try:
                await nc.publish(subject, payload, reply=reply)
            except nats.errors.MaxPayloadError:
                logger.error(
                    "node %r: a message of %d bytes to %s is larger than the NATS server's "
                    "max_payload (%d bytes); it was dropped",
                    self.name,
                    len(payload),
                    subject,
                    nc.max_payload,
                )
            except (nats.errors.ConnectionClosedError, nats.errors.OutboundBufferLimitError):
                return

    async def flush(self, timeout: float) -> bool:
        """Whether everything published so far reached the server within ``timeout``
        seconds (a round trip to it)."""
        try:
            with anyio.fail_after(timeout + 1):
                await self._run(self._flush(timeout))
        except Exception:
            return False
        return True

    async def _flush(self, timeout: float) -> None:
        await self._send_pending()
        await self._nc.flush(timeout=timeout)

    @property
    def max_payload(self) -> int:
        """The largest message the server takes, in bytes."""
        return int(getattr(self._nc, "max_payload", 1024 * 1024))

    @property
    def connected_url(self) -> str:
        """``host:port`` of the server it is connected to ("" when none)."""
        return _netloc(getattr(self._nc, "connected_url", None))


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _netloc(url: Any) -> str:
    if url is None:
        return ""
    host = getattr(url, "hostname", None)
    port = getattr(url, "port", None)
    return f"{host}:{port}" if host else str(url)
