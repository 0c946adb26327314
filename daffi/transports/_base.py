"""The transport interface: connect to an :class:`Address`, or listen on one."""

from __future__ import annotations

import abc
import socket
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final

import anyio.abc

from ._address import Address

__all__ = ["PLAIN_SOCKET", "Bound", "Listening", "Transport", "describe_peer"]

#: Capability: the transport's streams are plain sockets carrying daffi's frames unchanged.
#:
#: A transport declaring it promises that every stream its ``connect`` returns and its
#: listener accepts is an anyio socket stream whose ``SocketAttribute.raw_socket`` carries
#: exactly the bytes written to the stream (no encryption, compression or framing of its
#: own), and that ``connect_blocking`` returns such a socket. Only then does daffi take its
#: fast paths that bypass the stream: writing to a duplicate of the socket from any thread,
#: reading it through its own asyncio protocol, handing it to a thread (call, work and
#: served channels). Without it, every frame goes through the stream's ``send`` and
#: ``receive``: a plugin that transforms bytes (or wraps its streams in anyio's
#: ``TLSStream``, which passes ``raw_socket`` through) sees every frame. daffi's own TLS
#: (``Global(ssl_*)``) seals the bytes before they reach the socket, so it keeps the
#: capability of the transport it runs on.
PLAIN_SOCKET: Final = "plain-socket"


class Transport(abc.ABC):
    """A way to carry bytes between daffi processes, registered under a URL scheme.

    Implementations must be constructible without arguments and keep no per-instance
    state that matters: the registry hands out one shared instance per scheme.
    Third-party transports register with :func:`daffi.transports.register_transport`
    or the ``daffi.transports`` entry-point group.

    Attributes:
        capabilities: What the transport promises beyond carrying bytes (see
            :data:`PLAIN_SOCKET`, the only one so far). Declared by each class for itself
            and **not inherited**: a subclass that wraps or transforms its parent's streams
            (TLS, compression) must not keep a promise about bytes it changed, so it has no
            capabilities unless it declares them again.
    """

    scheme: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "capabilities" not in cls.__dict__:
            cls.capabilities = frozenset()

    @abc.abstractmethod
    async def connect(self, address: Address) -> anyio.abc.ByteStream:
        """Open a connection to a listener.

        Args:
            address: Where to connect; its scheme must be this transport's.

        Returns:
            A connected byte stream; the caller closes it.

        Raises:
            OSError: If nothing is listening there or the connection fails
                (``ConnectionRefusedError``, ``FileNotFoundError``...).
            ValueError: If the address lacks what this transport needs.
        """

    @abc.abstractmethod
    async def listen(self, address: Address) -> Listening:
        """Start listening for connections.

        Args:
            address: Where to listen; its scheme must be this transport's.

        Returns:
            The listener with the address actually bound; the caller closes it.

        Raises:
            OSError: If the address is in use or cannot be bound.
            ValueError: If the address lacks what this transport needs.
        """

    def connect_blocking(self, address: Address, timeout: float) -> socket.socket | None:
        """Open a blocking socket to a listener, for a thread that talks to it directly.

        Sync callers use such a connection as their call channel, which spares them a
        hand-off to the event loop per call. Used only when the transport declares
        :data:`PLAIN_SOCKET` (daffi writes its frames to that socket unchanged). Optional:
        the default returns None, and callers then go through the loop.

        Raises:
            OSError: If the connection fails.
        """
        return None

    def bind_now(self, address: Address) -> Bound | None:
        """Bind ``address`` at once, with no event loop, if this transport can; the sockets
        go to :meth:`adopt` later, on the loop.

        A controller created inside a running event loop binds this way in its constructor,
        so that the address it got (a port picked for port 0) is known before the loop runs
        its core. Optional: the default returns None, and :meth:`listen` binds later.

        Raises:
            OSError: If the address is in use or cannot be bound.
            ValueError: If the address lacks what this transport needs.
        """
        return None

    async def adopt(self, bound: Bound) -> Listening:
        """Listen on the sockets :meth:`bind_now` bound (required where it returns one)."""
        raise NotImplementedError(f"{type(self).__name__} does not bind ahead of listening")

    def _check_scheme(self, address: Address) -> None:
        """Reject an address meant for another transport, which is always a caller bug."""
        if address.scheme != self.scheme:
            raise ValueError(
                f"{type(self).__name__} handles {self.scheme}:// addresses, got {address}; "
                f"use get_transport({address.scheme!r}) for this address"
            )


@dataclass
class Bound:
    """Listening sockets bound by :meth:`Transport.bind_now`, not yet served.

    Attributes:
        address: The address actually bound (with the real port).
        sockets: The bound, listening sockets; :meth:`close` them if they are never adopted.
    """

    address: Address
    sockets: list[socket.socket]

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@dataclass
class Listening:
    """A listener together with the address it is bound to.

    Use it as an async context manager, or call :meth:`aclose` when done.

    Attributes:
        listener: Accepts connections; ``serve(handler, task_group=None)`` starts a
            task running ``handler(stream)`` for each one.
        address: The address actually bound, e.g. with the real port when port 0 was
            asked. ``str(address)`` is what clients connect to.
    """

    listener: anyio.abc.Listener[anyio.abc.ByteStream]
    address: Address

    async def aclose(self) -> None:
        """Stop accepting connections and release the address (unix: the socket file).

        Connections already accepted stay open. Calling it twice is harmless.
        """
        await self.listener.aclose()

    async def __aenter__(self) -> Listening:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _with_address(exc: OSError, action: str, address: Address) -> OSError:
    """Rebuild ``exc`` with a message naming the address, keeping its type and errno.

    The type is kept so callers can still catch ``ConnectionRefusedError`` and friends.
    anyio's happy-eyeballs ``connect_tcp`` raises a bare ``OSError`` whose cause holds the
    real per-address errors, so those are unpacked to recover a common type and errno.
    """
    causes: list[OSError] = [exc]
    cause = exc.__cause__
    if isinstance(cause, OSError):
        causes = [cause]
    else:
        # ExceptionGroup is not a builtin on Python 3.10, hence the duck typing.
        grouped = getattr(cause, "exceptions", None)
        if isinstance(grouped, (list, tuple)):
            causes = [e for e in grouped if isinstance(e, OSError)] or causes
    kinds = {type(c) for c in causes}
    errnos = {c.errno for c in causes}
    kind = kinds.pop() if len(kinds) == 1 else OSError
    errno_ = errnos.pop() if len(errnos) == 1 else None
    detail = "; ".join(dict.fromkeys(c.strerror or str(c) for c in causes))
    message = f"cannot {action} {address}: {detail}"
    try:
        return kind(errno_, message) if errno_ is not None else kind(message)
    except TypeError:  # an OSError subclass with an unusual constructor
        return OSError(errno_, message) if errno_ is not None else OSError(message)


def describe_peer(stream: anyio.abc.ByteStream) -> str:
    """Who is on the other end of ``stream``, for log lines and ``Global.nodes``:
    ``host:port``, ``unix socket (pid N)`` (the peer's process, where the system tells it),
    or ``a peer``."""
    address = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    if address:
        return str(address)
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if raw is not None and raw.family == socket.AF_UNIX:
        pid = _unix_peer_pid(raw)
        return "unix socket" if pid is None else f"unix socket (pid {pid})"
    return "a peer"


def _unix_peer_pid(sock: socket.socket) -> int | None:
    """The process id of a Unix socket's peer (Linux ``SO_PEERCRED``), or None."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        credentials = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    pid: int = struct.unpack("3i", credentials)[0]
    return pid or None
