"""Reading an anyio socket stream on asyncio without pausing the transport per receive.

anyio's asyncio ``SocketStream.receive`` resumes the transport's reading before it waits and
pauses it again after: two ``epoll_ctl`` system calls and the selector's bookkeeping for every
chunk read, a large share of a busy connection's CPU time. :class:`AsyncioReader` takes the
read side of such a stream over: it becomes the transport's (buffered) protocol, reads into
one reused buffer, and pauses the transport only when a reader falls behind by more than
``limit`` bytes.
Everything about writing (flow control) and the end of the connection is still passed to
anyio's own protocol, so the stream's ``send`` and ``aclose`` keep working unchanged.

Only imported on asyncio, and only used (by :func:`daffi._backends.socket_access`) for a
transport that declares plain sockets, with an anyio version in the tested range whose stream
internals look as expected; any other stream is read through its ``receive`` as usual.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio

__all__ = ["AsyncioReader"]


#: bytes read per system call. asyncio's own default (256 KiB) makes every ``recv`` allocate
#: and free a buffer that large, which costs more than the read itself for small frames.
_CHUNK = 64 * 1024


class AsyncioReader(asyncio.BufferedProtocol):
    """The read side of an anyio asyncio socket stream (see the module docstring)."""

    def __init__(self, transport: asyncio.Transport, inner: Any, limit: int) -> None:
        self._buffer = bytearray(_CHUNK)
        self._view = memoryview(self._buffer)
        self._transport = transport
        self._inner = inner
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._stopped = False
        #: Called (on the loop) when data arrives while the reading task waits for it; it
        #: may consume what was received (see :meth:`take`). Returns whether the task must
        #: be woken: False spares a task switch when everything was handled.
        self.on_data: Callable[[], bool] | None = None

    @classmethod
    def install(
        cls, transport: asyncio.Transport, inner: Any, queue: deque[bytes], limit: int
    ) -> AsyncioReader:
        """Take over the reading of an anyio asyncio socket stream: ``transport`` is its
        asyncio transport, ``inner`` anyio's protocol on it and ``queue`` that protocol's
        queue of received data (checked by :func:`daffi._backends.socket_access`)."""
        reader = cls(transport, inner, limit)
        # What anyio's protocol received before the switch comes first.
        while queue:
            reader._append(queue.popleft())
        reader._eof = bool(getattr(inner, "is_at_eof", False) or getattr(inner, "exception", None))
        transport.set_protocol(reader)
        if not transport.is_reading() and not reader._paused:
            transport.resume_reading()
        return reader

    # ------------------------------------------------------------------ protocol callbacks

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self._append(bytes(self._view[:nbytes]))
        on_data = self.on_data
        waiter = self._waiter
        # Only while the task waits with nothing pending: then nothing received before can
        # still be waiting for it, and handling frames here keeps their order.
        if on_data is not None and waiter is not None and not waiter.done() and not on_data():
            return
        self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return bool(self._inner.eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # ------------------------------------------------------------------ reading

    async def read(self) -> bytes:
        """Everything received so far, waiting for something if nothing is.

        May return ``b""`` when :attr:`on_data` took the data and still asked for the task.

        Raises:
            anyio.EndOfStream: the peer closed the connection (or it failed) and everything
                received before was read.
        """
        if not self._chunks:
            if self._eof:
                raise anyio.EndOfStream
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self.take()

    def stop(self) -> None:
        """Read nothing more (the socket is handed over to a thread)."""
        self._stopped = True
        self._paused = True
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def take(self) -> bytes:
        """Everything received so far, without waiting (``b""`` if nothing)."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused and not self._stopped:
            self._paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()
        return data

    def _append(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self._limit and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
