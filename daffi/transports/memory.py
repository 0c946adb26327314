"""In-process transport: byte streams over anyio memory object streams.

Multi-node tests use it to run a controller and its nodes in one process, fast and
without touching the network. Names (``memory://<name>``) live in a per-process
registry; all ends of a connection must be used from the same event loop.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, ClassVar

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._address import Address
from ._base import Listening, Transport

__all__ = ["MemoryByteStream", "MemoryListener", "MemoryTransport", "memory_stream_pair"]

_listeners: dict[str, MemoryListener] = {}
# Listening and closing may happen from event loops in different threads (e.g. a sync
# facade), so check-then-set on the registry must be atomic.
_listeners_lock = threading.Lock()


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of a :func:`memory_stream_pair`.

    Sent ``bytes`` objects are handed to the peer as they are (no copy); a ``receive``
    smaller than a chunk returns a slice and keeps the rest for the next call.
    """

    def __init__(
        self,
        send_stream: MemoryObjectSendStream[bytes],
        receive_stream: MemoryObjectReceiveStream[bytes],
    ) -> None:
        self._send_stream = send_stream
        self._receive_stream = receive_stream
        self._leftover: memoryview | None = None
        self._closed = False
        # Scopes of a send/receive blocked in another task, cancelled by aclose() so that
        # closing a stream wakes its users the way closing a socket does.
        self._send_scope: anyio.CancelScope | None = None
        self._receive_scope: anyio.CancelScope | None = None

    async def send(self, item: bytes) -> None:
        """Send bytes, waiting while the peer's buffer is full.

        Raises:
            anyio.ClosedResourceError: If this stream was closed or sent EOF.
            anyio.BrokenResourceError: If the peer closed its end.
            anyio.BusyResourceError: If another task is already sending.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        if self._send_scope is not None:
            raise anyio.BusyResourceError("sending to")
        if not item:
            # An empty chunk would make the peer's receive() return b"", which the
            # ByteStream contract reserves for nothing; sockets send nothing either.
            await anyio.lowlevel.checkpoint()
            return
        # bytes are immutable so they can be shared; anything else might be mutated by
        # the caller after send() returns, so it is copied once.
        data = item if type(item) is bytes else bytes(item)
        with anyio.CancelScope() as scope:
            self._send_scope = scope
            try:
                await self._send_stream.send(data)
            finally:
                self._send_scope = None
        if scope.cancelled_caught:
            raise anyio.ClosedResourceError

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Receive at most ``max_bytes`` bytes, waiting until some are available.

        Raises:
            anyio.EndOfStream: If the peer sent EOF or closed and everything it sent
                has been received.
            anyio.ClosedResourceError: If this stream was closed.
            anyio.BusyResourceError: If another task is already receiving.
        """
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        if self._closed:
            raise anyio.ClosedResourceError
        if self._receive_scope is not None:
            raise anyio.BusyResourceError("receiving from")
        if self._leftover is None:
            with anyio.CancelScope() as scope:
                self._receive_scope = scope
                try:
                    chunk = await self._receive_stream.receive()
                finally:
                    self._receive_scope = None
            if scope.cancelled_caught:
                raise anyio.ClosedResourceError
            if len(chunk) <= max_bytes:
                return chunk
            view = memoryview(chunk)
        else:
            # Checkpoint before touching the leftover so a cancelled receive loses nothing.
            await anyio.lowlevel.checkpoint()
            view = self._leftover
        if len(view) <= max_bytes:
            self._leftover = None
            return bytes(view)
        self._leftover = view[max_bytes:]
        return bytes(view[:max_bytes])

    async def send_eof(self) -> None:
        """Tell the peer nothing more will be sent; receiving still works."""
        if self._closed:
            raise anyio.ClosedResourceError
        self._send_stream.close()
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close both directions; the peer gets EOF after what was already sent."""
        self._close()
        await anyio.lowlevel.checkpoint()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._leftover = None
        for scope in (self._send_scope, self._receive_scope):
            if scope is not None:
                scope.cancel()
        self._send_stream.close()
        self._receive_stream.close()


def memory_stream_pair(max_buffer: int = 64) -> tuple[MemoryByteStream, MemoryByteStream]:
    """Create two connected in-memory byte streams.

    Args:
        max_buffer: How many sent chunks (``send`` calls) each direction holds before
            a sender waits for the peer to receive; 0 makes every send wait for a receive.

    Returns:
        ``(a, b)``: what ``a`` sends, ``b`` receives and vice versa.
    """
    if max_buffer < 0:
        raise ValueError(f"max_buffer must be 0 or more, got {max_buffer}")
    a_to_b_send, a_to_b_receive = anyio.create_memory_object_stream[bytes](max_buffer)
    b_to_a_send, b_to_a_receive = anyio.create_memory_object_stream[bytes](max_buffer)
    return (
        MemoryByteStream(a_to_b_send, b_to_a_receive),
        MemoryByteStream(b_to_a_send, a_to_b_receive),
    )


class MemoryListener(anyio.abc.Listener[MemoryByteStream]):
    """Accepts connections made with :meth:`MemoryTransport.connect` to its name."""

    def __init__(self, name: str, *, backlog: int, max_buffer: int) -> None:
        self._name = name
        self._max_buffer = max_buffer
        # The backlog plays the part of a socket's listen queue: connect() completes as
        # soon as the server end is queued, and waits when the queue is full.
        self._pending_send, self._pending_receive = anyio.create_memory_object_stream[
            MemoryByteStream
        ](backlog)
        self._closed = False

    @property
    def name(self) -> str:
        """The name this listener is registered under."""
        return self._name

    async def accept(self) -> MemoryByteStream:
        """Wait for the next connection and return the server end.

        Raises:
            anyio.ClosedResourceError: If the listener is (or gets) closed.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            return await self._pending_receive.receive()
        except anyio.EndOfStream:
            # aclose() closes the sending side to wake a blocked accept().
            raise anyio.ClosedResourceError from None

    async def serve(
        self,
        handler: Callable[[MemoryByteStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        """Run ``handler(stream)`` in a new task for each connection, until closed.

        Raises:
            anyio.ClosedResourceError: When the listener is closed, like socket listeners.
        """
        async with AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            while True:
                stream = await self.accept()
                task_group.start_soon(handler, stream)

    async def aclose(self) -> None:
        """Stop accepting and free the name; queued, unaccepted connections get EOF."""
        if self._closed:
            return
        self._closed = True
        with _listeners_lock:
            if _listeners.get(self._name) is self:
                del _listeners[self._name]
        self._pending_send.close()
        while True:
            try:
                stream = self._pending_receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            stream._close()
        self._pending_receive.close()
        await anyio.lowlevel.checkpoint()

    async def _connect(self, address: Address) -> MemoryByteStream:
        client, server = memory_stream_pair(self._max_buffer)
        try:
            await self._pending_send.send(server)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            client._close()
            server._close()
            raise _refused(address, "the listener was closed") from None
        except BaseException:
            client._close()
            server._close()
            raise
        return client


def _refused(address: Address, why: str) -> ConnectionRefusedError:
    return ConnectionRefusedError(
        errno.ECONNREFUSED,
        f"cannot connect to {address}: {why}; is the listener running in this process?",
    )


def _name_of(address: Address) -> str:
    if not address.path:
        raise ValueError(
            f"memory address {address!r} has no name: use Address(scheme='memory', "
            f"path='name') or 'memory://name'"
        )
    return address.path


class MemoryTransport(Transport):
    """The ``memory://`` transport: connections within one process, for tests.

    Attributes:
        max_buffer: Chunks each connection direction buffers before senders wait.
        backlog: Connections queued for ``accept`` before ``connect`` waits.
    """

    scheme: ClassVar[str] = "memory"
    max_buffer: ClassVar[int] = 64
    backlog: ClassVar[int] = 128

    async def connect(self, address: Address) -> anyio.abc.ByteStream:
        """Connect to the listener registered under ``address.path``.

        Raises:
            ConnectionRefusedError: If no listener has that name.
        """
        self._check_scheme(address)
        listener = _listeners.get(_name_of(address))
        if listener is None:
            raise _refused(address, "nothing is listening under that name")
        return await listener._connect(address)

    async def listen(self, address: Address) -> Listening:
        """Register a listener under ``address.path``.

        Raises:
            OSError: ``EADDRINUSE`` if a listener with that name is open.
        """
        self._check_scheme(address)
        name = _name_of(address)
        # Checkpoint before registering, so a cancellation cannot leave the name taken.
        await anyio.lowlevel.checkpoint()
        with _listeners_lock:
            if name in _listeners:
                raise OSError(
                    errno.EADDRINUSE,
                    f"cannot listen on {address}: the name is already in use by another "
                    f"listener in this process; close that one or pick another name",
                )
            listener = MemoryListener(name, backlog=self.backlog, max_buffer=self.max_buffer)
            _listeners[name] = listener
        return Listening(listener=listener, address=Address(scheme="memory", path=name))
