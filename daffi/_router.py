"""The controller's routing decision: the directory, target choice, the calls in flight.

Every path that routes a call (the connection's task, the direct path where the loop reads a
frame, a served channel's thread) asks one :class:`Router`, so they agree on the target, the
round-robin order, ``receiver=`` pinning and what is in flight.

Who may change what, so that it is correct without relying on the GIL:

- **The directory** (who is connected, who offers what) is changed only by its owner, the
  controller's event loop (:meth:`Router.join`, :meth:`Router.leave`,
  :meth:`Router.offer`). Each change publishes a new immutable :class:`Directory`; any
  thread reads :attr:`Router.directory` once and sees one whole state, old or new.
- **The round-robin cursors and the in-flight table** are changed from any thread, always
  under :attr:`Router.lock` (a plain lock held for a few dictionary operations, never
  across I/O or an ``await``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from daffi._protocol import SYSTEM_PREFIX, Call, CallbackInfo
from daffi._stream_relay import StreamWindow

__all__ = ["DEFAULT_MAX_CALLS_IN_FLIGHT", "Directory", "InFlight", "Router", "valid_timeout"]

#: calls one node may have in flight through a controller (waiting for their results)
DEFAULT_MAX_CALLS_IN_FLIGHT = 100_000

logger = logging.getLogger("daffi.controller")


class _Member(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def callbacks(self) -> Mapping[str, CallbackInfo]: ...


P = TypeVar("P", bound=_Member)

_EMPTY: Mapping[Any, Any] = MappingProxyType({})


class Directory(Generic[P]):
    """One immutable state of the directory: the nodes and, per callback, who offers it (in
    the order they started offering it)."""

    __slots__ = ("peers", "providers")

    def __init__(
        self, peers: Mapping[str, P] = _EMPTY, providers: Mapping[str, tuple[str, ...]] = _EMPTY
    ) -> None:
        self.peers: Mapping[str, P] = peers
        self.providers: Mapping[str, tuple[str, ...]] = providers


def valid_timeout(msg: Call) -> bool:
    """Whether ``msg`` carries a usable remaining time (none, or finite and not negative):
    a call with any other is a protocol error, never routed."""
    return msg.timeout is None or (math.isfinite(msg.timeout) and msg.timeout >= 0)


class InFlight(NamedTuple):
    """A call that wants its result: who runs it, which callback, where the reply goes
    (the caller's call channel; None: the caller's connection), and its streams' credit
    windows (a :class:`daffi._stream_relay.StreamWindow`, from the first stream frame)."""

    executor: str
    callback: str
    channel: Any
    window: StreamWindow | None = None


class Router(Generic[P]):
    """The directory and the routing state of one controller (see the module docstring)."""

    def __init__(self, max_calls_in_flight: int = DEFAULT_MAX_CALLS_IN_FLIGHT) -> None:
        self.directory: Directory[P] = Directory()
        #: guards the round-robin cursors and the in-flight table
        self.lock = threading.Lock()
        self._cursor: dict[str, int] = {}
        self._in_flight: dict[tuple[str, int], InFlight] = {}
        #: calls in flight per caller, at most ``max_calls_in_flight`` each
        self._per_caller: dict[str, int] = {}
        self.max_calls_in_flight = max_calls_in_flight

    # ------------------------------------------------------------------ the directory

    def is_current(self, peer: P) -> bool:
        """Whether ``peer`` is the connected node of its name (not one that left)."""
        return self.directory.peers.get(peer.name) is peer

    def join(self, peer: P) -> None:
        """``peer`` completed its handshake (the loop only); it offers ``peer.callbacks``."""
        self._publish({**self.directory.peers, peer.name: peer}, peer, peer.callbacks, {})

    def offer(self, peer: P, old: Mapping[str, CallbackInfo]) -> None:
        """``peer`` now offers ``peer.callbacks`` instead of ``old`` (the loop only); it
        moves to the end of the order of each callback it offers."""
        self._publish(dict(self.directory.peers), peer, peer.callbacks, old)

    def leave(self, peer: P) -> None:
        """``peer`` is gone (the loop only)."""
        peers = dict(self.directory.peers)
        del peers[peer.name]
        self._publish(peers, peer, {}, peer.callbacks)

    def _publish(
        self,
        peers: dict[str, P],
        peer: P,
        offers: Mapping[str, CallbackInfo],
        withdrawn: Mapping[str, CallbackInfo],
    ) -> None:
        providers = dict(self.directory.providers)
        for name in withdrawn:
            names = tuple(n for n in providers.get(name, ()) if n != peer.name)
            if names:
                providers[name] = names
            else:
                providers.pop(name, None)
        for name in offers:
            providers[name] = (*providers.get(name, ()), peer.name)
        gone = [name for name in withdrawn if name not in providers]
        self.directory = Directory(MappingProxyType(peers), MappingProxyType(providers))
        if gone:
            with self.lock:
                for name in gone:
                    self._cursor.pop(name, None)

    # ------------------------------------------------------------------ the decision

    def target(self, caller: str, msg: Call) -> P | None:
        """The node that runs ``msg``: its pinned receiver, or the next in round-robin over
        the nodes offering it (the caller only if nobody else does). Any thread."""
        directory = self.directory
        if msg.receiver is not None:
            target = directory.peers.get(msg.receiver)
            if target is None or (
                msg.name not in target.callbacks and not msg.name.startswith(SYSTEM_PREFIX)
            ):
                return None
            return target
        providers = directory.providers.get(msg.name)
        if not providers:
            return None
        candidates = [p for p in providers if p != caller] if caller in providers else providers
        if not candidates:
            return None
        with self.lock:
            turn = self._cursor.get(msg.name, 0)
            self._cursor[msg.name] = turn + 1
        return directory.peers.get(candidates[turn % len(candidates)])

    def why_no_target(self, msg: Call) -> str:
        if msg.receiver is None:
            return f"no other process offers callback {msg.name!r}"
        target = self.directory.peers.get(msg.receiver)
        if target is None:
            return f"process {msg.receiver!r} is not connected"
        return (
            f"process {msg.receiver!r} has no callback {msg.name!r}; it offers "
            f"{sorted(target.callbacks)}"
        )

    # ------------------------------------------------------------------ calls in flight

    def record(self, key: tuple[str, int], route: InFlight) -> bool:
        """Call ``key`` (caller, id) is on its way to ``route.executor``; False if its caller
        has ``max_calls_in_flight`` calls in flight already (it is not recorded). Any
        thread."""
        caller = key[0]
        with self.lock:
            if key not in self._in_flight:
                count = self._per_caller.get(caller, 0)
                if count >= self.max_calls_in_flight:
                    return False
                self._per_caller[caller] = count + 1
            self._in_flight[key] = route
        return True

    def why_too_many(self, caller: str, controller: str) -> str:
        return (
            f"process {caller!r} has {self.max_calls_in_flight} calls in flight through "
            f"controller {controller!r}, its limit (max_calls_in_flight); wait for some to "
            "finish"
        )

    def _release(self, caller: str) -> None:
        """One call of ``caller`` is no longer in flight (under the lock)."""
        count = self._per_caller[caller] - 1
        if count:
            self._per_caller[caller] = count
        else:
            del self._per_caller[caller]

    def stream_route(self, key: tuple[str, int]) -> InFlight | None:
        """Call ``key``'s route, with its streams' credit windows (created now if this is
        its first stream frame); None if the call is over. The loop only."""
        with self.lock:
            route = self._in_flight.get(key)
            if route is not None and route.window is None:
                route = self._in_flight[key] = route._replace(window=StreamWindow())
            return route

    def forget(self, key: tuple[str, int]) -> InFlight | None:
        """Remove call ``key``'s route (it was cancelled, or could not be sent)."""
        with self.lock:
            route = self._in_flight.pop(key, None)
            if route is not None:
                self._release(key[0])
            return route

    def answered(self, key: tuple[str, int], by: str) -> InFlight | None:
        """``by`` answered call ``key``: its route, removed, if ``by`` is the node running it;
        None if nobody waits for it (cancelled, caller gone) or ``by`` does not run it."""
        with self.lock:
            route = self._in_flight.get(key)
            if route is None:
                return None
            if route.executor != by:
                logger.warning(
                    "node %r answered call %s of %r, which runs elsewhere; dropped",
                    by,
                    key[1],
                    key[0],
                )
                return None
            del self._in_flight[key]
            self._release(key[0])
            return route

    def take_all(self, node: str) -> list[tuple[tuple[str, int], InFlight]]:
        """Remove and return every call that ``node`` made or runs (it left)."""
        with self.lock:
            taken = [
                (key, route)
                for key, route in self._in_flight.items()
                if node in (route.executor, key[0])
            ]
            for key, _ in taken:
                del self._in_flight[key]
                self._release(key[0])
        return taken

    def take_via(self, channel: Any) -> list[tuple[tuple[str, int], InFlight]]:
        """Remove and return every call whose reply goes to call channel ``channel``."""
        with self.lock:
            taken = [(k, r) for k, r in self._in_flight.items() if r.channel is channel]
            for key, _ in taken:
                del self._in_flight[key]
                self._release(key[0])
        return taken

    def __iter__(self) -> Iterator[tuple[str, int]]:
        """The keys in flight (a copy: for tests and diagnostics)."""
        with self.lock:
            return iter(list(self._in_flight))

    def __len__(self) -> int:
        with self.lock:
            return len(self._in_flight)

    def __contains__(self, key: object) -> bool:
        with self.lock:
            return key in self._in_flight
