"""The controller's direct path: replies and calls routed right where they were read.

On a socket, the loop's reader hands each complete frame to the connection's ``direct``
handler while the serving task waits (asyncio); on the in-process link, the sending thread
does (a worker thread's reply). :class:`DirectPath` makes those handlers: it routes a reply,
or a call on the loop, at once, with the same :class:`~daffi._router.Router` decision as the
serving task, and leaves everything else to that task (it returns False): errors to send, a
congested target, a message of another kind. A target it chose for a call it then left to
the task is kept (:attr:`DirectPath.chosen`), so round-robin advances once per call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

import anyio

from daffi._admission import Peer
from daffi._link import DirectHandler, Link, Outlet
from daffi._protocol import Call, Error, Message, Result
from daffi._router import InFlight, Router, valid_timeout

__all__ = ["DIRECT_REPLY_MAX", "DirectPath", "WorkChannels"]

#: replies larger than this (bytes) from the node in this process are routed by the loop
DIRECT_REPLY_MAX = 64 * 1024


class WorkChannels(Protocol):
    """Where a plain call of a ``def`` callback may go instead (daffi._controller_channels)."""

    def sent_to_work_channel(
        self, target: Peer, msg: Call, caller: str, frame: bytes | bytearray
    ) -> bool: ...


class DirectPath:
    """The controller's direct routing (see the module docstring).

    Args:
        router: the controller's routing decision and in-flight table.
        work: the controller's channel service (idle work channels take plain calls).
        reply_destination: where a node's reply goes (None: nowhere).
        on_loop: whether the calling thread runs the controller's loop.
    """

    def __init__(
        self,
        router: Router[Peer],
        work: WorkChannels,
        reply_destination: Callable[[Peer, Result | Error], Outlet | None],
        on_loop: Callable[[], bool],
    ) -> None:
        self._router = router
        self._work = work
        self._reply_destination = reply_destination
        self._on_loop = on_loop
        #: (caller, call id) -> the target chosen for a call left to the serving task
        self.chosen: dict[tuple[str, int], Peer] = {}

    def handler(self, peer: Peer, channel: Link | None) -> DirectHandler:
        """What ``peer``'s connection (or call ``channel``) hands over without a task
        switch: replies and, on the loop, calls; False leaves a message to the serving
        task."""

        def take(msg: Message, frame: bytes | bytearray) -> bool:
            if not self._router.is_current(peer):
                return False
            on_loop = self._on_loop()
            if isinstance(msg, Result | Error):
                # Large replies from a worker thread go through the loop, whose writer
                # streams them faster than a non-blocking write and a hand-off (W3: ~180
                # against ~280 MiB/s for 1 MiB replies).
                if channel is not None or (not on_loop and len(frame) > DIRECT_REPLY_MAX):
                    return False
                self.reply_now(peer, msg, frame)
                return True
            if isinstance(msg, Call) and on_loop:
                return self._route_call_now(peer, msg, frame, channel)
            return False

        return take

    def reply_now(self, peer: Peer, msg: Result | Error, frame: bytes | bytearray) -> None:
        """Route a reply of ``peer`` without waiting (any thread)."""
        conn = self._reply_destination(peer, msg)
        if conn is not None:
            with contextlib.suppress(anyio.BrokenResourceError):
                # The node in this process takes messages directly on the loop only.
                if not (self._on_loop() and conn.offer_direct(msg, frame)):
                    conn.send_frame_threadsafe(frame)

    def forget_caller(self, name: str) -> None:
        """Node ``name`` left: drop the targets chosen for its calls."""
        for key in [key for key in self.chosen if key[0] == name]:
            del self.chosen[key]

    def _route_call_now(
        self, peer: Peer, msg: Call, frame: bytes | bytearray, channel: Link | None
    ) -> bool:
        """Route a call on the loop without waiting; False leaves it to the serving task
        (errors to report, a congested target, anything unusual)."""
        if msg.src != peer.name or not valid_timeout(msg):
            return False
        router = self._router
        target = router.target(peer.name, msg)
        if target is None:
            return False
        key = (peer.name, msg.id)
        if msg.want_result and not router.record(key, InFlight(target.name, msg.name, channel)):
            self.chosen[key] = target  # the serving task refuses it, as chosen
            return False
        if self._work.sent_to_work_channel(target, msg, peer.name, frame):
            return True
        conn = target.conn
        if conn.congested:
            router.forget(key)
            self.chosen[key] = target  # the serving task waits for it to catch up
            return False
        try:
            if not conn.offer_direct(msg, frame):
                conn.send_frame_threadsafe(frame)
        except anyio.BrokenResourceError:
            router.forget(key)
            return False
        return True
