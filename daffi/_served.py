"""Call channels served by a thread of the controller's process.

A node's sync callers use call channels (:mod:`daffi._channel`): blocking connections on
which a thread writes its ``Call`` and reads the reply. On the controller's side such a
channel is normally read by the event loop, which hands a call of a ``def`` callback of the
node in its own process to a worker thread: three wake-ups per call (the loop, the worker,
the caller). When the controller's process has such a node, the controller instead hands the
channel's socket to a thread of its own (:class:`ServedChannel`), which reads the calls and
runs those of that node's ``def`` callbacks itself, as one of the node's ``workers``: two
wake-ups, and the event loop is not involved at all.

Everything else the thread reads (calls for other nodes, of ``async`` callbacks, with all
workers busy; cancels) goes to the loop, which routes it as for any channel; replies the loop
routes back are queued for the thread, which writes them. The thread is the only one to read
and write the socket, so frames never interleave and nothing on the loop ever blocks on it.

The thread never stops reading because of its own writing: a caller may send several large
calls at once (a broadcast) before it reads any reply, so while a reply waits for room in
the socket, the thread goes on reading and hands the calls it reads to the loop. What the
loop has not taken yet is bounded (``_INBOX_LIMIT``): above it the thread reads nothing
more until the loop catches up, so a caller cannot make it buffer without end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel

from daffi._cipher import TlsSocket
from daffi._context import current_var
from daffi._crossloop import loop_call_soon
from daffi._frames import FrameReader, encode_frame
from daffi._protocol import Call, Error, Message, Result
from daffi._threads import wait_bounded
from daffi.exceptions import ProtocolError

__all__ = ["ServedChannel"]

#: bytes of frames handed to the loop and not yet taken above which the thread stops reading
_INBOX_LIMIT = 4 * 1024 * 1024

logger = logging.getLogger("daffi.controller")

#: What the thread decides for a call: the reply when it ran the call itself (None: the loop
#: routes it), and a routing choice already made for it (handed to the loop with the call).
Route = Callable[[Call], "tuple[Result | Error | None, Any]"]


class _Ended(Exception):
    """The channel's connection ended, or the channel was closed."""


