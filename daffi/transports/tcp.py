"""The ``tcp://host:port`` transport."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

from ._address import Address
from ._base import PLAIN_SOCKET, Bound, Listening, Transport, _with_address

__all__ = ["TcpTransport"]

logger = logging.getLogger("daffi.transports")

# Errors that mean "this machine cannot use this address at all" (e.g. ::1 when IPv6 is
# disabled): such an address is skipped as long as another address of the host binds.
_UNUSABLE_ADDRESS_ERRNOS = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})
# With port 0 the first socket picks a free port and the others must get the same one;
# if another process holds it on one of them, start over with a new port.
_EPHEMERAL_PORT_ATTEMPTS = 10

_SockAddr = tuple[str, int] | tuple[str, int, int, int]


class TcpTransport(Transport):
    """The ``tcp://`` transport, on anyio sockets with ``TCP_NODELAY``.

    ``listen`` binds exactly the given host, never all interfaces unless asked for
    (``0.0.0.0`` / ``::``). A host name that resolves to several addresses (e.g.
    ``localhost`` to ``127.0.0.1`` and ``::1``) is bound on all of them with one port.

    Attributes:
        backlog: Listen queue length (the kernel may cap it).
        capabilities: ``{PLAIN_SOCKET}``: its streams are plain sockets, so daffi may
            write and read them directly (a subclass that wraps them does not inherit it).
    """

    scheme: ClassVar[str] = "tcp"
    capabilities: ClassVar[frozenset[str]] = frozenset({PLAIN_SOCKET})
    backlog: ClassVar[int] = 4096

    async def connect(self, address: Address) -> anyio.abc.ByteStream:
        """Connect to ``address.host:address.port``.

        Raises:
            ConnectionRefusedError: If nothing listens there (other ``OSError`` subclasses
                for unreachable hosts or unresolvable names); the message names the address.
            ValueError: If host or port is missing, or the port is 0.
        """
        host, port = self._host_and_port(address)
        if port == 0:
            raise ValueError(f"cannot connect to {address}: port 0 only makes sense to listen")
        try:
            stream = await anyio.connect_tcp(host, port)
        except OSError as exc:
            raise _with_address(exc, "connect to", address) from exc
        # anyio already sets it on both backends; being explicit keeps small RPC frames
        # from waiting on Nagle's algorithm if that ever changes.
        try:
            stream.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
        except OSError:  # pragma: no cover - option unsupported; a latency issue only
            logger.debug("could not set TCP_NODELAY on a connection to %s", address)
        return stream

    def connect_blocking(self, address: Address, timeout: float) -> socket.socket:
        """A blocking connection to ``address.host:address.port`` (TCP_NODELAY set)."""
        host, port = self._host_and_port(address)
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise _with_address(exc, "connect to", address) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - option unsupported; a latency issue only
            logger.debug("could not set TCP_NODELAY on a connection to %s", address)
        return sock

    async def listen(self, address: Address) -> Listening:
        """Listen on ``address.host:address.port`` (port 0 picks a free port).

        Returns:
            The listener and the bound address: same host as given, real port.

        Raises:
            OSError: ``EADDRINUSE`` if the port is in use, or why the host cannot be bound.
            ValueError: If host or port is missing.
        """
        host, port = self._host_and_port(address)
        with _listen_errors(address):
            sockets = _bind_all(await _resolve(host, port), port, self.backlog)
        return await self.adopt(_bound(self.scheme, host, sockets))

    def bind_now(self, address: Address) -> Bound | None:
        """Bind ``address.host:address.port`` now, without a loop (the name resolved by the
        system's resolver, blocking); raises as :meth:`listen` does.

        A subclass with a ``listen`` of its own (one that wraps its streams, say) binds when
        it listens: None, unless it overrides this method too.
        """
        cls = type(self)
        if cls.listen is not TcpTransport.listen and cls.bind_now is TcpTransport.bind_now:
            return None
        host, port = self._host_and_port(address)
        with _listen_errors(address):
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            sockets = _bind_all(_passive(infos), port, self.backlog)
        return _bound(self.scheme, host, sockets)

    async def adopt(self, bound: Bound) -> Listening:
        """Serve the sockets bound by :meth:`bind_now` (or :meth:`listen`)."""
        listeners: list[anyio.abc.SocketListener] = []
        try:
            for sock in bound.sockets:
                listeners.append(await anyio.abc.SocketListener.from_socket(sock))
        except BaseException:
            for listener in listeners:
                await anyio.aclose_forcefully(listener)
            for sock in bound.sockets[len(listeners) :]:
                sock.close()
            raise
        logger.debug("listening on %s (%d socket(s))", bound.address, len(listeners))
        return Listening(listener=MultiListener(listeners), address=bound.address)

    def _host_and_port(self, address: Address) -> tuple[str, int]:
        self._check_scheme(address)
        if not address.host or address.port is None:
            raise ValueError(
                f"tcp address {address!r} needs a host and a port, e.g. "
                f"Address(scheme='tcp', host='127.0.0.1', port=8888); "
                f"use host '0.0.0.0' to listen on all interfaces"
            )
        return address.host, address.port


def _bound(scheme: str, host: str, sockets: list[socket.socket]) -> Bound:
    return Bound(Address(scheme=scheme, host=host, port=sockets[0].getsockname()[1]), sockets)


@contextlib.contextmanager
def _listen_errors(address: Address) -> Iterator[None]:
    """Name the address in an error of binding it, and what to do about one in use."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                errno.EADDRINUSE,
                f"cannot listen on {address}: the address is already in use; stop the "
                f"process using it or choose another port (port 0 picks a free one)",
            ) from exc
        raise _with_address(exc, "listen on", address) from exc


