"""One framed connection: length-prefixed msgpack envelopes over an anyio byte stream.

A :class:`Connection` owns one reused encoder and decoder. Received frames are parsed from a
single growing buffer, so a burst of small frames arriving in one read costs one read. Each
received message comes with the exact bytes of its frame, which lets the controller forward a
message without encoding it again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import msgspec

from daffi._protocol import Message
from daffi.exceptions import ProtocolError

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "Connection"]

logger = logging.getLogger("daffi.protocol")

DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024
_HEADER = 4
_READ_SIZE = 256 * 1024

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode_frame(msg: Message) -> bytearray:
    """Encode ``msg`` as one frame (length prefix included)."""
    buf = bytearray(_HEADER)
    _encoder.encode_into(msg, buf, _HEADER)
    buf[:_HEADER] = (len(buf) - _HEADER).to_bytes(_HEADER, "big")
    return buf


class Connection:
    """A framed message connection over ``stream``.

    Args:
        stream: the transport's byte stream; the connection owns it and closes it.
        max_frame_size: frames announcing a larger body close the connection with a
            :class:`~daffi.exceptions.ProtocolError`; nothing more is read.
        peer: a name for log lines until the handshake tells the real one.
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        peer: str = "?",
    ) -> None:
        self.stream = stream
        self.max_frame_size = max_frame_size
        self.peer = peer
        self.last_received = anyio.current_time()
        self._send_lock = anyio.Lock()
        self._buffer = bytearray()
        self._closed = False

    async def send(self, msg: Message) -> None:
        """Encode and send one message.

        Raises:
            anyio.BrokenResourceError: the peer is gone (also for a closed connection).
        """
        await self.send_frame(encode_frame(msg))

    async def send_frame(self, frame: bytes | bytearray) -> None:
        """Send one already encoded frame (length prefix included)."""
        try:
            async with self._send_lock:
                await self.stream.send(frame)  # type: ignore[arg-type]  # any buffer works
        except (anyio.ClosedResourceError, anyio.EndOfStream, OSError) as exc:
            raise anyio.BrokenResourceError(f"connection to {self.peer} is closed") from exc

    async def receive(self) -> tuple[Message, bytes]:
        """Receive the next message and the bytes of its whole frame.

        Raises:
            anyio.EndOfStream: the peer closed the connection cleanly between frames.
            ProtocolError: a malformed or oversized frame, or an unknown message.
        """
        buf = self._buffer
        while True:
            if len(buf) >= _HEADER:
                size = int.from_bytes(buf[:_HEADER], "big")
                if size > self.max_frame_size:
                    raise ProtocolError(
                        f"{self.peer} sent a frame of {size} bytes, over the limit of "
                        f"{self.max_frame_size} bytes (max_frame_size); closing the connection"
                    )
                end = _HEADER + size
                if len(buf) >= end:
                    frame = bytes(buf[:end])
                    del buf[:end]
                    try:
                        msg = _decoder.decode(memoryview(frame)[_HEADER:])
                    except msgspec.DecodeError as exc:
                        raise ProtocolError(
                            f"{self.peer} sent an undecodable frame: {exc}"
                        ) from exc
                    return msg, frame
            try:
                chunk = await self.stream.receive(_READ_SIZE)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
                raise anyio.EndOfStream from exc
            self.last_received = anyio.current_time()
            if buf:
                buf += chunk
            else:
                buf[:] = chunk

    async def __aiter__(self) -> AsyncIterator[tuple[Message, bytes]]:
        while True:
            try:
                yield await self.receive()
            except anyio.EndOfStream:
                return

    async def aclose(self) -> None:
        """Close the stream (idempotent, never raises)."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except Exception:  # closing a broken stream may fail; it is closed either way
                logger.debug("error closing connection to %s", self.peer, exc_info=True)
