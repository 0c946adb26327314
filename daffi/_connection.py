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
import time

import anyio
import anyio.abc

from daffi._backends import socket_access
from daffi._cipher import Cipher, TlsAlert, TlsSocket
from daffi._frames import DEFAULT_MAX_FRAME_SIZE, FrameReader, encode_frame, first_frame, read_size
from daffi._link import DirectHandler, InlineRunner
from daffi._outbox import Outbox
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

    Sending is cheap and safe from any thread (its :class:`~daffi._outbox.Outbox`): frames
    are queued; on daffi's loop the first sender becomes the writer and flushes everything
    queued meanwhile in one write (write coalescing), other threads write straight to the
    socket when they may, or hand their frames to :meth:`run_writer`. A queue over
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
        self.last_received = time.monotonic()
        self._buffer = bytearray()
        self._partial_since = 0.0  # when the bytes now in _buffer began to arrive
        self._closed = False
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
        #: the sending side (queue, coalescing, direct writes, the writer task)
        self._out = Outbox(
            stream,
            self._direct,
            high_water=high_water,
            cipher=cipher,
            peer=lambda: self.peer,
            on_broken=self.aclose,
        )
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
        await self._out.send_frame(frame)

    def send_threadsafe(self, msg: Message) -> None:
        """Queue one message from any thread (never blocks; :meth:`run_writer` sends it).

        Raises:
            anyio.BrokenResourceError: the connection is closed.
        """
        self._out.send_threadsafe(msg)

    def send_frames_threadsafe(self, frames: list[bytes | bytearray]) -> None:
        """Send encoded frames in order from any thread, in one write when it can."""
        self._out.send_frames_threadsafe(frames)

    def send_frame_threadsafe(self, frame: bytes | bytearray) -> None:
        """Queue one encoded frame from any thread (see :meth:`send_threadsafe`)."""
        self._out.send_frame_threadsafe(frame)

    async def run_writer(self) -> None:
        """Send what other threads queued, and on trio what a turn of the loop's tasks
        queued; run it in the connection's task group."""
        await self._out.run_writer()

    @property
    def congested(self) -> bool:
        """Whether more than ``high_water`` bytes wait to be written."""
        return self._out.congested

    @property
    def high_water(self) -> int:
        """Queued bytes above which loop senders wait (and the connection is congested)."""
        return self._out.high_water

    @high_water.setter
    def high_water(self, value: int) -> None:
        self._out.high_water = value

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
        if self._closed or not self._out.idle:
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
        await self._out.close()
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
