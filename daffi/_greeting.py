"""The node's side of the handshake: what it offers, checked against its own limits, and
the controller's answer.

The controller's side is :mod:`daffi._admission`. A node sends ``Hello`` (its name and the
callbacks it offers) and gets a ``Welcome`` (the directory, and the token of its call
channels) or a ``Reject`` saying why not; later changes of what it offers go in a
``Register``, checked the same way before they are sent.
"""

from __future__ import annotations

import builtins

import anyio

from daffi._frames import encode_frame
from daffi._link import Link
from daffi._protocol import (
    PROTOCOL_VERSION,
    CallbackInfo,
    Hello,
    Register,
    RegistrationLimits,
    Reject,
    Welcome,
    encode_callbacks,
)
from daffi.exceptions import (
    DaffiError,
    InitializationError,
    ProtocolError,
    daffi_error_info,
    exception_from_error_info,
)

__all__ = ["Rejected", "registration", "shake_hands"]


class Rejected(Exception):
    """The controller refused this node (or its own limits did): ``error`` says why."""

    def __init__(self, error: DaffiError) -> None:
        super().__init__(str(error))
        self.error = error


def registration(
    name: str, callbacks: tuple[CallbackInfo, ...], limits: RegistrationLimits, *, first: bool
) -> tuple[bytearray, str | None]:
    """The frame that offers ``callbacks`` (a ``Hello`` if ``first``, else a ``Register``),
    and why this node's own ``limits`` keep it from sending it (None: they do not).

    A registration a controller with the same limits would refuse, or close the connection
    over unread, fails here with the reason; the controller checks its own limits again.
    """
    if first:
        frame = encode_frame(Hello(PROTOCOL_VERSION, name, ("msgpack",), callbacks))
    else:
        frame = encode_frame(Register(encode_callbacks(callbacks)))
    why = limits.refusal(len(callbacks), len(frame))
    if why is not None:
        why = (
            f"process {name!r} {why}; a controller with the same limit refuses it (raise the "
            "limit on this Global and on the controller's)"
        )
    return frame, why


async def shake_hands(
    conn: Link,
    name: str,
    callbacks: tuple[CallbackInfo, ...],
    limits: RegistrationLimits,
    timeout: float,
) -> Welcome:
    """Introduce this node on ``conn``, offering ``callbacks``; the controller's welcome.

    Raises:
        Rejected: the controller refused it, or its own limits did.
        ProtocolError: the controller did not answer within ``timeout`` seconds, or not
            with a ``Welcome`` or ``Reject``.
    """
    hello, why = registration(name, callbacks, limits, first=True)
    if why is not None:
        raise Rejected(InitializationError(why))
    await conn.send_frame(hello)
    try:
        with anyio.fail_after(timeout):
            answer, _ = await conn.receive()
    except builtins.TimeoutError as exc:
        raise ProtocolError("the controller did not answer the handshake") from exc
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        raise Rejected(
            InitializationError(
                "the controller closed the connection without answering the handshake: it "
                "may require TLS (give this node ssl_ca=... or a tls:// address) or be no "
                "daffi controller; its log says why"
            )
        ) from None
    if isinstance(answer, Reject):
        raise Rejected(exception_from_error_info(daffi_error_info(answer.kind, answer.reason)))
    if not isinstance(answer, Welcome):
        raise ProtocolError(f"expected Welcome from the controller, got {answer!r}")
    return answer
