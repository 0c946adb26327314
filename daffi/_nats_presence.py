"""Who is there, in NATS mode: a node's join, its announcements, and the liveness of others.

Every node publishes its ``NodeUp`` (name, callbacks, where it runs, since when) on the
presence subject when it joins, whenever what it offers changes, and every heartbeat
interval. A node hearing a ``NodeUp`` from a node it does not know (a newcomer, or a node
that started a new session) adds it to its router and answers with its own ``NodeUp`` on the
newcomer's subject, so the newcomer learns who is there. A node silent for three intervals
is taken as gone; a node that stops publishes ``NodeDown``. :class:`Presence` keeps this for
one :class:`~daffi._nats_link.NatsLink` (its host), whose router is the directory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from daffi._protocol import (
    PROTOCOL_VERSION,
    CallbackInfo,
    Message,
    NodeDown,
    NodeUp,
    Reject,
    Welcome,
)
from daffi._router import Router

__all__ = ["CONTROLLER_NAME", "JOIN_SETTLE", "Member", "Presence", "PresenceHost"]

logger = logging.getLogger("daffi.nats")

#: after the node's announcement reached the server, how long the link waits without a new
#: answer before it hands the session its Welcome, and how long at most in all
JOIN_SETTLE = (0.1, 1.0)
#: the name the link gives the "controller" in errors and in the Welcome
CONTROLLER_NAME = "nats"


@dataclass(eq=False)
class Member:
    """A node as this node knows it (the router's peer)."""

    name: str
    callbacks: dict[str, CallbackInfo] = field(default_factory=dict)
    address: str = ""
    since: float = 0.0
    last_seen: float = field(default_factory=time.monotonic)
    #: the seconds between its announcements (0.0: unknown)
    interval: float = 0.0


class PresenceHost(Protocol):
    """What presence needs of the link."""

    def give(self, msg: Message) -> None:
        """Hand ``msg`` to this node's session."""
        ...

    def publish_to(self, name: str | None, msg: Message) -> None:
        """Publish ``msg`` on node ``name``'s subject (None: the presence subject)."""
        ...

    async def flush(self, timeout: float) -> bool:
        """Whether what was published reached the server within ``timeout`` seconds."""
        ...

    def gone(self, name: str, how: str) -> None:
        """Node ``name`` left the directory (``how``: "left", "disconnected", ...)."""
        ...


class Presence:
    """The directory of one node in NATS mode (see the module docstring).

    Args:
        host: the link.
        router: the link's router, whose directory this keeps.
        name: this node's name.
        heartbeat_interval: seconds between announcements; three without one mean gone.
    """

    def __init__(
        self, host: PresenceHost, router: Router[Member], name: str, heartbeat_interval: float
    ) -> None:
        self.host = host
        self.router = router
        self.name = name
        self.heartbeat_interval = heartbeat_interval
        #: this node (its address is set once connected)
        self.me = Member(name, since=time.time())
        #: the session was welcomed: directory changes are told to it
        self.joined = False
        #: the session said what this node offers (its announcements are complete)
        self.introduced = False
        self._conflict: str | None = None
        self._heard = anyio.Event()  # a new node answered the announcement

    def announce(self, *, to: str | None = None) -> None:
        """Publish this node's ``NodeUp`` (to everyone, or to node ``to``)."""
        me = self.me
        callbacks = tuple(me.callbacks.values())
        msg = NodeUp(self.name, callbacks, me.address, me.since, self.heartbeat_interval)
        self.host.publish_to(to, msg)

    async def join(self, callbacks: Sequence[CallbackInfo], where: str) -> Welcome | Reject:
        """Join offering ``callbacks``: announce, listen for the others' answers until they
        settle (see :data:`JOIN_SETTLE`), and say what the session is told."""
        self.me.callbacks = {info.name: info for info in callbacks}
        self.introduced = True
        self.router.join(self.me)
        self.announce()
        settle, longest = JOIN_SETTLE
        with anyio.move_on_after(longest):
            await self.host.flush(longest)
            while True:
                self._heard = anyio.Event()
                with anyio.move_on_after(settle) as quiet:
                    await self._heard.wait()
                if quiet.cancelled_caught:
                    break
        if self._conflict is not None:
            self.router.leave(self.me)
            return Reject(
                f"process name {self.name!r} is taken: another process of that name is "
                f"connected to {where} ({self._conflict})"
            )
        peers = [p for p in self.router.directory.peers.values() if p is not self.me]
        self.joined = True
        return Welcome(
            PROTOCOL_VERSION,
            CONTROLLER_NAME,
            "msgpack",
            {p.name: tuple(p.callbacks.values()) for p in peers},
            seen={p.name: (p.address, p.since) for p in peers},
        )

    def offer(self, callbacks: Sequence[CallbackInfo]) -> None:
        """This node now offers ``callbacks``: tell everyone."""
        old, self.me.callbacks = self.me.callbacks, {info.name: info for info in callbacks}
        self.router.offer(self.me, old)
        self.announce()

    async def leave(self) -> None:
        """Say this node is leaving (``NodeDown``), and wait, bounded, until it is sent."""
        self.joined = False
        self.host.publish_to(None, NodeDown(self.name, clean=True))
        await self.host.flush(1.0)

    def node_up(self, msg: NodeUp, *, from_presence: bool) -> None:
        """A node announced itself (on the presence subject, or answering this node)."""
        if msg.name == self.name:
            # NATS does not echo a node's own messages: this is another process of its name.
            # A node already welcomed keeps the name; of two joining at once, the one that
            # started first does. The one keeping it tells the other, which steps back.
            if not self.joined and (msg.since, msg.address) < (self.me.since, self.me.address):
                self._conflict = msg.address or "another process"
            elif from_presence and self.introduced:
                self.announce(to=self.name)
            return
        callbacks = {info.name: info for info in msg.callbacks}
        known = self.router.directory.peers.get(msg.name)
        if known is None:
            self.router.join(
                Member(msg.name, callbacks, msg.address, msg.since, interval=msg.interval)
            )
            self._heard.set()
            if self.joined:
                self.host.give(NodeUp(msg.name, msg.callbacks, msg.address, msg.since))
            if from_presence and self.introduced:
                # A newcomer (maybe joining with this one): tell it about this node. (Before
                # its own introduction this node would announce no callbacks; its join's
                # announcement reaches the newcomer anyway.)
                self.announce(to=msg.name)
            return
        known.last_seen = time.monotonic()
        known.interval = msg.interval
        if msg.since > known.since:
            # A new session of a node still known here (it reconnected within three
            # heartbeats): it knows nobody yet.
            known.address, known.since = msg.address, msg.since
            if from_presence and self.introduced:
                self.announce(to=msg.name)
        if callbacks != known.callbacks:
            old, known.callbacks = known.callbacks, callbacks
            self.router.offer(known, old)
            if self.joined:
                self.host.give(NodeUp(msg.name, msg.callbacks, known.address, known.since))

    def node_down(self, name: str, how: str) -> None:
        """Node ``name`` is gone (``how`` it went)."""
        node = self.router.directory.peers.get(name)
        if node is None or name == self.name:
            return
        self.router.leave(node)
        logger.info("node %r: process %r %s", self.name, name, how)
        if self.joined:
            self.host.give(NodeDown(name, clean=how == "left"))
        self.host.gone(name, how)

    def tick(self) -> None:
        """Once per heartbeat interval: announce this node, retire the silent ones (three
        of their intervals, or of this node's if theirs is shorter or unknown)."""
        self.announce()
        now = time.monotonic()
        for node in list(self.router.directory.peers.values()):
            interval = max(self.heartbeat_interval, node.interval)
            if node is not self.me and node.last_seen < now - 3 * interval:
                self.node_down(node.name, "disconnected (not heard of for 3 heartbeats)")
