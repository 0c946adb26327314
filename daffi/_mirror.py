"""A node's mirror of the controller's directory: who offers what, read without a round trip.

The session keeps it current (``Welcome``, then ``NodeUp``/``NodeDown``; emptied when the
link is lost). Everything that must know who offers a callback reads it: the argument
checks of every call (from any thread), ``BROADCAST`` targets, and the waits of
``wait_process`` and ``wait_function``, which wake on directory changes instead of polling.
"""

from __future__ import annotations

import datetime
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from daffi._codec import PayloadEncodeError
from daffi._pickling import Pickling
from daffi._protocol import CallbackInfo
from daffi.exceptions import DaffiError, TimeoutError, UnableToFindCandidate
from daffi.registry._inspect import check_arguments, signature_from_info
from daffi.registry._store import CallbackRegistry

if TYPE_CHECKING:
    from daffi._codec import PayloadCodec

__all__ = ["FRAME_OVERHEAD", "DirectoryMirror", "NodeInfo"]

#: room kept in a frame for the envelope around a payload (names, ids, options), at most
FRAME_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class NodeInfo:
    """A connected process, as :attr:`Global.nodes <daffi.Global.nodes>` lists it.

    Attributes:
        name: its process name.
        address: where it connected from, as the controller sees it: ``host:port`` over
            TCP, ``unix socket (pid N)`` over a Unix socket, ``in-process`` for the node in
            the controller's own process ("" if the controller did not say).
        connected_since: when it joined, by the controller's clock (UTC; None if unknown).
        callbacks: the names of the callbacks it offers, sorted.
    """

    name: str
    address: str
    connected_since: datetime.datetime | None
    callbacks: tuple[str, ...]

    @classmethod
    def of(cls, name: str, callbacks: Any, address: str, since: float) -> NodeInfo:
        """The info of node ``name`` from what the controller says of it."""
        joined = (
            datetime.datetime.fromtimestamp(since, datetime.timezone.utc) if since > 0 else None
        )
        return cls(name, address, joined, tuple(sorted(callbacks)))


