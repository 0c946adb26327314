"""Who may join: the shared secret proven by challenge and response, and names bound to
sessions.

The handshake with authentication (the node's side is :mod:`daffi._greeting`, the
controller's :mod:`daffi._admission`)::

    node                                          controller
    Hello(name, ..., nonce N, token: has one) -->
                                              <-- Challenge(nonce C, token: checks one)
    Proof(node proof, resume proof)           -->
                                              <-- Welcome(controller proof, ...) | Reject

* Proofs are HMAC-SHA256 over both fresh nonces and the node's name, keyed with the shared
  secret, one per direction (``node`` and ``controller`` are part of the message, so one
  side's proof is never the other's); they are compared in constant time. The secret never
  travels, and a recorded proof is worth nothing on the next connection (new nonces).
* Either side refuses the other: the controller a node without the token or with another
  one, the node a controller that does not check tokens when it has one, or whose proof is
  wrong.
* **Names bound to sessions.** With a token or mutual TLS, each join makes a session key:
  derived from the secret and the nonces when there is a token (it never travels either),
  else chosen by the controller and sent in the ``Welcome`` (inside TLS). When a node's
  link is lost without a ``Bye``, the controller holds its name for that session for
  :data:`HOLD_INTERVALS` heartbeat intervals: a ``Hello`` under that name must carry a
  resume proof (HMAC of the nonces keyed with the old session key), so an impostor cannot
  take the name while its owner reconnects.
* **Names bound to certificates** (``ssl_bind_names=True`` on a mutual TLS controller): a
  node joins only under a name its client certificate carries
  (:func:`daffi._tls.certificate_names`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

__all__ = [
    "HOLD_INTERVALS",
    "NONCE_SIZE",
    "Guard",
    "HeldNames",
    "NodeCredentials",
    "new_nonce",
    "proof",
    "session_key",
    "valid",
]

#: bytes of every nonce
NONCE_SIZE = 32
#: a disconnected node's name is held for its session this many heartbeat intervals
HOLD_INTERVALS = 3

_LABEL = b"daffi-auth-1"


def new_nonce() -> bytes:
    """A fresh random nonce."""
    return os.urandom(NONCE_SIZE)


def proof(key: bytes, role: bytes, node_nonce: bytes, controller_nonce: bytes, name: str) -> bytes:
    """The HMAC one side sends: ``role`` is ``b"node"``, ``b"controller"`` or ``b"resume"``.

    The nonces have a fixed size and come before the name, so no two different inputs give
    the same message.
    """
    message = b"|".join((_LABEL, role, node_nonce, controller_nonce)) + b"|" + name.encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def session_key(secret: bytes, node_nonce: bytes, controller_nonce: bytes, name: str) -> bytes:
    """The key of the session these nonces started, derived from the shared secret."""
    return proof(secret, b"session", node_nonce, controller_nonce, name)


def valid(expected: bytes, given: bytes | None) -> bool:
    """``given`` is ``expected``, compared in constant time."""
    return given is not None and hmac.compare_digest(expected, given)


@dataclass
class NodeCredentials:
    """What a node proves with: the shared secret, and the key of its last session (to
    reclaim its name when it reconnects)."""

    secret: bytes | None = None
    #: the key of the session this node had last (None: none yet, or not authenticated)
    session_key: bytes | None = None


@dataclass
class _Held:
    key: bytes
    since: float
    until: float


@dataclass
class HeldNames:
    """The controller's table of names held for sessions that lost their link.

    Times are the event loop's clock (``anyio.current_time()``), given by the caller.
    """

    #: seconds a name stays held after its node's link is lost
    hold: float
    _held: dict[str, _Held] = field(default_factory=dict)

    def hold_for(self, name: str, key: bytes, now: float) -> None:
        """Hold ``name`` for the session whose key is ``key``, from ``now``."""
        self._expire(now)
        self._held[name] = _Held(key, now, now + self.hold)

    def release(self, name: str) -> None:
        """``name`` is free again (its session came back, or left with a ``Bye``)."""
        self._held.pop(name, None)

    def refusal(
        self,
        name: str,
        resume: bytes | None,
        node_nonce: bytes,
        controller_nonce: bytes,
        now: float,
    ) -> str | None:
        """Why a node claiming ``name`` with ``resume`` may not have it (None: it may: the
        name is not held, or the resume proof shows it is the session that held it)."""
        self._expire(now)
        held = self._held.get(name)
        if held is None:
            return None
        if valid(proof(held.key, b"resume", node_nonce, controller_nonce, name), resume):
            return None
        return (
            f"process name {name!r} belongs to a session that lost its link "
            f"{now - held.since:.1f} s ago and may come back; only that session can reclaim "
            f"it until it is released in {held.until - now:.1f} s"
        )

    def _expire(self, now: float) -> None:
        for name in [name for name, held in self._held.items() if held.until <= now]:
            del self._held[name]


@dataclass
class Guard:
    """What a controller requires of the nodes that join: the shared secret, mutual TLS,
    names bound to certificates, and its table of held names."""

    secret: bytes | None = None
    #: its listeners require client certificates
    mutual_tls: bool = False
    #: a node's name must be one its client certificate carries
    bind_names: bool = False
    held: HeldNames = field(default_factory=lambda: HeldNames(15.0))

    @property
    def active(self) -> bool:
        """Joins are authenticated (a token or mutual TLS): names are bound to sessions."""
        return self.secret is not None or self.mutual_tls
