"""The node's side of the handshake: what it offers, checked against its own limits, and
the controller's answer.

The controller's side is :mod:`daffi._admission`. A node sends ``Hello`` (its name and the
callbacks it offers) and gets a ``Welcome`` (the directory, and the token of its call
channels) or a ``Reject`` saying why not; a controller that authenticates asks for a
``Proof`` first (a ``Challenge``: see :mod:`daffi._auth`); later changes of what it offers go in a
``Register``, checked the same way before they are sent.

A server that answers with something other than daffi's frames (an HTTP server's error page,
a TLS alert) is refused as soon as its first bytes arrive, with what it said.
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import dataclass, field

import anyio

from daffi._auth import NONCE_SIZE, NodeCredentials, new_nonce, proof, session_key, valid
from daffi._cipher import TlsAlert
from daffi._frames import MalformedFrame, encode_frame
from daffi._link import Link
from daffi._protocol import (
    PROTOCOL_VERSION,
    CallbackInfo,
    Challenge,
    Hello,
    Message,
    Proof,
    Register,
    RegistrationLimits,
    Reject,
    Welcome,
    encode_callbacks,
)
from daffi.exceptions import (
    AuthenticationError,
    DaffiError,
    InitializationError,
    ProtocolError,
    daffi_error_info,
    exception_from_error_info,
)

__all__ = ["Introduction", "Rejected", "registration", "warn_unreachable"]

logger = logging.getLogger("daffi.node")


class Rejected(Exception):
    """The controller refused this node (or its own limits did): ``error`` says why."""

    def __init__(self, error: DaffiError) -> None:
        super().__init__(str(error))
        self.error = error


def registration(
    name: str,
    callbacks: tuple[CallbackInfo, ...],
    limits: RegistrationLimits,
    *,
    first: bool,
    nonce: bytes | None = None,
    token: bool = False,
) -> tuple[bytearray, str | None]:
    """The frame that offers ``callbacks`` (a ``Hello`` if ``first``, else a ``Register``),
    and why this node's own ``limits`` keep it from sending it (None: they do not).

    A registration a controller with the same limits would refuse, or close the connection
    over unread, fails here with the reason; the controller checks its own limits again.
    """
    if first:
        frame = encode_frame(
            Hello(PROTOCOL_VERSION, name, ("msgpack",), callbacks, nonce=nonce, token=token)
        )
    else:
        frame = encode_frame(Register(encode_callbacks(callbacks)))
    why = limits.refusal(len(callbacks), len(frame))
    if why is not None:
        why = (
            f"process {name!r} {why}; a controller with the same limit refuses it (raise the "
            "limit on this Global and on the controller's)"
        )
    return frame, why


@dataclass
class Introduction:
    """How a node introduces itself to its controller, on every (re)connection.

    Attributes:
        name: the node's name.
        limits: what it may offer (its own check, before a registration is sent).
        credentials: the shared secret, and the key of its last session (see
            :mod:`daffi._auth`).
        timeout: seconds the controller has to answer each step of the handshake.
        closed: what a controller closing the link before it answers most likely means
            (None: it requires TLS, or is no daffi controller).
        connect_timeout: the Global's ``connect_timeout``: how long it waits for its first
            handshake (None: for ever); the warning about a first connection that fails
            says so.
    """

    name: str
    limits: RegistrationLimits = field(default_factory=RegistrationLimits)
    credentials: NodeCredentials = field(default_factory=NodeCredentials)
    timeout: float = 10.0
    closed: DaffiError | None = None
    connect_timeout: float | None = None

    def offer(self, callbacks: tuple[CallbackInfo, ...]) -> tuple[bytearray, str | None]:
        """The ``Register`` frame offering ``callbacks`` after a change, and why this node's
        own limits keep it from sending it (None: they do not)."""
        return registration(self.name, callbacks, self.limits, first=False)

    async def shake_hands(
        self, conn: Link, callbacks: tuple[CallbackInfo, ...], where: str = "its address"
    ) -> Welcome:
        """Introduce this node on ``conn``, offering ``callbacks``; the controller's welcome.

        ``where`` names the controller's address in errors.

        With a secret, the node proves it knows it and requires the controller to prove it
        too; with a previous session's key, it proves it is that session (see
        :mod:`daffi._auth`). A link in the controller's process needs neither.

        Raises:
            Rejected: the controller refused it, its own limits did, the controller failed
                to authenticate itself, or the server at ``where`` answered with bytes that
                are plainly not daffi's protocol (an ``InitializationError`` quoting them).
            ProtocolError: the controller did not answer within ``timeout`` seconds, or not
                with a ``Welcome``, ``Challenge`` or ``Reject``.
        """
        name, credentials = self.name, self.credentials
        secret = None if conn.in_process else credentials.secret
        nonce = new_nonce()
        hello, why = registration(
            name, callbacks, self.limits, first=True, nonce=nonce, token=secret is not None
        )
        if why is not None:
            raise Rejected(InitializationError(why))
        await conn.send_frame(hello)
        answer = await _answer(conn, self.timeout, self.closed, where)
        challenge = answer if isinstance(answer, Challenge) else None
        if challenge is not None:
            if conn.in_process or len(challenge.nonce) != NONCE_SIZE:
                raise ProtocolError("the controller sent a malformed authentication challenge")
            if secret is not None and not challenge.token:
                raise Rejected(_untrusted_controller())
            await conn.send(
                Proof(
                    proof(secret, b"node", nonce, challenge.nonce, name) if secret else None,
                    proof(credentials.session_key, b"resume", nonce, challenge.nonce, name)
                    if credentials.session_key
                    else None,
                )
            )
            answer = await _answer(conn, self.timeout, self.closed, where)
        if isinstance(answer, Reject):
            raise Rejected(exception_from_error_info(daffi_error_info(answer.kind, answer.reason)))
        if not isinstance(answer, Welcome):
            raise ProtocolError(f"expected Welcome from the controller, got {answer!r}")
        if challenge is None:
            if secret is not None:
                raise Rejected(_untrusted_controller())
            return answer
        if secret is not None:
            expected = proof(secret, b"controller", nonce, challenge.nonce, name)
            if not valid(expected, answer.proof):
                raise Rejected(
                    AuthenticationError(
                        "this process refused the controller: it could not prove it knows the "
                        "auth token (its token differs, or it is not the controller you meant)"
                    )
                )
            credentials.session_key = session_key(secret, nonce, challenge.nonce, name)
        else:
            credentials.session_key = answer.session_key
        return answer


async def _answer(conn: Link, timeout: float, closed: DaffiError | None, where: str) -> Message:
    try:
        with anyio.fail_after(timeout):
            answer, _ = await conn.receive()
    except builtins.TimeoutError as exc:
        raise ProtocolError("the controller did not answer the handshake") from exc
    except MalformedFrame as exc:
        foreign = _not_daffi(exc.head, where)
        if foreign is None:
            raise  # (its first bytes may be a frame of another daffi version)
        raise Rejected(foreign) from None
    except TlsAlert as exc:
        # The controller refused this node's certificate (or its lack of one).
        raise Rejected(closed if closed is not None else AuthenticationError(str(exc))) from None
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        raise Rejected(
            closed
            if closed is not None
            else InitializationError(
                "the controller closed the connection without answering the handshake: it "
                "may require TLS (give this node ssl_ca=... or a tls:// address) or be no "
                "daffi controller; its log says why"
            )
        ) from None
    return answer


#: the first byte of every frame's envelope: a msgpack array (every message is one)
_ENVELOPE_MARKERS = frozenset({*range(0x90, 0xA0), 0xDC, 0xDD})
#: the first byte of a TLS record (change_cipher_spec, alert, handshake, application data),
#: followed by the major version, 3
_TLS_RECORD_TYPES = frozenset({0x14, 0x15, 0x16, 0x17})


def _not_daffi(head: bytes, where: str) -> InitializationError | None:
    """The error for a server whose answer begins with ``head``, bytes that are no valid
    frame, when they are plainly not daffi's protocol; None when they may be a frame."""
    if len(head) >= 2 and head[0] in _TLS_RECORD_TYPES and head[1] == 3:
        return InitializationError(
            f"the server at {where} answered with a TLS record, not the daffi protocol in "
            "plaintext: if it is a daffi controller, it requires TLS (give this node "
            "ssl_ca=... or a tls:// address)"
        )
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    if line and all(0x20 <= byte < 0x7F or byte == 0x09 for byte in line):
        said = repr(line.decode("ascii"))  # e.g. an HTTP server's status line
    elif len(head) > 4 and head[4] not in _ENVELOPE_MARKERS:
        said = f"the bytes {head[:16].hex(' ')}"
    else:
        return None
    return InitializationError(
        f"the server at {where} answered with {said}, not the daffi protocol: is this a "
        "daffi controller?"
    )