class DirectoryMirror:
    """The other nodes and their callbacks, as this node last heard from the controller.

    Args:
        name: this node's name (a call pinned to it is checked against ``registry``).
        registry: this node's own callbacks.
        codec: encodes the arguments of checked calls.
        max_frame_size: the largest frame a peer accepts (see :meth:`check_size`).

    Attributes:
        pickling: this node's side of the pickle rule (``allow_pickle``; default: pickle
            refused); the node's callers share it.
    """

    def __init__(
        self,
        name: str,
        registry: CallbackRegistry,
        codec: PayloadCodec,
        max_frame_size: int,
        *,
        pickling: Pickling | None = None,
    ) -> None:
        self.name = name
        self.registry = registry
        self.codec = codec
        self.max_frame_size = max_frame_size
        self.pickling = pickling if pickling is not None else Pickling(name, False)
        #: the other nodes and what they offer (replaced whole on every change)
        self.peers: dict[str, dict[str, CallbackInfo]] = {}
        #: where each of them connected from, and when (see :class:`NodeInfo`)
        self.seen: dict[str, tuple[str, float]] = {}
        self._offers: dict[str, dict[str, CallbackInfo]] = {}  # callback -> node -> info
        self._signatures: dict[CallbackInfo, inspect.Signature] = {}
        self._arities: dict[CallbackInfo, int] = {}
        self._changed = anyio.Event()
        #: why this node will never be connected (the controller refused its first
        #: handshake): every wait and every call raises it
        self.fatal_error: DaffiError | None = None

    # ------------------------------------------------------------------ changes

    def replace(
        self,
        peers: dict[str, dict[str, CallbackInfo]],
        seen: dict[str, tuple[str, float]] | None = None,
    ) -> None:
        """The whole directory changed (a ``Welcome``, or the link was lost: empty)."""
        if seen is not None:
            self.seen = seen
        self.peers = peers
        offers: dict[str, dict[str, CallbackInfo]] = {}
        for node, callbacks in peers.items():
            for cb_name, info in callbacks.items():
                offers.setdefault(cb_name, {})[node] = info
        self._offers = offers
        self._notify()

    def node_up(
        self, name: str, callbacks: Sequence[CallbackInfo], address: str = "", since: float = 0.0
    ) -> bool:
        """Node ``name`` joined or changed what it offers (from ``address``, at ``since``);
        whether it is new."""
        joined = name not in self.peers
        self.seen = {**self.seen, name: (address, since)}
        directory = dict(self.peers)
        directory[name] = {info.name: info for info in callbacks}
        self.replace(directory)
        return joined

    def node_down(self, name: str) -> bool:
        """Node ``name`` left; whether it was known."""
        if name not in self.peers:
            return False
        directory = dict(self.peers)
        del directory[name]
        self.seen = {key: value for key, value in self.seen.items() if key != name}
        self.replace(directory)
        return True

    def fail(self, error: DaffiError) -> None:
        """This node will never connect: wake every wait, which raises ``error``."""
        self.fatal_error = error
        self._notify()

    def _notify(self) -> None:
        event, self._changed = self._changed, anyio.Event()
        event.set()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait, without polling, until ``condition()`` holds after a directory change."""
        while True:
            event = self._changed
            if condition():
                return
            if self.fatal_error is not None:
                raise self.fatal_error
            await event.wait()

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float | None, what: str
    ) -> None:
        """:meth:`wait_until` at most ``timeout`` seconds.

        Raises:
            TimeoutError: ``condition()`` did not hold in time (``what``: what was awaited).
        """
        with anyio.move_on_after(timeout) as scope:
            await self.wait_until(condition)
        if scope.cancelled_caught:
            raise TimeoutError(f"gave up waiting for {what} after {timeout} s")

    # ------------------------------------------------------------------ lookups

    def nodes(self) -> dict[str, NodeInfo]:
        """The other nodes: where they connected from, since when, what they offer."""
        seen = self.seen
        return {
            name: NodeInfo.of(name, callbacks, *seen.get(name, ("", 0.0)))
            for name, callbacks in self.peers.items()
        }

    def offers(self, name: str) -> bool:
        return name in self._offers

    def target_info(self, name: str, receiver: str | None) -> CallbackInfo:
        """What the node a call of ``name`` goes to advertises (any offering node's, when
        the controller picks).

        Raises:
            UnableToFindCandidate: nobody offers ``name`` (or ``receiver`` does not).
        """
        if receiver is not None:
            if receiver == self.name:
                entry = self.registry.get(name)
                info = entry.info if entry is not None else None
            else:
                info = self.peers.get(receiver, {}).get(name)
            if info is None:
                where = (
                    f"process {receiver!r} is not connected"
                    if receiver != self.name and receiver not in self.peers
                    else f"process {receiver!r} has no callback {name!r}"
                )
                raise UnableToFindCandidate(f"cannot call {name!r}: {where}")
            return info
        providers = self._offers.get(name)
        if not providers:
            raise UnableToFindCandidate(
                f"no other process offers callback {name!r} (known callbacks: "
                f"{sorted(self._offers) or 'none'}); use wait_function({name!r}) to wait for it"
            )
        return next(iter(providers.values()))

    def broadcast_targets(self, name: str) -> list[str]:
        """The other nodes offering ``name``, sorted by name.

        Raises:
            UnableToFindCandidate: none does.
        """
        targets = sorted(node for node in self._offers.get(name, {}) if node != self.name)
        if not targets:
            self.target_info(name, None)  # raises the usual error
        return targets

    def _plain_arity(self, info: CallbackInfo) -> int:
        """How many positional arguments surely bind (-1: check with the signature)."""
        arity = self._arities.get(info)
        if arity is None:
            plain = all(
                p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD and not p.has_default
                for p in info.params
            )
            arity = self._arities[info] = len(info.params) if plain else -1
        return arity

    def _signature(self, info: CallbackInfo) -> inspect.Signature:
        sig = self._signatures.get(info)
        if sig is None:
            sig = self._signatures[info] = signature_from_info(info)
        return sig

    # ------------------------------------------------------------------ argument checks

    def prepare(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        receiver: str | None,
        *,
        stream: bool = False,
    ) -> msgspec.Raw:
        """Check that someone offers ``name`` and that the arguments bind; encode them.

        The one place a caller encodes call arguments: msgpack, else (values msgpack cannot
        carry) pickled if this node allows pickle, but never for one item of a stream
        (``stream``). Safe to call from any thread (it only reads the directory mirror).

        Raises:
            UnableToFindCandidate: no node offers ``name`` (or ``receiver`` does not).
            ArgumentsError: the arguments do not fit the callback's signature.
            TypeError: an argument cannot be encoded.
        """
        return self.prepare_info(name, args, kwargs, receiver, stream=stream)[0]

    def prepare_info(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        receiver: str | None,
        *,
        stream: bool = False,
    ) -> tuple[msgspec.Raw, CallbackInfo]:
        """Like :meth:`prepare`, also returning what the target advertises."""
        if self.fatal_error is not None:
            raise self.fatal_error
        info = self.target_info(name, receiver)
        if kwargs or len(args) != self._plain_arity(info):
            check_arguments(self._signature(info), name, args, kwargs)
        try:
            payload = self.codec.encode_args(args, kwargs)
        except PayloadEncodeError:
            if stream or not self.pickling.allowed:
                raise
            payload = self.pickling.dumps_args(name, args, kwargs)
        self.check_size(payload, f"the arguments of {name!r}")
        return msgspec.Raw(payload), info

    def check_size(self, payload: bytes, what: str) -> None:
        """Refuse a payload too large for one frame, before anything is sent.

        A peer closes a connection that sends an oversized frame (every call on it would
        fail), so the sender says it plainly instead.

        Raises:
            PayloadEncodeError: ``payload`` does not fit in ``max_frame_size``.
        """
        overhead = min(FRAME_OVERHEAD, self.max_frame_size // 8)
        if len(payload) > self.max_frame_size - overhead:
            raise PayloadEncodeError(
                f"{what} encode to {len(payload):,} bytes, more than one frame carries "
                f"(max_frame_size {self.max_frame_size:,} bytes, less {overhead:,} for the "
                "envelope); send it in pieces with a stream, or raise max_frame_size on "
                "every process"
            )