class ServedChannel:
    """A call channel read and written by a thread of its own (see the module docstring).

    Args:
        sock: the channel's connected socket (with TLS, a :class:`~daffi._cipher.TlsSocket`);
            the channel owns it (and makes it non-blocking: its thread waits in ``poll``).
        leftover: bytes already received on it, not yet taken as messages.
        first: a frame to write before anything else (the channel's ``Welcome``).
        route: runs or routes each ``Call`` read, in the channel's thread.
        peer: a name for log lines.
        max_frame_size: frames announcing a larger body end the channel.

    On the loop it is a link like the others: :meth:`receive` gives what the thread did not
    handle, ``send*`` queue frames for the thread to write, :meth:`aclose` ends it.
    """

    def __init__(
        self,
        sock: socket.socket | TlsSocket,
        leftover: bytes,
        *,
        first: bytes | bytearray,
        route: Route,
        peer: str,
        max_frame_size: int,
    ) -> None:
        self.peer = peer
        self.max_frame_size = max_frame_size
        self._sock = sock
        sock.setblocking(False)  # the thread waits in poll(), for reading and writing
        self._fd = sock.fileno()
        #: the socket's TLS (None: plaintext): it may hold plaintext the socket will not poll
        #: readable for, and records not yet written
        self._tls = sock if isinstance(sock, TlsSocket) else None
        self._first = first
        self._frames = FrameReader(max_frame_size, peer, leftover)
        self._route = route
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)
        # Guarded by _lock (taken briefly by the thread and the loop):
        self._lock = threading.Lock()
        self._outbox: list[bytes | bytearray] = []  # frames for the thread to write
        self._wake_pending = False  # a byte is in the wake-up pipe
        self._closing = False  # aclose() was called
        self._closed = False  # the thread closed the socket and the pipe
        self._inbox: deque[tuple[Message, bytes | bytearray, Any]] = deque()  # for the loop
        self._inbox_bytes = 0
        self._throttled = False  # the thread stopped reading until the loop takes more
        self._end: BaseException | None = None  # set when the thread is done
        self._loop_waiting = False
        self._loop_wake_pending = False
        # Loop side:
        self._event = anyio.Event()
        self._call_soon = loop_call_soon()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the channel's thread; if none can be started, the channel just ends."""
        current = current_var.get()  # the Global whose core starts it, for get_g()

        def serve() -> None:
            current_var.set(current)
            self._serve()

        thread = threading.Thread(target=serve, name="daffi-channel", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread"
            logger.warning("call channel of %s closed: %s", self.peer, exc)
            self._finish(None)
            return
        self._thread = thread

    async def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end (after :meth:`aclose`): it
        ends once the callback it runs, if any, returns. Returns whether it ended."""
        thread = self._thread
        return await wait_bounded(lambda: thread is None or not thread.is_alive(), timeout)

    # ------------------------------------------------------------------ loop side

    async def receive(self) -> tuple[Message, bytes | bytearray, Any]:
        """The next message the thread left to the loop, with the routing choice made for
        it (None if none).

        Raises:
            anyio.EndOfStream: the channel ended.
            ProtocolError: the caller sent a malformed or unexpected frame.
        """
        while True:
            with self._lock:
                if self._inbox:
                    item = self._inbox.popleft()
                    self._inbox_bytes -= len(item[1])
                    if self._throttled and self._inbox_bytes <= _INBOX_LIMIT:
                        self._throttled = False
                        if not self._closed:
                            self._poke()  # read again
                    return item
                end = self._end
                if end is None:
                    self._loop_waiting = True
            if end is not None:
                if isinstance(end, ProtocolError):
                    raise end
                raise anyio.EndOfStream
            await self._event.wait()
            self._event = anyio.Event()
            with self._lock:
                self._loop_waiting = False
                self._loop_wake_pending = False

    async def send(self, msg: Message) -> None:
        self.send_frame_threadsafe(encode_frame(msg))
        await anyio.lowlevel.checkpoint()

    async def send_frame(self, frame: bytes | bytearray) -> None:
        self.send_frame_threadsafe(frame)
        await anyio.lowlevel.checkpoint()

    def send_threadsafe(self, msg: Message) -> None:
        self.send_frame_threadsafe(encode_frame(msg))

    def send_frame_threadsafe(self, frame: bytes | bytearray) -> None:
        """Queue one frame for the thread to write (any thread, never blocks).

        Raises:
            anyio.BrokenResourceError: the channel is closed.
        """
        with self._lock:
            if self._closing or self._closed:
                raise anyio.BrokenResourceError(f"call channel of {self.peer} is closed")
            self._outbox.append(frame)
            if self._wake_pending:
                return
            self._wake_pending = True
            self._poke()

    def offer_direct(self, msg: Message, frame: bytes | bytearray) -> bool:
        return False  # its peer is another process: frames go through the thread

    @property
    def congested(self) -> bool:
        return False  # its one caller waits for the replies of the calls it sent

    async def aclose(self) -> None:
        """End the channel (idempotent): the thread stops once its current call is done."""
        with self._lock:
            self._closing = True
            if not self._closed:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread
                self._poke()
        # Nothing to wait for (and, like Connection.aclose, safe in a cancelled scope).

    def _poke(self) -> None:
        # With the lock held and the pipe open: wake the thread from poll().
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\0")

    # ------------------------------------------------------------------ thread side

    def _serve(self) -> None:
        end: BaseException | None = None
        try:
            self._write(self._first)
            while True:
                msg, frame = self._next()
                hint: Any = None
                # More frames already read (a broadcast's calls): the loop starts them all
                # at once, rather than one after another here.
                if isinstance(msg, Call) and not self._frames.pending:
                    reply, hint = self._route(msg)
                    if reply is not None:
                        self._write(encode_frame(reply))
                        continue
                self._post((msg, frame, hint))
        except _Ended:
            pass
        except ProtocolError as exc:
            end = exc
        except Exception as exc:  # a bug: end the channel (its caller sees it close)
            logger.exception("call channel of %s failed", self.peer)
            end = exc
        finally:
            self._finish(end)

    def _next(self) -> tuple[Message, bytes | bytearray]:
        """The next frame, writing what the loop queued while waiting for it."""
        while True:
            taken = self._frames.next_frame()
            if taken is not None:
                return taken
            with self._lock:
                frames, self._outbox = self._outbox, []
            if frames:
                self._write(frames[0] if len(frames) == 1 else b"".join(frames))
            elif self._wait(writing=False)[0]:
                self._read()

    def _wait(self, *, writing: bool) -> tuple[bool, bool]:
        """Wait until the socket can be read (unless the loop is behind) or, ``writing``,
        written, or the loop pokes the thread. Returns (readable, writable)."""
        with self._lock:
            if self._closing:
                raise _Ended
            self._throttled = self._inbox_bytes > _INBOX_LIMIT
            events = 0 if self._throttled else select.POLLIN
        if writing:
            events |= select.POLLOUT
        if events & select.POLLIN and self._tls is not None and self._tls.buffered:
            return True, False  # opened already: the socket will not poll readable for it
        self._poller.modify(self._fd, events)
        readable = writable = False
        for fd, got in self._poller.poll():
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
                with self._lock:
                    self._wake_pending = False
                continue
            if got & (select.POLLIN | select.POLLHUP | select.POLLERR):
                readable = True  # (the end of the connection is read as such)
            if got & (select.POLLOUT | select.POLLHUP | select.POLLERR):
                writable = True
        return readable, writable

    def _read(self) -> None:
        try:
            received = self._frames.read_from(self._sock)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            raise _Ended from None
        if not received:
            raise _Ended

    def _write(self, data: bytes | bytearray) -> None:
        """Write all of ``data``; while the socket has no room, go on reading, and hand
        the frames read meanwhile to the loop (the caller may be sending more calls before
        it reads any reply)."""
        view = memoryview(data)
        tls = self._tls
        while True:
            try:
                if view:
                    view = view[self._sock.send(view) :]
                elif tls is not None:
                    tls.flush()  # records sealed, not yet written
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                raise _Ended from None
            if not view and (tls is None or not tls.unsent):
                return
            readable, _ = self._wait(writing=True)
            if readable:
                self._read()
                while (taken := self._frames.next_frame()) is not None:
                    self._post((taken[0], taken[1], None))

    def _post(self, item: tuple[Message, bytes | bytearray, Any]) -> None:
        with self._lock:
            self._inbox.append(item)
            self._inbox_bytes += len(item[1])
            wake = self._wake_loop_needed()
        if wake:
            self._wake_loop()

    def _finish(self, end: BaseException | None) -> None:
        with self._lock:
            self._closed = True
            self._outbox.clear()
            self._sock.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._end = end if end is not None else anyio.EndOfStream()
            wake = self._wake_loop_needed()
        if wake:
            self._wake_loop()

    def _wake_loop_needed(self) -> bool:
        # With the lock held: whether the loop's receive() waits and must be woken.
        wake = self._loop_waiting and not self._loop_wake_pending
        if wake:
            self._loop_wake_pending = True
        return wake

    def _wake_loop(self) -> None:
        try:
            self._call_soon(self._event.set)
        except Exception:  # the loop is gone (the controller stopped): nobody waits
            logger.debug("call channel of %s: no loop to wake", self.peer)