def _untrusted_controller() -> AuthenticationError:
    return AuthenticationError(
        "this process refused the controller: it does not check auth tokens, and this "
        "process has one (auth_token or DAFFI_AUTH_TOKEN), so the controller cannot prove "
        "it is the one meant; give the controller the same auth_token"
    )


def warn_unreachable(
    name: str,
    where: str,
    exc: OSError,
    failures: int,
    connected_once: bool,
    connect_timeout: float | None,
) -> None:
    """Log that node ``name`` could not reach its controller at ``where`` (``failures`` times
    in a row). The first failure before any connection is a WARNING at once that says for how
    long the node tries: whoever waits for it (the Global's constructor) learns nothing before
    then. A first failure after a lost connection is a WARNING; the next ones are DEBUG."""
    if failures > 1:
        logger.debug("node %r: still not reachable: %s", name, exc)
        return
    if connected_once:
        logger.warning(
            "node %r: controller at %s is not reachable (%s); retrying with backoff",
            name,
            where,
            exc,
        )
        return
    if connect_timeout is None:
        patience = "until it is up (connect_timeout=None: no limit)"
    else:
        patience = (
            f"for up to {connect_timeout:g} s (connect_timeout), then gives up with "
            "InitializationError; Global(connect_timeout=...) changes how long"
        )
    nothing = isinstance(exc, ConnectionRefusedError | FileNotFoundError)
    logger.warning(
        "node %r: controller at %s is not reachable (%s)%s; is it running? This node "
        "keeps trying %s",
        name,
        where,
        exc,
        ": nothing listens there" if nothing else "",
        patience,
    )
