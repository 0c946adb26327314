"""What depends on the event loop library (asyncio, trio) or on anyio's internals.

A :class:`~daffi._connection.Connection` asks :func:`socket_access` once, when it is made,
what it may do with its socket beside the stream's own ``send`` and ``receive``. The answer
(a :class:`SocketAccess`) is fixed for the connection's life:

* **Nothing** unless the connection's transport declares
  :data:`~daffi.transports.PLAIN_SOCKET` *and* the stream is an anyio socket stream: every
  frame then goes through the stream, so a plugin transport that transforms bytes (or
  wraps its streams in anyio's ``TLSStream``, which passes ``raw_socket`` through) sees all
  of them. daffi's own TLS is not such a wrapper: the connection seals and opens the bytes
  itself (:mod:`daffi._cipher`), so what is written here is already sealed.
* **asyncio**: any thread may write to a duplicate of the socket's descriptor while the
  asyncio transport has nothing buffered, the loop writes what a turn queued at the end of
  the turn, and :class:`AsyncioReader` reads the socket in place of anyio's protocol. These
  need anyio's private attributes of its asyncio socket stream (``_transport``,
  ``_protocol.read_queue``), so they are used only when :func:`anyio_internals_known`
  (anyio in the tested range) and the attributes exist with the expected types; otherwise
  the connection uses anyio's public stream API only.
* **trio**: any thread may write to a duplicate of the socket's descriptor while the
  connection has no write in progress (public API: ``SocketAttribute.raw_socket``).

In both cases the socket can be handed to a thread (:meth:`SocketAccess.duplicate`, for
served channels). The unix transport's asyncio workaround (:func:`unix_stream_for_loop`) is
here too. Nothing outside this package looks at ``sniffio`` for a socket or touches anyio's
private attributes (``daffi._crossloop`` holds the loop-to-loop hand-offs: public APIs only).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

import anyio
import anyio.abc
import sniffio

from daffi.exceptions import InitializationError

if TYPE_CHECKING:
    from daffi._backends._asyncio_reader import AsyncioReader

__all__ = [
    "TESTED_ANYIO",
    "LoopEvent",
    "LoopPrimitives",
    "SocketAccess",
    "anyio_internals_known",
    "loop_primitives",
    "require_backend",
    "socket_access",
    "unix_stream_for_loop",
]

#: The anyio versions (from, below) whose private attributes the asyncio fast path reads;
#: pyproject.toml pins anyio to the same range. Outside it, the public stream path is used.
TESTED_ANYIO = ((4, 11), (5, 0))

#: trio is an extra (asyncio users do not install it); what to say when it is missing.
TRIO_MISSING = "backend='trio' needs trio: pip install 'daffi[trio]'"


@functools.cache
def anyio_internals_known() -> bool:
    """Whether the installed anyio is one whose internals were tested (see TESTED_ANYIO)."""
    current = installed_anyio_version()
    return current is not None and TESTED_ANYIO[0] <= current < TESTED_ANYIO[1]


def installed_anyio_version() -> tuple[int, int] | None:
    """anyio's (major, minor), from the ``anyio-X.Y...dist-info`` folder beside the package;
    None if there is none (then the public path is used).

    Not ``importlib.metadata.version``: importing it (and the email and zip modules it
    brings) costs a server about 2 MiB and several milliseconds on its first connection.
    """
    site = os.path.dirname(os.path.dirname(os.path.abspath(anyio.__file__)))
    try:
        names = os.listdir(site)
    except OSError:
        return None
    for name in names:
        found = re.fullmatch(r"anyio-(\d+)\.(\d+)[^-]*\.dist-info", name)
        if found is not None:
            return int(found.group(1)), int(found.group(2))
    return None


class LoopEvent(Protocol):
    """An event of one loop: ``anyio.Event``, or the trio event it wraps."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


class LoopPrimitives(NamedTuple):
    """Two things every call made on daffi's loop needs, with anyio's meaning."""

    #: the effective deadline of the caller's cancel scopes (``anyio.current_effective_deadline``)
    effective_deadline: Callable[[], float]
    #: a new event (``anyio.Event``)
    new_event: Callable[[], LoopEvent]


def loop_primitives() -> LoopPrimitives:
    """For the running loop: :class:`LoopPrimitives` by the cheapest public way.

    On trio, anyio's two functions are thin wrappers around ``trio.current_effective_deadline``
    and ``trio.Event``, reached through a look-up of the running backend on every call;
    these are used directly (same meaning, about 5 % of a call's cost). Elsewhere anyio's.
    """
    if sniffio.current_async_library() == "trio":
        import trio  # installed: a trio loop is running (require_backend checks beforehand)

        return LoopPrimitives(trio.current_effective_deadline, trio.Event)
    return LoopPrimitives(anyio.current_effective_deadline, anyio.Event)


def require_backend(backend: str) -> None:
    """Check, without importing it, that the event loop library *backend* names is installed.

    asyncio always is; trio is the extra ``daffi[trio]``.

    Raises:
        InitializationError: it is not installed (the message says how to install it).
    """
    if backend == "trio" and importlib.util.find_spec("trio") is None:
        raise InitializationError(TRIO_MISSING)


