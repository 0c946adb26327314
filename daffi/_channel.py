"""Call channels: blocking connections a node's sync callers use without the event loop.

A thread that makes a sync call (a ``def`` fetcher outside daffi's loop) would otherwise hand
its request to the loop and wait for the loop to hand the reply back: two thread wake-ups
per call on top of the network. Instead it borrows a *call channel*, an extra connection of
its node to the controller opened by the transport's
:meth:`~daffi.transports.Transport.connect_blocking`, writes its ``Call`` and reads the
reply itself.

A channel is opened with an ``Attach`` frame carrying the secret token the controller gave
the node in its ``Welcome``, so only that node can speak on it. It carries nothing but calls,
cancels and the replies to them, one caller at a time; the pool keeps idle channels for the
next caller. Closing a channel in the middle of a call (timeout, interrupt) makes the
controller cancel the call on its executor. When the node's session ends, every channel is
shut down: callers blocked on one see the connection end.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable

from daffi._connection import FrameReader, encode_frame
from daffi._protocol import PROTOCOL_VERSION, Attach, Call, Error, Message, Reject, Result, Welcome
from daffi.exceptions import ProtocolError

__all__ = ["ChannelClosed", "ChannelPool", "ChannelRefused", "SyncChannel"]

logger = logging.getLogger("daffi.node")


class ChannelClosed(Exception):
    """The channel's connection ended (or failed) before the expected frame arrived."""


class ChannelRefused(Exception):
    """The controller did not accept the channel (it answered ``Reject``)."""


