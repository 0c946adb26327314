"""The controller's check of stream frames: each comes from a party of its stream, within
that stream's credit window.

A call's streams have two parties: its caller, who sends argument items (``StreamItem``,
``StreamEnd``) and grants credit for a generator callback's values (``Credit`` to the
callee), and the node running it, who sends those values (``YieldItem``) and grants credit
for argument items (``Credit`` to the caller). The controller relays each frame only from
the party that may send it, and keeps its own count of each direction's window (see
:mod:`daffi._streams`): an item the receiver has not granted, or credit for items never sent,
closes the connection of the node that sent it, so a misbehaving node never gets the
*receiving* node disconnected. The count cannot be stricter than the nodes' own: the
controller counts an item before forwarding it, and credit before the sender can use it.

The windows are kept on the call's route (:class:`daffi._router.InFlight`), created with
the first stream frame and gone with the route; only the controller's event loop reads or
changes them.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from daffi._protocol import STREAM_WINDOW, Credit, StreamEnd, StreamItem, YieldItem
from daffi.exceptions import ProtocolError

__all__ = ["STRAY_LIMIT", "StreamFrame", "StreamWindow", "stream_hop"]

logger = logging.getLogger("daffi.controller")

StreamFrame = StreamItem | StreamEnd | YieldItem | Credit

#: A node that sends this many stream frames for calls it is not a party of is disconnected.
STRAY_LIMIT = 100


class _Routes(Protocol):
    def stream_route(self, key: tuple[str, int]) -> Any:
        """The route of call ``key`` with its ``window``, or None (see daffi._router)."""


class _Sender(Protocol):
    @property
    def name(self) -> str: ...

    #: stream frames it sent for calls it is not a party of
    strays: int


class _Stray(Exception):
    """A stream frame from a node that is not the party of that stream that may send it."""


class StreamWindow:
    """The items each direction of one call's streams may still send."""

    __slots__ = ("to_callee", "to_caller")

    def __init__(self) -> None:
        #: argument items the caller may still send (the callee grants more)
        self.to_callee = STREAM_WINDOW
        #: values the running generator may still send (the caller grants more)
        self.to_caller = STREAM_WINDOW


def stream_hop(router: _Routes, peer: _Sender, msg: StreamFrame) -> str | None:
    """The node that stream frame ``msg`` from node ``peer`` goes to: the other party of its
    call; None when the call is over (a frame racing the call's end), or when ``peer`` is not
    the party that may send it (dropped, and counted against ``peer``: the first is logged).

    Raises:
        ProtocolError: ``peer`` sent an item beyond the receiver's credit, granted credit
            for items never sent, claims to be another node's caller, or sent
            :data:`STRAY_LIMIT` frames for calls it is not a party of.
    """
    try:
        return _hop(router, peer.name, msg)
    except _Stray as exc:
        peer.strays += 1
        if peer.strays == 1:
            logger.warning("dropped a stream frame: %s", exc)
        if peer.strays >= STRAY_LIMIT:
            raise ProtocolError(
                f"node {peer.name!r} sent {peer.strays} stream frames for calls it is not "
                f"part of (last: {exc})"
            ) from None
        return None


def _hop(router: _Routes, sender: str, msg: StreamFrame) -> str | None:
    if isinstance(msg, StreamItem | StreamEnd):
        caller, from_caller = msg.src, True
    elif isinstance(msg, YieldItem):
        caller, from_caller = msg.dst, False
    else:
        caller, from_caller = msg.peer, msg.to_callee
    if from_caller and caller != sender:
        raise ProtocolError(f"node {sender!r} sent stream data for a call of {caller!r}")
    route = router.stream_route((caller, msg.id))
    if route is None:
        return None
    if not from_caller and route.executor != sender:
        raise _Stray(
            f"node {sender!r} sent {type(msg).__name__} for call {msg.id} of {caller!r}, "
            f"which {route.executor!r} runs"
        )
    window: StreamWindow = route.window
    if isinstance(msg, Credit):
        # Credit from the caller lets the generator send more values, and the reverse.
        available = window.to_caller if from_caller else window.to_callee
        if msg.n <= 0 or available + msg.n > STREAM_WINDOW:
            raise ProtocolError(
                f"node {sender!r} granted {msg.n} items of credit on call {msg.id} of "
                f"{caller!r} with {available} of {STREAM_WINDOW} still unused"
            )
        if from_caller:
            window.to_caller += msg.n
        else:
            window.to_callee += msg.n
    elif not isinstance(msg, StreamEnd):
        available = window.to_callee if from_caller else window.to_caller
        if available <= 0:
            raise ProtocolError(
                f"node {sender!r} sent more than {STREAM_WINDOW} stream items on call "
                f"{msg.id} of {caller!r} without credit"
            )
        if from_caller:
            window.to_callee -= 1
        else:
            window.to_caller -= 1
    return route.executor if from_caller else caller
