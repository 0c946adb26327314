"""The in-process link between a controller and the node sharing its process.

Both ends run on the same event loop; frames are handed over in memory, whole, so there is no
byte stream, no length parsing and no copy. Sending works from any thread (a node's worker
threads reply through it), like :class:`~daffi._connection.Connection`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque

import anyio
import anyio.lowlevel
import msgspec

from daffi._cipher import TlsSocket
from daffi._crossloop import loop_call_soon
from daffi._frames import _HEADER, DEFAULT_MAX_FRAME_SIZE, _decoder, encode_frame
from daffi._link import DirectHandler, InlineRunner
from daffi._protocol import Call, Error, Message, Result
from daffi.exceptions import ProtocolError

__all__ = ["LocalConnection"]


class LocalConnection:
    """One end of an in-process link; make both with :meth:`pair`."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.last_received = time.monotonic()
        self._other: LocalConnection | None = None
        self._lock = threading.Lock()
        self._inbox: deque[bytes | bytearray] = deque()
        self._waiting = False
        self._wake_pending = False
        self._closed = False
        self._peer_closed = False
        self._event = anyio.Event()
        self._loop_thread = threading.get_ident()
        self._call_soon = loop_call_soon()
        #: Set by the owner of this end: takes a message sent by the other end right away,
        #: in the sender's thread, instead of queueing it for :meth:`receive`. Returns False
        #: for a message it does not take. Only used while nothing is queued, so messages
        #: keep their order.
        self.direct: DirectHandler | None = None
        #: Set by the node's end: runs a plain call of a ``def`` callback in the calling
        #: thread, or returns None (see :meth:`Dispatcher.run_inline`); with how many
        #: threads may do so at once. Used by the controller's end through :meth:`run_inline`.
        self.inline: InlineRunner | None = None
        self.inline_slots = 0
        #: whole frames are handed over in memory: not checked
        self.max_frame_size = DEFAULT_MAX_FRAME_SIZE

    @property
    def in_process(self) -> bool:
        return True

    @property
    def partial_since(self) -> float | None:
        """Whole frames are handed over: none is ever partial."""
        return None

    @property
    def congested(self) -> bool:
        return False  # frames are handed over as they are sent

    def detach_socket(self) -> tuple[socket.socket | TlsSocket, bytes] | None:
        """An in-process link has no socket."""
        return None

    @classmethod
    def pair(cls) -> tuple[LocalConnection, LocalConnection]:
        """Two connected ends: (node side, controller side)."""
        node_side, controller_side = cls("the controller"), cls("?")
        node_side._other, controller_side._other = controller_side, node_side
        return node_side, controller_side

    async def send(self, msg: Message) -> None:
        frame = encode_frame(msg)
        if self.offer_direct(msg, frame):
            return  # taken at once: nothing was queued, nothing to wait for
        await self.send_frame(frame)

    async def send_frame(self, frame: bytes | bytearray) -> None:
        self._deliver(frame)
        await anyio.lowlevel.checkpoint()

    def send_threadsafe(self, msg: Message) -> None:
        frame = encode_frame(msg)
        if not self.offer_direct(msg, frame):
            self._deliver(frame)

    def send_frame_threadsafe(self, frame: bytes | bytearray) -> None:
        """Send one encoded frame from any thread (never blocks)."""
        self._deliver(frame)

    def send_frames_threadsafe(self, frames: list[bytes | bytearray]) -> None:
        """Send encoded frames in order: each is one message of the link."""
        for frame in frames:
            self._deliver(frame)

    def offer_direct(self, msg: Message, frame: bytes | bytearray) -> bool:
        """Hand ``msg`` to the other end's :attr:`direct` handler, if it takes it now.

        Saves the receiving task a wake-up. Returns False when the message must be sent the
        usual way (no handler, messages already queued, or the handler declined).
        """
        other = self._other
        assert other is not None
        handler = other.direct
        if handler is None or self._closed or other._closed or other._inbox:
            return False
        return handler(msg, frame)

    def run_inline(self, msg: Call) -> Result | Error | None:
        """Have the other end (the node) run ``msg`` in this thread; None if it does not."""
        other = self._other
        assert other is not None
        inline = other.inline
        if inline is None or self._closed or other._closed:
            return None
        return inline(msg)

    @property
    def inline_slots_of_other(self) -> int:
        """How many threads may run the other end's calls at once (0: none)."""
        other = self._other
        return 0 if other is None or other.inline is None else other.inline_slots

    def _deliver(self, frame: bytes | bytearray) -> None:
        other = self._other
        assert other is not None
        with other._lock:
            if self._closed or other._closed:
                raise anyio.BrokenResourceError(f"connection to {self.peer} is closed")
            other._inbox.append(frame)
            wake = other._wake_needed()
        if wake:
            other._wake_from_any_thread()

    def _wake_needed(self) -> bool:
        # With the lock held: whether a wake-up must be sent to a waiting receive.
        wake = self._waiting and not self._wake_pending
        if wake:
            self._wake_pending = True
        return wake

    def _wake_from_any_thread(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._event.set()
        else:
            self._call_soon(self._wake)

    def _wake(self) -> None:
        self._event.set()

    async def receive(self) -> tuple[Message, bytes | bytearray]:
        """The next message and its frame.

        Raises:
            anyio.EndOfStream: the other end closed and everything it sent was received.
        """
        while True:
            with self._lock:
                if self._inbox:
                    frame = self._inbox.popleft()
                    break
                if self._peer_closed or self._closed:
                    raise anyio.EndOfStream
                self._waiting = True
            await self._event.wait()
            self._event = anyio.Event()
            with self._lock:
                self._waiting = False
                self._wake_pending = False
        self.last_received = time.monotonic()
        try:
            msg = _decoder.decode(memoryview(frame)[_HEADER:])
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"undecodable frame on the in-process link: {exc}") from exc
        return msg, frame

    async def run_writer(self) -> None:
        """Nothing to flush: frames are delivered as they are sent."""
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        """Close this end; the other end receives what was sent, then ``EndOfStream``."""
        if self._closed:
            return
        self._closed = True
        self._event.set()  # wake our own receive, if it waits
        other = self._other
        if other is not None:
            with other._lock:
                other._peer_closed = True
                wake = other._wake_needed()
            if wake:
                other._wake_from_any_thread()
        await anyio.lowlevel.checkpoint()
