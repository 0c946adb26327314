"""Who may join: the controller's checks of a connection's first frame.

A node joins with ``Hello`` and, unless it lives in the controller's process, gets a
channel token in its ``Welcome``; its call and work channels then attach with ``Attach`` and
that token (see :mod:`daffi._channel`). Nothing is routed for a connection before it passed
these checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from daffi._link import Link, Outlet
from daffi._protocol import PROTOCOL_VERSION, Attach, CallbackInfo, Hello, Reject

__all__ = ["Peer", "may_attach", "new_channel_token", "refusal"]


@dataclass(eq=False)
class Peer:
    """A node that joined: its link, what it offers, its channels."""

    name: str
    conn: Link
    callbacks: dict[str, CallbackInfo] = field(default_factory=dict)
    said_bye: bool = False
    #: the secret that lets this node open call channels (None: it may not)
    channel_token: bytes | None = None
    #: its open call channels
    channels: set[Outlet] = field(default_factory=set)
    #: its work channels, and those with no call running (ready for a def callback's call)
    work: set[Link] = field(default_factory=set)
    work_idle: list[Link] = field(default_factory=list)


def refusal(msg: Hello, controller: str, *, name_taken: bool) -> Reject | None:
    """Why controller ``controller`` refuses the node saying ``msg`` (None: it may join).

    ``name_taken``: a connected node already has the name the node asks for.
    """
    if msg.version != PROTOCOL_VERSION:
        return Reject(
            f"protocol version {msg.version} is not supported by controller {controller!r} "
            f"(it speaks version {PROTOCOL_VERSION}); upgrade daffi on both ends",
            "ProtocolError",
        )
    if not msg.name:
        return Reject("process_name must not be empty", "InitializationError")
    if name_taken:
        return Reject(
            f"process name {msg.name!r} is already used by a connected node; "
            "every process needs a unique process_name",
            "InitializationError",
        )
    if "msgpack" not in msg.codecs:
        return Reject(
            f"no common payload codec (node offers {list(msg.codecs)}, controller "
            "speaks ['msgpack'])",
            "ProtocolError",
        )
    return None


def new_channel_token() -> bytes:
    """A fresh secret that lets one node session open channels."""
    return os.urandom(16)


def may_attach(msg: Attach, token: bytes | None) -> bool:
    """Whether ``msg`` may attach a channel to the node whose channel token is ``token``
    (None: no such node, or it may not open channels). The comparison takes constant time."""
    if msg.version != PROTOCOL_VERSION or token is None:
        return False
    import hmac  # only a controller serving call channels needs it

    return hmac.compare_digest(token, msg.token)