class SocketAccess:
    """What a connection may do with its socket beside its stream (see the module docstring).

    Attributes:
        reader: asyncio: reads the socket in place of anyio's protocol; None: read the
            stream's ``receive``.
        end_of_turn: asyncio: schedules a callback at the end of the current loop turn
            (the loop writes what the turn queued then); None: no such hook.
    """

    def __init__(
        self,
        raw: socket.socket | None = None,
        *,
        direct: socket.socket | None = None,
        write_buffer_size: Callable[[], int] | None = None,
        reader: AsyncioReader | None = None,
        end_of_turn: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self._raw = raw
        self._direct = direct
        self._write_buffer_size = write_buffer_size
        self.reader = reader
        self.end_of_turn = end_of_turn

    @property
    def can_write(self) -> bool:
        """Whether :meth:`send` may write to the socket (from any thread)."""
        return self._direct is not None

    def send(self, data: bytes | bytearray) -> int:
        """Write what the socket takes now, from any thread; 0 when it must be left to the
        loop (nothing may be written directly, or the asyncio transport still buffers an
        earlier write, whose order must be kept).

        Called with the connection's lock held and no write of the loop in progress.
        """
        sock = self._direct
        if sock is None:
            return 0
        buffered = self._write_buffer_size
        if buffered is not None and buffered():
            return 0
        try:
            return sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            return 0  # the loop's writer meets the same error and reports it

    def duplicate(self) -> socket.socket | None:
        """A new descriptor of the socket, for a thread that takes the connection over
        (the loop then reads nothing more: an asyncio reader is stopped); None when the
        connection's socket cannot be handed over.

        The duplicate shares the original's non-blocking flag.
        """
        raw = self._raw
        if raw is None:
            return None
        try:
            duplicate = socket.socket(fileno=os.dup(raw.fileno()))
        except (OSError, ValueError):
            return None
        if self.reader is not None:
            self.reader.stop()
        return duplicate

    def close(self) -> None:
        """Close the descriptor used for direct writes (not the stream's)."""
        if self._direct is not None:
            self._direct.close()
            self._direct = None


def socket_access(
    stream: anyio.abc.ByteStream, *, plain_socket: bool, read_ahead: int
) -> SocketAccess:
    """Decide, on the connection's loop, what a connection over ``stream`` may do with its
    socket.

    Args:
        stream: the connection's stream.
        plain_socket: whether its transport declares
            :data:`~daffi.transports.PLAIN_SOCKET`.
        read_ahead: asyncio: how far reading may run ahead of the receiver.

    Returns:
        A :class:`SocketAccess` (one that allows nothing when the stream must be used).
    """
    if not plain_socket or os.name != "posix" or not isinstance(stream, anyio.abc.SocketStream):
        return SocketAccess()
    try:
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    except anyio.TypedAttributeLookupError:
        return SocketAccess()
    library = sniffio.current_async_library()
    if library == "trio":
        direct = _duplicate_nonblocking(raw)
        return SocketAccess(raw, direct=direct)
    if library == "asyncio":
        return _asyncio_access(stream, raw, read_ahead)
    return SocketAccess()


def _duplicate_nonblocking(raw: socket.socket) -> socket.socket | None:
    try:
        duplicate = socket.socket(fileno=os.dup(raw.fileno()))
        duplicate.setblocking(False)
    except (OSError, ValueError):
        return None
    return duplicate


def _asyncio_access(
    stream: anyio.abc.SocketStream, raw: socket.socket, read_ahead: int
) -> SocketAccess:
    """asyncio: the direct writer, the end-of-turn flush and the reader, if anyio's stream
    internals are the tested ones; else nothing (anyio's public stream path)."""
    import asyncio
    from collections import deque

    if not anyio_internals_known():
        return SocketAccess()
    # anyio's asyncio SocketStream (private): the asyncio transport and anyio's protocol.
    transport = getattr(stream, "_transport", None)
    protocol = getattr(stream, "_protocol", None)
    queue = getattr(protocol, "read_queue", None)
    if (
        not isinstance(transport, asyncio.Transport)
        or transport.get_protocol() is not protocol
        or not isinstance(queue, deque)
        or transport.is_closing()
    ):
        return SocketAccess()
    from daffi._backends._asyncio_reader import AsyncioReader

    direct = _duplicate_nonblocking(raw)
    reader = AsyncioReader.install(transport, protocol, queue, read_ahead)
    return SocketAccess(
        raw,
        direct=direct,
        write_buffer_size=transport.get_write_buffer_size,
        reader=reader,
        end_of_turn=asyncio.get_running_loop().call_soon if direct is not None else None,
    )


async def unix_stream_for_loop(stream: anyio.abc.SocketStream) -> anyio.abc.SocketStream:
    """Move a Unix connection off anyio's raw-socket stream class on asyncio.

    On asyncio, anyio's ``UNIXSocketStream`` waits for readability with
    ``loop.add_reader(sock, future.set_result, None)``. If the waiting task is cancelled
    in the loop iteration in which the socket became readable (a server being stopped
    while a client hangs up, which is routine), the queued callback calls
    ``set_result`` on the cancelled future and asyncio reports an ``InvalidStateError``
    "Exception in callback" (a test failure under anyio's pytest plugin). The
    transport-based ``SocketStream`` anyio uses for TCP has no such race, so the
    connection is re-wrapped as one. Trio streams are left alone.
    """
    if sniffio.current_async_library() != "asyncio":
        return stream
    raw_socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    try:
        # The duplicate keeps the connection open when the original stream closes its fd.
        duplicate = raw_socket.dup()
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
    try:
        return await anyio.abc.SocketStream.from_socket(duplicate)
    except BaseException:
        duplicate.close()
        raise