async def _resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, _SockAddr]]:
    """Resolve ``host`` to the socket addresses to bind (see :func:`_passive`)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return _passive(infos)


def _passive(infos: list[Any]) -> list[tuple[socket.AddressFamily, _SockAddr]]:
    """The socket addresses to bind among ``getaddrinfo``'s, in resolver order, no
    duplicates."""
    result: list[tuple[socket.AddressFamily, _SockAddr]] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        # glibc can repeat results (sourceware bug 14969); AF_UNIX etc. cannot occur here.
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in result:
            result.append((family, sockaddr))
    return result


def _bind_all(
    sockaddrs: list[tuple[socket.AddressFamily, _SockAddr]], port: int, backlog: int
) -> list[socket.socket]:
    """Bind and listen on every address, all on the same port; the first is the primary."""
    for _attempt in range(_EPHEMERAL_PORT_ATTEMPTS):
        sockets: list[socket.socket] = []
        first_error: OSError | None = None
        bound_port = port
        try:
            for family, sockaddr in sockaddrs:
                target: _SockAddr = (sockaddr[0], bound_port, *sockaddr[2:])
                try:
                    sock = _bind_one(family, target, backlog)
                except OSError as exc:
                    if exc.errno not in _UNUSABLE_ADDRESS_ERRNOS:
                        raise
                    logger.debug("skipping unusable address %s: %s", sockaddr[0], exc)
                    first_error = first_error or exc
                    continue
                sockets.append(sock)
                bound_port = sock.getsockname()[1]
        except OSError as exc:
            for sock in sockets:
                sock.close()
            if exc.errno == errno.EADDRINUSE and port == 0 and sockets:
                continue
            raise
        if not sockets:
            raise first_error or OSError(
                errno.EADDRNOTAVAIL, "the host resolved to no IPv4 or IPv6 address"
            )
        return sockets
    raise OSError(
        errno.EADDRINUSE,
        f"no free port is available on all {len(sockaddrs)} addresses after "
        f"{_EPHEMERAL_PORT_ATTEMPTS} attempts",
    )


def _bind_one(family: socket.AddressFamily, sockaddr: _SockAddr, backlog: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            # Without this, binding "::" would also take IPv4, and "exactly the host given"
            # is the promise.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if sys.platform == "win32":
            # Windows' SO_REUSEADDR lets another process steal a listening port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined,unused-ignore]
        else:
            # Lets a restarted controller rebind while old connections sit in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
