"""Who may join, and the directory changes that follow: the controller's checks of a
connection's first frame, and the one-step join, change and leave.

A node joins with ``Hello`` and, unless it lives in the controller's process, gets a
channel token in its ``Welcome``; its call and work channels then attach with ``Attach`` and
that token (see :mod:`daffi._channel`). Nothing is routed for a connection before it passed
these checks.

Every change of the directory (:func:`admit`, :func:`reoffer`, :func:`retire`) is one step
with no ``await``: the change and its announcement to every other node (:func:`announce`,
which queues without waiting), so each change reaches exactly the nodes in the directory at
that moment, in order, and after their ``Welcome``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field

import anyio
import msgspec

from daffi._auth import NONCE_SIZE, Guard, new_nonce, proof, session_key, valid
from daffi._frames import FrameTooLarge, encode_frame
from daffi._link import Link, Outlet
from daffi._protocol import (
    HANDSHAKE_SLACK,
    PROTOCOL_VERSION,
    Attach,
    CallbackInfo,
    Challenge,
    Hello,
    Message,
    NodeDown,
    NodeUp,
    Proof,
    Register,
    RegistrationLimits,
    Reject,
    Welcome,
    callbacks_length,
    decode_callbacks,
)
from daffi._router import Router
from daffi._tls import looks_like_tls
from daffi.exceptions import ProtocolError

__all__ = [
    "Peer",
    "Proven",
    "admit",
    "announce",
    "authenticate",
    "first_message",
    "join",
    "may_attach",
    "name_taken",
    "new_channel_token",
    "refusal",
    "reoffer",
    "retire",
]


logger = logging.getLogger("daffi.controller")

_AUTH = "AuthenticationError"


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
    #: stream frames it sent for calls it is not a party of (see daffi._stream_relay)
    strays: int = 0
    #: the key of its session when joins are authenticated (its name is held for it when
    #: its link is lost: see daffi._auth)
    session_key: bytes | None = None
    #: where it connected from, as this controller sees it (for ``daffi nodes``)
    address: str = ""
    #: when it joined (seconds since the epoch)
    since: float = 0.0


@dataclass(frozen=True)
class Proven:
    """What a node proved in its handshake (nothing, for an unauthenticated join)."""

    #: the key of its session (None: joins are not authenticated)
    key: bytes | None = None
    #: the controller's proof for the node's ``Welcome``
    proof: bytes | None = None
    #: the session key to send in the ``Welcome`` (no secret to derive it from)
    sent_key: bytes | None = None


def refusal(
    msg: Hello,
    controller: str,
    *,
    size: int,
    limits: RegistrationLimits,
) -> Reject | None:
    """Why controller ``controller`` refuses the node saying ``msg`` in a frame of ``size``
    bytes (None: it may join, as far as these checks go: authentication is
    :func:`authenticate`'s, a name already in use :func:`name_taken`'s).
    """
    if msg.version != PROTOCOL_VERSION:
        return Reject(
            f"protocol version {msg.version} is not supported by controller {controller!r} "
            f"(it speaks version {PROTOCOL_VERSION}); upgrade daffi on both ends",
            "ProtocolError",
        )
    if not msg.name:
        return Reject("process_name must not be empty", "InitializationError")
    if "msgpack" not in msg.codecs:
        return Reject(
            f"no common payload codec (node offers {list(msg.codecs)}, controller "
            "speaks ['msgpack'])",
            "ProtocolError",
        )
    why = limits.refusal(len(msg.callbacks), size)
    if why is not None:
        return Reject(f"controller {controller!r} refused process {msg.name!r}: it {why}")
    return None


def name_taken(name: str) -> Reject:
    """The refusal of a node asking for ``name``, which a connected node already has."""
    return Reject(
        f"process name {name!r} is already used by a connected node; "
        "every process needs a unique process_name",
        "InitializationError",
    )


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


async def first_message(conn: Link, timeout: float) -> tuple[Message, int] | None:
    """A new connection's first message and the size of its frame (None: it sent none
    within ``timeout`` seconds).

    Raises:
        ProtocolError: it does not decode, or is larger than the connection allows before a
            handshake (a registration: see :class:`RegistrationLimits`).
    """
    with anyio.move_on_after(timeout) as scope:
        try:
            msg, frame = await conn.receive()
        except FrameTooLarge as exc:
            if looks_like_tls(exc.size):
                raise ProtocolError(
                    "a TLS client connected to this plaintext controller (give the controller "
                    "ssl_certificate and ssl_key to serve TLS); closed"
                ) from None
            raise ProtocolError(
                f"a connection opened with a frame of {exc.size} bytes, over the limit of "
                f"{conn.max_frame_size} bytes for a handshake (max_registration_size + "
                f"{HANDSHAKE_SLACK // 1024} KiB); closed"
            ) from None
    if scope.cancelled_caught:
        logger.warning("a connection sent no handshake within %s s; closed", timeout)
        return None
    return msg, len(frame)


async def join(
    conn: Link,
    msg: Message,
    size: int,
    router: Router[Peer],
    *,
    controller: str,
    limits: RegistrationLimits,
    guard: Guard | None = None,
    certificate: frozenset[str] | None = None,
    timeout: float = 10.0,
) -> Peer | None:
    """The node that said ``msg`` (a frame of ``size`` bytes) on ``conn``, joined; or None:
    it was refused (and told why), or its link broke.

    With an active ``guard`` (a shared secret or mutual TLS), a node from another process
    first proves who it is (:func:`authenticate`); ``certificate`` holds the names of its
    client certificate, if any.

    Raises:
        ProtocolError: ``msg`` is not a ``Hello``, or the authentication exchange does not
            follow the protocol (or takes longer than ``timeout``).
    """
    if not isinstance(msg, Hello):
        raise ProtocolError(f"expected Hello as the first message, got {type(msg).__name__}")
    origin = conn.peer
    conn.peer = repr(msg.name)
    reject = refusal(msg, controller, size=size, limits=limits)
    proven = Proven()
    if reject is None and guard is not None and guard.active and not conn.in_process:
        outcome = await authenticate(
            conn, msg, guard, certificate, controller=controller, origin=origin, timeout=timeout
        )
        if isinstance(outcome, Reject):
            reject = outcome
        else:
            proven = outcome
    if reject is None and msg.name in router.directory.peers:
        reject = name_taken(msg.name)
    if reject is not None:
        logger.warning("refused node %r (from %s): %s", msg.name, origin, reject.reason)
        with contextlib.suppress(anyio.BrokenResourceError):
            await conn.send(reject)
        return None
    # A node in this process has no use for call channels.
    token = None if conn.in_process else new_channel_token()
    address = "in-process" if conn.in_process else origin
    peer = Peer(msg.name, conn, channel_token=token, session_key=proven.key, address=address)
    peer.callbacks = {info.name: info for info in msg.callbacks}
    if guard is not None:
        guard.held.release(msg.name)
    # No await from the name check above to the join (two nodes cannot take one name).
    admitted = admit(
        router,
        peer,
        controller,
        proof=proven.proof,
        session_key=proven.sent_key,
    )
    return peer if admitted else None


async def authenticate(
    conn: Link,
    msg: Hello,
    guard: Guard,
    certificate: frozenset[str] | None,
    *,
    controller: str,
    origin: str,
    timeout: float,
) -> Reject | Proven:
    """Challenge the node that said ``msg``: why it is refused, or what it proved.

    Raises:
        ProtocolError: a malformed nonce, no ``Proof`` in answer, or none within ``timeout``.
    """
    name = msg.name

    def refused(why: str) -> Reject:
        return Reject(f"controller {controller!r} refused process {name!r}: {why}", _AUTH)

    secret = guard.secret
    if secret is not None and not msg.token:
        return refused(
            "it requires an auth token (auth_token or DAFFI_AUTH_TOKEN), and the process has none"
        )
    if msg.nonce is None or len(msg.nonce) != NONCE_SIZE:
        raise ProtocolError(f"node {name!r} sent no valid nonce in its Hello")
    if guard.bind_names and (certificate is None or name not in certificate):
        return refused(
            f"its client certificate names {sorted(certificate or ())}, not {name!r} "
            "(ssl_bind_names: a node joins under a name its certificate carries)"
        )
    nonce = new_nonce()
    await conn.send(Challenge(nonce, token=secret is not None))
    with anyio.move_on_after(timeout) as scope:
        answer, _ = await conn.receive()
    if scope.cancelled_caught:
        raise ProtocolError(f"node {name!r} did not answer the authentication challenge")
    if not isinstance(answer, Proof):
        raise ProtocolError(f"expected Proof from node {name!r}, got {type(answer).__name__}")
    if secret is not None and not valid(
        proof(secret, b"node", msg.nonce, nonce, name), answer.token
    ):
        return refused("its auth token is wrong (it differs from the controller's)")
    why = guard.held.refusal(name, answer.resume, msg.nonce, nonce, anyio.current_time())
    if why is not None:
        logger.warning("refused an impostor of node %r from %s: %s", name, origin, why)
        return refused(why)
    if secret is not None:
        return Proven(
            key=session_key(secret, msg.nonce, nonce, name),
            proof=proof(secret, b"controller", msg.nonce, nonce, name),
        )
    key = new_nonce()  # mutual TLS without a token: the key travels inside TLS
    return Proven(key=key, sent_key=key)


def admit(
    router: Router[Peer],
    peer: Peer,
    controller: str,
    *,
    proof: bytes | None = None,
    session_key: bytes | None = None,
) -> bool:
    """Let ``peer`` join (its name was checked just before, with no await since): its
    ``Welcome`` with the directory of this moment is queued first on its link, then it joins
    the directory and the others are told. False if its link broke meanwhile."""
    others = router.directory.peers.values()
    directory = {other.name: tuple(other.callbacks.values()) for other in others}
    peer.since = time.time()
    welcome = Welcome(
        PROTOCOL_VERSION,
        controller,
        "msgpack",
        directory,
        peer.channel_token,
        proof=proof,
        session_key=session_key,
        seen={other.name: (other.address, other.since) for other in others},
    )
    try:
        peer.conn.send_threadsafe(welcome)
    except anyio.BrokenResourceError:
        return False
    router.join(peer)
    up = NodeUp(peer.name, tuple(peer.callbacks.values()), peer.address, peer.since)
    announce(router, up, exclude=peer.name)
    return True


def reoffer(
    router: Router[Peer],
    peer: Peer,
    msg: Register,
    size: int,
    *,
    limits: RegistrationLimits,
    controller: str,
) -> None:
    """``peer`` now offers the callbacks of ``msg`` (a frame of ``size`` bytes), and the
    others are told; or, over ``limits``, it keeps its earlier offer and is told why.

    Raises:
        ProtocolError: the callbacks do not decode.
    """
    try:
        why = limits.refusal(callbacks_length(msg.callbacks), size)
        callbacks = decode_callbacks(msg.callbacks) if why is None else ()
    except (msgspec.DecodeError, RecursionError, MemoryError) as exc:
        raise ProtocolError(
            f"node {peer.name!r} sent a registration that does not decode: {exc!r}"
        ) from None
    if why is not None:
        logger.warning("refused the callbacks node %r offers: it %s", peer.name, why)
        reason = f"controller {controller!r} refused the callbacks this process offers: it {why}"
        with contextlib.suppress(anyio.BrokenResourceError):
            peer.conn.send_threadsafe(Reject(f"{reason}; it still offers the ones before"))
        return
    old, peer.callbacks = peer.callbacks, {info.name: info for info in callbacks}
    router.offer(peer, old)
    announce(router, NodeUp(peer.name, callbacks, peer.address, peer.since), exclude=peer.name)


def retire(router: Router[Peer], peer: Peer) -> None:
    """``peer`` leaves the directory; the others are told (before a node of the same name
    can join again)."""
    router.leave(peer)
    announce(router, NodeDown(peer.name, peer.said_bye), exclude=peer.name)


def announce(router: Router[Peer], msg: Message, *, exclude: str) -> None:
    """Queue ``msg`` for every node in the directory but ``exclude``, without waiting."""
    frame = encode_frame(msg)
    for other in list(router.directory.peers.values()):
        if other.name != exclude:
            # A broken peer is dropped by its own handler.
            with contextlib.suppress(anyio.BrokenResourceError):
                other.conn.send_frame_threadsafe(frame)
