"""Frames: a 4-byte big-endian length, then one msgpack envelope.

Frames are encoded and decoded with one module-level msgspec encoder and decoder (both are
safe to share between threads). Each message taken from received bytes comes with the exact
bytes of its frame, which lets the controller forward a message without encoding it again.
:class:`FrameReader` reads frames off a socket in one thread (call, work and served
channels); :class:`daffi._connection.Connection` parses them from its stream's bytes with
:func:`first_frame`.
"""

from __future__ import annotations

import socket

import msgspec

from daffi._cipher import TlsSocket
from daffi._protocol import Message
from daffi.exceptions import ProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FrameReader",
    "FrameTooLarge",
    "MalformedFrame",
    "decode_frame",
    "encode_frame",
    "first_frame",
    "read_size",
]

DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024
_HEADER = 4
#: bytes asked for per read while no large frame is pending: a bigger request makes every
#: ``recv`` allocate (and free) a buffer that large, which costs more than a small read itself
_READ_SIZE = 64 * 1024
#: the most asked for in one read when a large frame is pending
_READ_SIZE_LARGE = 4 * 1024 * 1024


#: how many of the bytes that are no valid frame a :class:`MalformedFrame` keeps
_HEAD = 64


class MalformedFrame(ProtocolError):
    """Bytes that are no valid frame; ``head`` holds the first of them (at most 64 bytes,
    from the frame's length prefix on), which may tell what the peer speaks instead."""

    def __init__(self, message: str, head: bytes | bytearray | memoryview) -> None:
        super().__init__(message)
        self.head = bytes(head[:_HEAD])


class FrameTooLarge(MalformedFrame):
    """A frame announced more bytes than its receiver takes (``size``: how many)."""

    def __init__(self, message: str, size: int, head: bytes | bytearray = b"") -> None:
        super().__init__(message, head)
        self.size = size


_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def first_frame(buf: bytearray, max_frame_size: int, peer: str) -> tuple[Message, bytes] | None:
    """The first whole frame in ``buf``: its message and its bytes (``buf`` is left alone;
    the caller deletes ``len(frame)`` bytes once it took the message).

    Returns None while the frame is incomplete.

    Raises:
        MalformedFrame: the frame announces more than ``max_frame_size`` bytes
            (:class:`FrameTooLarge`), or does not decode.
    """
    if len(buf) < _HEADER:
        return None
    size = int.from_bytes(buf[:_HEADER], "big")
    if size > max_frame_size:
        raise FrameTooLarge(
            f"{peer} sent a frame of {size} bytes, over the limit of {max_frame_size} bytes "
            "(max_frame_size); closing the connection",
            size,
            buf,
        )
    end = _HEADER + size
    if len(buf) < end:
        return None
    frame = bytes(memoryview(buf)[:end])
    return decode_frame(frame, peer), frame


#: msgpack nested deeper than about this (arrays in arrays, maps in maps) does not decode:
#: msgspec recurses once per level within Python's recursion limit (1,000 by default), part
#: of which the loop's own frames use. Such a frame is a protocol error of its sender.
NESTING_LIMIT = 900


def decode_frame(frame: bytes | bytearray, peer: str) -> Message:
    """The message in ``frame``.

    Raises:
        MalformedFrame: it does not decode, whatever the reason (malformed msgpack, an
            unknown message, too deep a nesting, no memory for what it announces); the
            caller closes that peer's connection and nothing else.
    """
    try:
        return _decoder.decode(memoryview(frame)[_HEADER:])
    except msgspec.DecodeError as exc:
        raise MalformedFrame(f"{peer} sent an undecodable frame: {exc}", frame) from exc
    except RecursionError:
        raise MalformedFrame(
            f"{peer} sent a frame nested deeper than daffi decodes (about {NESTING_LIMIT} levels)",
            frame,
        ) from None
    except Exception as exc:  # MemoryError, ValueError, ...: still only this peer's fault
        raise MalformedFrame(f"{peer} sent a frame that does not decode: {exc!r}", frame) from exc


#: frames larger than this are read straight into a buffer of their own (see FrameReader)
_LARGE_FRAME = 256 * 1024
#: that buffer holds this much at first (or twice what was received), then doubles
_LARGE_STEP = 1024 * 1024


class FrameReader:
    """Frames read off a socket by one thread (call channels, served channels).

    Small frames are read 64 KiB at a time into a shared buffer. A large frame is read with
    ``recv_into`` straight into a buffer of its own, which becomes the frame: no chunk is
    allocated per read, appended, then copied out again (for a 1 MiB frame those copies
    cost more than the reads themselves). That buffer grows with what arrives (1 MiB, then
    doubling), so a header alone never makes the reader hold a whole ``max_frame_size``.

    Args:
        max_frame_size: frames announcing a larger body raise :class:`ProtocolError`.
        peer: who sends them, for error messages.
        received: bytes already received.
    """

    def __init__(self, max_frame_size: int, peer: str, received: bytes = b"") -> None:
        self.max_frame_size = max_frame_size
        self.peer = peer
        self._buf = bytearray(received)
        self._large: bytearray | None = None  # the large frame being read
        self._total = 0  # its size
        self._have = 0  # bytes of it read so far

    @property
    def pending(self) -> bool:
        """Whether bytes of a next frame were read already."""
        return bool(self._buf) or self._large is not None

    def next_frame(self) -> tuple[Message, bytes | bytearray] | None:
        """The next whole frame read (its message and bytes), or None for now.

        Raises:
            ProtocolError: an oversized or undecodable frame.
        """
        large = self._large
        if large is not None:
            if self._have < self._total:
                return None
            self._large = None
            return decode_frame(large, self.peer), large
        buf = self._buf
        taken = first_frame(buf, self.max_frame_size, self.peer)
        if taken is not None:
            del buf[: len(taken[1])]
            return taken
        if len(buf) >= _HEADER:
            total = _HEADER + int.from_bytes(buf[:_HEADER], "big")
            if total > _LARGE_FRAME:
                self._total = total
                # Not all of it at once: a 4-byte header must not make us hold 64 MiB.
                large = self._large = bytearray(min(total, max(2 * len(buf), _LARGE_STEP)))
                self._have = len(buf)
                large[: self._have] = buf
                buf.clear()
        return None

    def read_from(self, sock: socket.socket | TlsSocket) -> bool:
        """One ``recv`` from ``sock``; False when the peer closed the connection.

        Raises whatever the socket raises (``BlockingIOError`` on a non-blocking socket with
        nothing to read, ``TimeoutError``, ``OSError``).
        """
        large = self._large
        if large is not None and self._have < self._total:  # (whole: what follows it is read)
            if self._have == len(large):  # room for as much again as was received
                large.extend(bytes(min(self._total, 2 * len(large)) - len(large)))
            got = sock.recv_into(memoryview(large)[self._have :])
            self._have += got
            return got > 0
        chunk = sock.recv(_READ_SIZE)
        self._buf += chunk
        return bool(chunk)


def read_size(buf: bytearray) -> int:
    """How much to read next: more when the frame being received is known to be large."""
    if len(buf) >= _HEADER:
        missing = _HEADER + int.from_bytes(buf[:_HEADER], "big") - len(buf)
        if missing > _READ_SIZE:
            return min(missing, _READ_SIZE_LARGE)
    return _READ_SIZE


def encode_frame(msg: Message) -> bytearray:
    """Encode ``msg`` as one frame (length prefix included)."""
    buf = bytearray(_HEADER)
    _encoder.encode_into(msg, buf, _HEADER)
    buf[:_HEADER] = (len(buf) - _HEADER).to_bytes(_HEADER, "big")
    return buf