class SyncChannel:
    """One blocking connection to the controller, used by one thread at a time."""

    def __init__(self, sock: socket.socket, *, max_frame_size: int) -> None:
        self.sock = sock
        self.max_frame_size = max_frame_size
        self._frames = FrameReader(max_frame_size, "the controller")
        self._closed = False
        self._timeout: float | None = sock.gettimeout()

    def send(self, msg: Message) -> None:
        """Write one message (blocking until the kernel took all of it).

        Raises:
            ChannelClosed: the connection failed.
        """
        self.send_frame(encode_frame(msg))

    def _set_timeout(self, timeout: float | None) -> None:
        # settimeout() costs system calls (the socket's blocking flag) even when nothing
        # changes: only call it when something does.
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def send_frame(self, frame: bytes | bytearray, deadline: float | None = None) -> None:
        """Write one frame, waiting for room until ``deadline`` (``time.monotonic()``).

        Raises:
            TimeoutError: the deadline passed first (the channel is then unusable).
            ChannelClosed: the connection failed.
        """
        self._set_deadline(deadline)
        try:
            self.sock.sendall(frame)
        except TimeoutError:
            raise
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc

    def _set_deadline(self, deadline: float | None) -> None:
        if deadline is None:
            self._set_timeout(None)
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self._set_timeout(left)

    def receive(self, deadline: float | None) -> Message:
        """The next message, waiting until ``deadline`` (``time.monotonic()``) at most.

        Raises:
            TimeoutError: the deadline passed first.
            ChannelClosed: the connection ended or failed.
            ProtocolError: a malformed or oversized frame.
        """
        frames = self._frames
        while True:
            taken = frames.next_frame()
            if taken is not None:
                return taken[0]
            self._set_deadline(deadline)
            try:
                received = frames.read_from(self.sock)
            except TimeoutError:
                raise
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc
            if not received:
                raise ChannelClosed("the controller closed the connection")

    def shutdown(self) -> None:
        """Wake a thread blocked on this channel (it sees the connection end); any thread."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.shutdown()
            self.sock.close()


class ChannelPool:
    """The call channels of one node session: idle ones wait for the next sync caller.

    Args:
        open_socket: opens a blocking socket to the controller (``timeout`` in seconds).
        node: the node's name.
        token: the session's channel token (from ``Welcome``).
        max_frame_size: the largest frame accepted from the controller.
        handshake_timeout: how long opening a channel may take.
    """

    def __init__(
        self,
        open_socket: Callable[[float], socket.socket | None],
        node: str,
        token: bytes,
        *,
        max_frame_size: int,
        handshake_timeout: float = 10.0,
    ) -> None:
        self._open_socket = open_socket
        self.node = node
        self._token = token
        self.max_frame_size = max_frame_size
        self.handshake_timeout = handshake_timeout
        self._lock = threading.Lock()
        self._idle: list[SyncChannel] = []
        self._all: set[SyncChannel] = set()  # call channels, busy or idle
        self._work: set[SyncChannel] = set()  # work channels (see serve_work)
        self._closed = False
        #: set once opening a channel failed: callers go through the loop from then on
        self.disabled = False

    def acquire(self) -> SyncChannel | None:
        """An idle channel, or a new one; None when channels are unavailable (closed pool,
        a transport without blocking sockets, or a controller that refused one)."""
        with self._lock:
            if self._closed or self.disabled:
                return None
            if self._idle:
                return self._idle.pop()
        try:
            channel = self._open()
        except (OSError, ChannelClosed, ChannelRefused, ProtocolError, TimeoutError) as exc:
            logger.info(
                "node %r: no call channel (%s); sync calls go through the event loop",
                self.node,
                exc,
            )
            self.disabled = True
            return None
        if channel is None:
            self.disabled = True
            return None
        with self._lock:
            if not self._closed:
                self._all.add(channel)
                return channel
        channel.close()
        return None

    def release(self, channel: SyncChannel) -> None:
        """Give back a channel whose last call finished cleanly."""
        with self._lock:
            if not self._closed and channel in self._all:
                self._idle.append(channel)
                return
        channel.close()

    def discard(self, channel: SyncChannel) -> None:
        """Close a channel left in an unknown state (the controller cancels its call)."""
        with self._lock:
            self._all.discard(channel)
            with contextlib.suppress(ValueError):
                self._idle.remove(channel)
        channel.close()

    def close(self) -> None:
        """Close every channel; threads blocked on one are woken (any thread)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy, self._all = (self._all - set(idle)) | self._work, set()
            self._work = set()
        for channel in idle:
            channel.close()
        for channel in busy:
            channel.shutdown()  # the thread using it closes it when it gives it back

    def serve_work(self, run: Callable[[Call], Result | Error]) -> None:
        """Open a work channel and answer the calls it brings with ``run`` until it closes.

        The body of a thread of the node's: the controller sends calls of ``def``
        callbacks there while the thread is free, so they run without a hand-off from the
        node's event loop to a worker thread.
        """
        try:
            channel = self._open(work=True)
        except (OSError, ChannelClosed, ChannelRefused, ProtocolError, TimeoutError) as exc:
            logger.info("node %r: no work channel (%s)", self.node, exc)
            return
        if channel is None:
            return
        with self._lock:
            if self._closed:
                channel.close()
                return
            self._work.add(channel)
        try:
            while True:
                msg = channel.receive(None)
                if not isinstance(msg, Call):
                    raise ProtocolError(f"unexpected {type(msg).__name__} on a work channel")
                channel.send(run(msg))
        except (ChannelClosed, OSError):
            pass  # the session ended, or the controller went away
        except ProtocolError as exc:
            logger.error("node %r: work channel closed: %s", self.node, exc)
        finally:
            with self._lock:
                self._work.discard(channel)
            channel.close()

    def _open(self, *, work: bool = False) -> SyncChannel | None:
        sock = self._open_socket(self.handshake_timeout)
        if sock is None:
            return None
        channel = SyncChannel(sock, max_frame_size=self.max_frame_size)
        try:
            channel.send(Attach(PROTOCOL_VERSION, self.node, self._token, work))
            answer = channel.receive(time.monotonic() + self.handshake_timeout)
            if isinstance(answer, Reject):
                raise ChannelRefused(answer.reason)
            if not isinstance(answer, Welcome):
                raise ProtocolError(f"expected Welcome on a call channel, got {answer!r}")
        except BaseException:
            channel.close()
            raise
        return channel
