"""One framed connection: length-prefixed msgpack envelopes over an anyio byte stream.

Frames (see :mod:`daffi._frames`) are parsed from a single growing buffer, so a burst of
small frames arriving in one read costs one read. Each received message comes with the exact
bytes of its frame, which lets the controller forward a message without encoding it again.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time

import anyio
import anyio.abc

from daffi._backends import socket_access
from daffi._cipher import Cipher, TlsAlert, TlsSocket
from daffi._crossloop import loop_call_soon
from daffi._frames import DEFAULT_MAX_FRAME_SIZE, FrameReader, encode_frame, first_frame, read_size
from daffi._link import DirectHandler, InlineRunner
from daffi._protocol import Call, Error, Message, Result
from daffi.exceptions import ProtocolError

# DEFAULT_MAX_FRAME_SIZE, FrameReader and encode_frame live in daffi._frames; the node and
# call channels import them from here too.
__all__ = ["DEFAULT_MAX_FRAME_SIZE", "Connection", "FrameReader", "encode_frame"]

logger = logging.getLogger("daffi.protocol")

#: on asyncio, how far reading may run ahead of the receiver before the socket is paused
_READ_AHEAD = 1024 * 1024


class Connection:
    """A framed message connection over ``stream``.

    Sending is cheap and safe from any thread. Frames are queued; on daffi's loop the first
    sender becomes the writer and flushes everything queued meanwhile in one write (write
    coalescing), other threads hand their frames to :meth:`run_writer`. A queue over
    ``high_water`` bytes makes loop senders wait (backpressure).

    Args:
        stream: the transport's byte stream; the connection owns it and closes it.
        max_frame_size: frames announcing a larger body close the connection with a
            :class:`~daffi.exceptions.ProtocolError`; nothing more is read.
        peer: a name for log lines until the handshake tells the real one.
        plain_socket: the stream's transport declares
            :data:`~daffi.transports.PLAIN_SOCKET`. Only then may the connection bypass
            the stream (write to its socket directly, read it through the asyncio reader,
            hand it to a thread); otherwise every frame goes through ``send``/``receive``.
        cipher: the connection's TLS (None: plaintext). Every frame is sealed when it is
            queued, in queue order, whichever path writes it, and every byte read is opened
            before it is parsed (see :mod:`daffi._cipher`); a thread it is handed to gets
            the cipher with the socket.

    Attributes:
        plain_socket: that decision, fixed for the connection's life.
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        peer: str = "?",
        high_water: int = 4 * 1024 * 1024,
        plain_socket: bool = False,
        cipher: Cipher | None = None,
    ) -> None:
        self.stream = stream
        self._cipher = cipher
        self.plain_socket = plain_socket
        self.max_frame_size = max_frame_size
        self.peer = peer
        self.high_water = high_water
        self.last_received = time.monotonic()
        self._buffer = bytearray()
        self._partial_since = 0.0  # when the bytes now in _buffer began to arrive
        self._closed = False
        self._loop_thread = threading.get_ident()
        self._call_soon = loop_call_soon()
        # Guarded by _lock (taken briefly, from any thread):
        self._lock = threading.Lock()
        self._frames: list[bytes | bytearray] = []
        self._queued = 0
        self._writing = False  # someone on the loop is flushing _frames
        self._kick_pending = False  # a wake-up of run_writer is on its way
        # Some thread (the loop's or another) writes _frames through the direct socket,
        # outside the lock; it keeps writing until nothing is queued.
        self._direct_busy = False
        self._close_direct = False  # close the direct socket once its writer is done
        self._error: BaseException | None = None
        # Loop-side events:
        self._kick = anyio.Event()
        self._drained = anyio.Event()
        self._flush_scheduled = False
        self._drain_wanted = False
        #: run_writer waits for a kick (trio: send_frame leaves the turn's writes to it)
        self._writer_waits = False
        #: Set by the connection's owner: takes a message right where it was read, without
        #: waking the task that receives (asyncio only; see :meth:`_take_directly`). Returns
        #: False for a message it leaves to :meth:`receive`.
        self.direct: DirectHandler | None = None
        #: a stream's peer is another process: nothing runs its calls inline (see Link)
        self.inline: InlineRunner | None = None
        self.inline_slots = 0
        self._direct_error: Exception | None = None
        # What this connection may do with the socket beside the stream (daffi._backends):
        # write to it from any thread, flush at the end of each asyncio loop turn, read it
        # through the asyncio reader. Other cases: the first sender writes, through the
        # stream, for everyone (see _flush).
        self._direct = socket_access(stream, plain_socket=plain_socket, read_ahead=_READ_AHEAD)
        self._call_soon_local = self._direct.end_of_turn
        self._reader = self._direct.reader
        if self._reader is not None:
            self._reader.on_data = self._take_directly
        if cipher is not None:
            # Records that came with the end of the handshake.
            self._buffer += self._open(b"")

    # ------------------------------------------------------------------ sending

    async def send(self, msg: Message) -> None:
        """Encode and send one message (on daffi's loop).

        Raises:
            anyio.BrokenResourceError: the peer is gone (also for a closed connection).
        """
        await self.send_frame(encode_frame(msg))

    async def send_frame(self, frame: bytes | bytearray) -> None:
        """Send one already encoded frame (length prefix included), on daffi's loop."""
        with self._lock:
            if self._error is not None:
                raise self._broken()
            if self._cipher is not None:
                frame = self._cipher.seal(frame)
            self._frames.append(frame)
            self._queued += len(frame)
            lead = schedule = now = wake = False
            if self._writing or self._kick_pending or self._direct_busy:
                pass  # the writer in charge sends it
            elif self._call_soon_local is not None:
                # Written once the tasks ready in this loop turn have run: every frame they
                # queue goes out in the same system call, with no task switch.
                schedule = not self._flush_scheduled
                self._flush_scheduled = True
            elif self._direct.can_write:
                if self._writer_waits:
                    # No end-of-turn hook (trio): the writer task, woken now, runs after the
                    # tasks ready in this turn and writes what they queued in one call.
                    wake = not self._flush_scheduled
                    self._flush_scheduled = True
                else:
                    # No writer task yet (a handshake): write now.
                    now = self._direct_busy = True
            else:
                lead = self._writing = True
            # Decided under the lock: another thread may be draining the queue right now.
            drained = None
            if not lead and self._queued > self.high_water:
                self._drain_wanted = True
                drained = self._drained
        if schedule:
            assert self._call_soon_local is not None
            self._call_soon_local(self._flush_soon)
        elif wake:
            self._kick.set()
        elif now:
            self._write_direct()
        if lead:
            await self._flush()
        elif drained is not None:
            await drained.wait()
            if self._error is not None:
                raise self._broken()

    def _flush_soon(self) -> None:
        # A plain callback on the loop, between tasks: write what this turn queued.
        with self._lock:
            self._flush_scheduled = False
            if (
                self._writing
                or self._kick_pending
                or self._direct_busy
                or not self._frames
                or self._error
            ):
                return
            self._direct_busy = True
        self._write_direct()

    def _write_direct(self) -> None:
        """Write queued frames through the direct socket until none is left (any thread).

        The caller took the ``_direct_busy`` role. The system calls happen outside the lock,
        so other senders only queue their frames meanwhile, and they go out in the next
        write: under load, many replies share one system call. What the socket does not
        take is left to the loop's writer task.
        """
        while True:
            with self._lock:
                frames = self._frames
                if not frames or self._error is not None:
                    self._release_direct()
                    signal = self._drain_wanted and self._error is None
                    break
                self._frames = []
                self._queued = 0
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            sent = self._direct.send(data)
            if sent < len(data):
                # The socket is full: the writer task waits until it can take the rest.
                with self._lock:
                    rest = data[sent:]
                    self._frames.insert(0, rest)
                    self._queued += len(rest)
                    self._release_direct()
                    kick = not (self._writing or self._kick_pending)
                    if kick:
                        self._kick_pending = True
                if kick:
                    self._wake_from_any_thread()
                return
        if signal:
            if threading.get_ident() == self._loop_thread:
                self._signal_drained()
            else:
                self._call_soon(self._signal_drained)

    def _release_direct(self) -> None:
        # With the lock held: give up the direct-writer role (closing the socket if the
        # connection was closed meanwhile).
        self._direct_busy = False
        if self._close_direct:
            self._direct.close()

    def _signal_drained(self) -> None:
        if self._drain_wanted:
            self._drain_wanted = False
            drained, self._drained = self._drained, anyio.Event()
            drained.set()

    def _wake_from_any_thread(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._kick.set()
        else:
            self._call_soon(self._wake)

    def send_threadsafe(self, msg: Message) -> None:
        """Queue one message from any thread (never blocks; :meth:`run_writer` sends it).

        Raises:
            anyio.BrokenResourceError: the connection is closed.
        """
        self.send_frame_threadsafe(encode_frame(msg))

    def send_frames_threadsafe(self, frames: list[bytes | bytearray]) -> None:
        """Send encoded frames in order from any thread, in one write when it can."""
        self.send_frame_threadsafe(frames[0] if len(frames) == 1 else b"".join(frames))

    def send_frame_threadsafe(self, frame: bytes | bytearray) -> None:
        """Queue one encoded frame from any thread (see :meth:`send_threadsafe`)."""
        with self._lock:
            if self._error is not None:
                raise self._broken()
            if self._cipher is not None:
                frame = self._cipher.seal(frame)
                if not frame:
                    return  # (no protocol output was waiting after all)
            self._frames.append(frame)
            self._queued += len(frame)
            if self._writing or self._kick_pending or self._direct_busy:
                return  # the writer in charge picks it up
            if self._call_soon_local is not None and threading.get_ident() == self._loop_thread:
                # On the loop: written at the end of this turn, with whatever else it queues.
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    self._call_soon_local(self._flush_soon)
                return
            # Write from this thread if possible, sparing a wake-up of the loop.
            mine = self._direct_busy = self._direct.can_write
            if not mine:
                self._kick_pending = True
        if mine:
            self._write_direct()
        else:
            self._wake_from_any_thread()

    def _wake(self) -> None:
        self._kick.set()

    async def run_writer(self) -> None:
        """Send what other threads queued, and on trio what a turn of the loop's tasks
        queued; run it in the connection's task group."""
        while True:
            self._writer_waits = True
            try:
                await self._kick.wait()
            finally:
                self._writer_waits = False
            self._kick = anyio.Event()
            if self._flush_scheduled and self._call_soon_local is None:
                # Woken by send_frame (trio), after every task ready in that turn has run.
                # Plain code, no checkpoint: the write happens even if this task was
                # cancelled meanwhile (a stop right after sending Bye).
                self._flush_soon()
            with self._lock:
                self._kick_pending = False
                if self._writing or self._direct_busy or not self._frames:
                    continue
                self._writing = True
            try:
                await self._flush()
            except anyio.BrokenResourceError:
                # The peer is gone: only this connection ends (its receiver sees the end of
                # the stream once it is closed); the task group around it goes on.
                await self.aclose()
                return

    async def _flush(self) -> None:
        # The caller holds the writer role. A write is never interrupted half way: on trio a
        # cancelled send_all would leave a partial frame on the wire.
        try:
            with anyio.CancelScope(shield=True):
                while True:
                    with self._lock:
                        if not self._frames:
                            self._writing = False
                            break
                        frames, self._frames = self._frames, []
                        self._queued = 0
                    data = frames[0] if len(frames) == 1 else b"".join(frames)
                    await self.stream.send(data)  # type: ignore[arg-type]  # any buffer works
        except (
            anyio.ClosedResourceError,
            anyio.BrokenResourceError,
            anyio.EndOfStream,
            OSError,
        ) as exc:
            self._fail(exc)
            raise self._broken() from exc
        finally:
            drained, self._drained = self._drained, anyio.Event()
            drained.set()

    @property
    def congested(self) -> bool:
        """Whether more than ``high_water`` bytes wait to be written."""
        return self._queued > self.high_water

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
            self._frames.clear()
            self._queued = 0
            self._writing = False

    def _broken(self) -> anyio.BrokenResourceError:
        return anyio.BrokenResourceError(f"connection to {self.peer} is closed")

    async def receive(self) -> tuple[Message, bytes]:
        """Receive the next message and the bytes of its whole frame.

        Raises:
            anyio.EndOfStream: the peer closed the connection cleanly between frames.
            ProtocolError: a malformed or oversized frame, or an unknown message.
        """
        buf = self._buffer
        while True:
            if self._direct_error is not None:
                error, self._direct_error = self._direct_error, None
                raise error
            taken = first_frame(buf, self.max_frame_size, self.peer)
            if taken is not None:
                del buf[: len(taken[1])]
                self._partial_since = self.last_received  # what is left began then
                return taken
            reader = self._reader
            if self._cipher is not None and self._cipher.ended:
                raise anyio.EndOfStream  # the peer closed the TLS session
            try:
                if reader is not None:
                    chunk = await reader.read()
                else:
                    chunk = await self.stream.receive(read_size(buf))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
                raise anyio.EndOfStream from exc
            self.last_received = time.monotonic()
            if self._cipher is not None:
                chunk = self._open(chunk)
                if not chunk:
                    continue  # (part of a record)
            if buf:
                buf += chunk
            else:
                buf[:] = chunk
                self._partial_since = self.last_received

    def _take_directly(self) -> bool:
        """Hand complete frames to :attr:`direct` as they arrive (asyncio, on the loop).

        Called by the reader while :meth:`receive` waits for data, so everything before
        was handled. Returns whether the receiving task must run: a frame ``direct`` does
        not take, a bad frame (the task raises the error), or the end of the stream.
        """
        handler = self.direct
        reader = self._reader
        assert reader is not None
        if handler is None:
            return True
        buf = self._buffer
        chunk = reader.take()
        self.last_received = time.monotonic()
        if self._cipher is not None:
            try:
                chunk = self._open(chunk)
            except ProtocolError as exc:
                self._direct_error = exc  # raised by the task in receive()
                return True
        if buf:
            buf += chunk
        else:
            buf[:] = chunk
            self._partial_since = self.last_received
        while True:
            try:
                taken = first_frame(buf, self.max_frame_size, self.peer)
            except ProtocolError:
                return True  # the task meets the same error in receive() and raises it
            if taken is None:
                return False  # the rest of this frame is still on its way
            msg, frame = taken
            try:
                handled = handler(msg, frame)
            except Exception as exc:
                # Raised by the task in receive(), as if the task had handled the frame.
                del buf[: len(frame)]
                self._direct_error = exc
                return True
            if not handled:
                return True  # the task takes this one (and what follows) in receive()
            del buf[: len(frame)]
            self._partial_since = self.last_received

    def _open(self, records: bytes) -> bytes:
        """The plaintext of ``records`` (TLS); protocol output the cipher made meanwhile is
        queued to be sent.

        Raises:
            ProtocolError: the records are not valid TLS for this connection.
        """
        assert self._cipher is not None
        try:
            plain = self._cipher.open(records)
        except ssl.SSLError as exc:
            reason = str(exc.reason or "")
            if "ALERT" in reason:
                raise TlsAlert(f"{self.peer} ended the TLS session: {reason.lower()}") from None
            raise ProtocolError(f"{self.peer} sent an invalid TLS record: {exc}") from None
        if self._cipher.output_pending:
            with contextlib.suppress(anyio.BrokenResourceError):
                self.send_frame_threadsafe(b"")
        return plain

    @property
    def partial_since(self) -> float | None:
        """``time.monotonic()`` when the first byte of a frame not yet complete arrived;
        None when no such frame is pending."""
        return self._partial_since if self._buffer else None

    @property
    def in_process(self) -> bool:
        return False

    def offer_direct(self, msg: Message, frame: bytes | bytearray) -> bool:
        """A stream has no other end in this process to hand messages to."""
        return False

    def run_inline(self, msg: Call) -> Result | Error | None:
        return None

    @property
    def inline_slots_of_other(self) -> int:
        return 0

    def detach_socket(self) -> tuple[socket.socket | TlsSocket, bytes] | None:
        """Hand the connection's socket over to a thread: a duplicate of it (non-blocking,
        as the original: they share that flag; with TLS, a :class:`TlsSocket` holding it
        and the cipher), and what was received but not yet taken as messages (on the loop).

        The loop reads nothing more from it; closing this connection afterwards closes
        only its own descriptor (no shutdown), so the peer sees nothing of the hand-over.
        Returns None when that cannot be done: frames waiting to be sent, a transport
        that does not declare plain sockets, no socket access on this backend (see
        :mod:`daffi._backends`).
        """
        if self._closed or self._frames or self._direct_busy:
            return None
        duplicate = self._direct.duplicate()
        if duplicate is None:
            return None
        leftover = bytes(self._buffer)
        self._buffer.clear()
        raw = self._reader.take() if self._reader is not None else b""  # (stopped by duplicate())
        if self._cipher is None:
            return duplicate, leftover + raw
        try:
            leftover += self._open(raw)
        except ProtocolError:
            duplicate.close()
            return None  # the loop meets the same error (the records stay in the cipher)
        return TlsSocket(duplicate, self._cipher), leftover

    async def aclose(self) -> None:
        """Close the stream (idempotent, never raises); queued frames are dropped."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            # What was sent last (a Reject, a Bye) may still wait for the end of the loop
            # turn: write it first, for a second at most.
            flush = (
                self._error is None
                and bool(self._frames)
                and not self._writing
                and not self._direct_busy
            )
            if flush:
                self._writing = True
        if flush:
            with anyio.move_on_after(1, shield=True):
                with contextlib.suppress(anyio.BrokenResourceError):
                    await self._flush()
        self._fail(anyio.ClosedResourceError())
        with self._lock:
            # A thread writing through the duplicate descriptor must not see it closed (and
            # its number reused) half way: then that thread closes it when done.
            if self._direct_busy:
                self._close_direct = True
            else:
                self._direct.close()
        drained, self._drained = self._drained, anyio.Event()
        drained.set()
        with anyio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except Exception:  # closing a broken stream may fail; it is closed either way
                logger.debug("error closing connection to %s", self.peer, exc_info=True)
        # The bytes of a frame still incomplete go back now, not when the garbage collector
        # gets to this connection (its reader and handlers refer to it: a cycle).
        self._buffer.clear()
        if self._reader is not None:
            self._reader.take()
