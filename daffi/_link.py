"""The one protocol every kind of connection implements.

The controller and the node talk to a peer through a :class:`Link`, whatever it is:

- a framed byte stream over a transport (:class:`daffi._connection.Connection`);
- the in-process link between a controller and the node in its process
  (:class:`daffi._local_link.LocalConnection`), which hands whole frames over.

A call channel served by a thread of its own (:class:`daffi._served.ServedChannel`) is an
:class:`Outlet`: the controller sends replies on it like on any link.

Nothing in the controller or the node branches on the concrete class: what differs between
links is in what they declare (:attr:`Link.in_process`) and in methods every link has, which
some answer with "no" (:meth:`Link.offer_direct` on a stream, :meth:`Link.detach_socket` on
the in-process link).
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Callable
from typing import Protocol

import anyio
import anyio.lowlevel

from daffi._cipher import TlsSocket
from daffi._protocol import Call, Error, Message, Result

__all__ = ["DirectHandler", "InlineRunner", "Link", "Outlet", "cancelled_from_outside", "say_last"]

#: how long the last message of a link whose task is cancelled from outside may take
LAST_MESSAGE_TIMEOUT = 1.0

#: Takes a message right where it arrived (without waking the receiving task); False: the
#: receiving task gets it.
DirectHandler = Callable[[Message, bytes | bytearray], bool]

#: Runs a plain call of a ``def`` callback in the calling thread; None if it does not.
InlineRunner = Callable[[Call], Result | Error | None]


class Outlet(Protocol):
    """Where messages can be sent: a link, or a served call channel."""

    @property
    def congested(self) -> bool:
        """More is queued than the peer takes: senders on the loop should wait."""
        ...

    async def send(self, msg: Message) -> None: ...

    async def send_frame(self, frame: bytes | bytearray) -> None: ...

    def send_threadsafe(self, msg: Message) -> None:
        """Send from any thread, never blocking (``anyio.BrokenResourceError`` if closed)."""
        ...

    def send_frame_threadsafe(self, frame: bytes | bytearray) -> None: ...

    def offer_direct(self, msg: Message, frame: bytes | bytearray) -> bool:
        """Hand ``msg`` to the other end's direct handler now, in this thread, if there is
        one that takes it (in-process links); False: send it the usual way."""
        ...

    async def aclose(self) -> None: ...


class Link(Outlet, Protocol):
    """A connection between a node and its controller (see the module docstring)."""

    #: names the peer in log lines and errors
    peer: str
    #: frames announcing a larger body close the link (its owner may change it between
    #: frames: the controller allows a new connection less until it joined)
    max_frame_size: int
    #: ``time.monotonic()`` when something last arrived (heartbeats)
    last_received: float

    #: ``time.monotonic()`` when the first byte of a frame not complete yet arrived (None:
    #: no such frame; an in-process link hands whole frames over)
    @property
    def partial_since(self) -> float | None: ...

    #: set by the link's owner: see :data:`DirectHandler` (None: everything goes to
    #: :meth:`receive`)
    direct: DirectHandler | None
    #: set by the node's end of an in-process link: runs its ``def`` callbacks in the
    #: controller's threads (see :meth:`run_inline`), at most ``inline_slots`` at once
    inline: InlineRunner | None
    inline_slots: int

    @property
    def in_process(self) -> bool:
        """The peer lives in this process (no call channels; calls may run inline)."""
        ...

    def send_frames_threadsafe(self, frames: list[bytes | bytearray]) -> None:
        """Send several encoded frames, in order, from any thread (a stream writes them at
        once; the in-process link hands them over one by one)."""
        ...

    async def receive(self) -> tuple[Message, bytes | bytearray]:
        """The next message and the frame it came in.

        Raises:
            anyio.EndOfStream: the peer closed the link.
            ProtocolError: the peer sent something that is not a valid frame.
        """
        ...

    async def run_writer(self) -> None:
        """Write, until cancelled, what other threads queued (a task of the link's owner)."""
        ...

    def run_inline(self, msg: Call) -> Result | Error | None:
        """Have the other end run ``msg`` in this thread (see :data:`InlineRunner`); None:
        it does not (not in process, no runner, or it declined)."""
        ...

    @property
    def inline_slots_of_other(self) -> int:
        """How many threads may run the other end's calls at once (0: none)."""
        ...

    def detach_socket(self) -> tuple[socket.socket | TlsSocket, bytes] | None:
        """Hand the link's socket to a thread (see ``Connection.detach_socket``); None when
        the link has no socket it may give away."""
        ...


def cancelled_from_outside() -> bool:
    """Whether the cancellation being handled came from outside anyio's cancel scopes.

    daffi stops its tasks by cancelling a scope (the effective deadline is then -inf).
    Anything else is the event loop ending: ``asyncio.run`` cancels every task left once
    its main coroutine returns, daffi's too (trio never cancels a task that way).
    """
    return anyio.current_effective_deadline() != -math.inf


async def say_last(conn: Link, msg: Message | None) -> None:
    """Send ``msg`` (if any) as the last message of ``conn`` from a task being cancelled,
    and what is queued before it: shielded, bounded, and written before the caller closes
    the link (best effort)."""
    with anyio.CancelScope(shield=True) as scope:
        scope.deadline = anyio.current_time() + LAST_MESSAGE_TIMEOUT
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            if msg is not None:
                await conn.send(msg)
            # A write queued for the end of this loop turn (asyncio) happens now.
            await anyio.lowlevel.checkpoint()
