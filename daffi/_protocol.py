"""Wire protocol: the message types every daffi connection speaks.

Every frame is a 4-byte big-endian length followed by one msgpack-encoded envelope. Envelopes
are small frozen ``msgspec.Struct``s in a tagged union (integer tags, array-like, so a frame
costs a few bytes of overhead). User payloads travel as ``msgspec.Raw``: the sender's codec
encoded them once and the controller routes without decoding them.

Schema evolution: only add fields at the end, always with defaults; bump
``PROTOCOL_VERSION`` for anything else. Unknown tags are a protocol error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import msgspec

from daffi.exceptions import ErrorInfo, daffi_error_info

__all__ = [
    "DEFAULT_MAX_CALLBACKS",
    "DEFAULT_MAX_REGISTRATION_SIZE",
    "HANDSHAKE_SLACK",
    "PROTOCOL_VERSION",
    "STREAM_WINDOW",
    "SYSTEM_PREFIX",
    "Attach",
    "Bye",
    "Call",
    "CallbackInfo",
    "Cancel",
    "Challenge",
    "Credit",
    "Error",
    "Hello",
    "Message",
    "NodeDown",
    "NodeUp",
    "ParamInfo",
    "Ping",
    "Pong",
    "Proof",
    "Register",
    "RegistrationLimits",
    "Reject",
    "Result",
    "ScheduleSpec",
    "StreamEnd",
    "StreamItem",
    "Welcome",
    "YieldItem",
    "callbacks_length",
    "decode_callbacks",
    "encode_callbacks",
    "error_reply",
]

PROTOCOL_VERSION = 1


class ParamInfo(msgspec.Struct, frozen=True, array_like=True):
    """One parameter of a callback's portable signature."""

    name: str
    kind: int  # inspect.Parameter kind as an int (0 = positional-only ... 4 = var-keyword)
    has_default: bool = False


class CallbackInfo(msgspec.Struct, frozen=True, array_like=True):
    """What other nodes learn about a callback: enough to check arguments before sending."""

    name: str
    params: tuple[ParamInfo, ...] = ()
    is_async: bool = False
    is_generator: bool = False


class ScheduleSpec(msgspec.Struct, frozen=True, array_like=True):
    """A ``PERIOD`` request carried by a ``Call``: register a schedule instead of running."""

    uuid: str
    kind: str  # "interval" | "at_time" | "cron"
    interval: float | None = None
    at_time: tuple[float, ...] = ()
    cron: str = ""
    timezone: str = ""
    start: float | None = None
    end: float | None = None
    max_runs: int | None = None
    jitter: float = 0.0
    misfire_grace: float | None = None
    coalesce: bool = True
    #: kept in the executor's schedule store, resumed when it restarts
    durable: bool = False


#: Names of the callbacks every node answers without advertising them.
SYSTEM_PREFIX = "__daffi."


class _Msg(msgspec.Struct, frozen=True, array_like=True, tag=True, omit_defaults=True):
    pass


class Hello(_Msg, tag=1, frozen=True):
    """Node -> controller, first frame of a connection."""

    version: int
    name: str
    codecs: tuple[str, ...] = ("msgpack",)
    callbacks: tuple[CallbackInfo, ...] = ()
    #: a fresh nonce for the authentication (see :mod:`daffi._auth`)
    nonce: bytes | None = None
    #: the node has a shared secret (``auth_token``) and expects the controller to prove it
    token: bool = False


class Welcome(_Msg, tag=2, frozen=True):
    """Controller -> node: handshake accepted, with the directory of the other nodes."""

    version: int
    controller: str
    codec: str
    directory: dict[str, tuple[CallbackInfo, ...]] = {}
    #: lets the node open call channels (see :class:`Attach`); None: it may not
    channel_token: bytes | None = None
    #: the controller's proof that it knows the shared secret (None: no token)
    proof: bytes | None = None
    #: the key of this session when there is no shared secret to derive it from (mutual
    #: TLS: it travels inside TLS); None otherwise
    session_key: bytes | None = None
    #: ``{name: (address, joined)}`` of the nodes in ``directory`` (see :class:`NodeUp`)
    seen: dict[str, tuple[str, float]] = {}


class Challenge(_Msg, tag=8, frozen=True):
    """Controller -> node, answering a ``Hello`` when it authenticates (see
    :mod:`daffi._auth`): prove you know the secret, or that you are the session that holds
    your name."""

    nonce: bytes
    #: the controller checks a shared secret (the node must prove it knows it)
    token: bool = False


class Proof(_Msg, tag=9, frozen=True):
    """Node -> controller, answering a ``Challenge``."""

    #: HMAC of both nonces and the name keyed with the shared secret (None: no secret)
    token: bytes | None = None
    #: the same keyed with the node's previous session key (None: no previous session)
    resume: bytes | None = None


class Reject(_Msg, tag=3, frozen=True):
    """Controller -> node: handshake refused; ``kind`` names the daffi exception to raise."""

    reason: str
    kind: str = "InitializationError"


class NodeUp(_Msg, tag=4, frozen=True):
    """A node joined, or changed the callbacks it offers (full list)."""

    name: str
    callbacks: tuple[CallbackInfo, ...] = ()
    #: where it connected from, as the controller sees it ("" if unknown)
    address: str = ""
    #: when it joined (seconds since the epoch, the controller's clock; 0.0 if unknown)
    since: float = 0.0
    #: NATS mode: the seconds between the node's announcements (0.0: not said)
    interval: float = 0.0


class NodeDown(_Msg, tag=5, frozen=True):
    """A node left; ``clean`` tells a goodbye from a lost connection."""

    name: str
    clean: bool = False


class Register(_Msg, tag=6, frozen=True):
    """Node -> controller: the full list of callbacks this node now offers.

    ``callbacks`` is the encoded ``tuple[CallbackInfo, ...]`` (see :func:`encode_callbacks`),
    left undecoded until the controller checked its size and length: a registration's
    objects take about 16 times its bytes.
    """

    callbacks: msgspec.Raw = msgspec.Raw(b"\x90")


class Attach(_Msg, tag=7, frozen=True):
    """Node -> controller, first frame of a call channel: an extra connection of node
    ``name`` that carries only its ``Call`` and ``Cancel`` frames and the replies to them.

    ``token`` is the secret the controller sent that node in its ``Welcome``. The
    controller answers with a ``Welcome`` (empty directory) or a ``Reject``.
    """

    version: int
    name: str
    token: bytes
    #: a *work* channel instead: the controller sends it calls of the node's ``def``
    #: callbacks, one at a time, and the node answers each on it (see daffi._channel)
    work: bool = False


class Call(_Msg, tag=10, frozen=True):
    """Run callback ``name`` with ``payload`` (encoded ``[args, kwargs]``).

    ``src`` is the calling node (checked by the controller), ``receiver`` pins a target, and
    ``timeout`` is the caller's remaining time in seconds: the callee runs under it.
    """

    id: int
    name: str
    payload: msgspec.Raw
    src: str
    receiver: str | None = None
    timeout: float | None = None
    want_result: bool = True
    schedule: ScheduleSpec | None = None
    #: the caller streams the arguments: one ``StreamItem`` per invocation, then ``StreamEnd``
    stream_in: bool = False
    #: the chain of blocking calls this one is part of, when it is made from inside a
    #: ``def`` callback (see ``daffi._executor``): the callee lends it a slot the chain holds
    chain: str = ""
    #: ``payload`` is pickled, not msgpack: only a node with ``allow_pickle`` unpickles it
    #: (see ``daffi._pickling``)
    pickled: bool = False
    #: the caller allows pickle: the callee may pickle a result msgpack cannot carry
    accepts_pickle: bool = False


class Result(_Msg, tag=11, frozen=True):
    """The encoded return value of call ``id`` for node ``dst``."""

    id: int
    dst: str
    payload: msgspec.Raw
    #: ``payload`` is pickled (only ever for a call that said ``accepts_pickle``)
    pickled: bool = False


class Error(_Msg, tag=12, frozen=True):
    """Call ``id`` of node ``dst`` failed."""

    id: int
    dst: str
    error: ErrorInfo


def error_reply(call_id: int, dst: str, kind: str, message: str, process: str) -> Error:
    """The ``Error`` that answers call ``call_id`` of ``dst`` with daffi's exception ``kind``
    (as a router answers: a controller, or a node's link in NATS mode)."""
    return Error(call_id, dst, daffi_error_info(kind, message, process))


class Cancel(_Msg, tag=13, frozen=True):
    """Caller -> callee (through the controller): stop running call ``id`` of ``src``."""

    id: int
    src: str


class StreamItem(_Msg, tag=14, frozen=True):
    """Caller -> callee: the arguments of the next invocation of streaming call ``id``."""

    id: int
    src: str
    payload: msgspec.Raw


class StreamEnd(_Msg, tag=15, frozen=True):
    """Caller -> callee: no more items for streaming call ``id``."""

    id: int
    src: str


class YieldItem(_Msg, tag=16, frozen=True):
    """Callee -> caller: the next value a generator callback produced for call ``id``.

    The end of the stream is the call's ``Result`` (or ``Error``).
    """

    id: int
    dst: str
    payload: msgspec.Raw


class Credit(_Msg, tag=17, frozen=True):
    """Flow control: the receiver of a stream allows ``n`` more items.

    ``to_callee`` tells the direction: the caller granting items of a generator callback
    (routed like ``Cancel``), or the callee granting argument items (routed like ``Result``).
    """

    id: int
    peer: str  # the caller's name in both directions
    n: int
    to_callee: bool = True


#: callbacks one node may offer
DEFAULT_MAX_CALLBACKS = 10_000
#: bytes of one registration frame (a ``Hello`` or a ``Register``)
DEFAULT_MAX_REGISTRATION_SIZE = 1024 * 1024
#: what a connection's first frame may have beyond a registration (name, codecs, ...); a
#: larger first frame closes the connection before it is read in full
HANDSHAKE_SLACK = 64 * 1024


@dataclass(frozen=True)
class RegistrationLimits:
    """How much one node may register: ``max_callbacks`` callbacks, in a frame of at most
    ``max_size`` bytes. What a node offers is kept by the controller and sent to every
    other node, so it is bounded like a frame is."""

    max_callbacks: int = DEFAULT_MAX_CALLBACKS
    max_size: int = DEFAULT_MAX_REGISTRATION_SIZE

    @property
    def max_first_frame(self) -> int:
        """The largest frame a connection may open with (a ``Hello`` or an ``Attach``)."""
        return self.max_size + HANDSHAKE_SLACK

    def refusal(self, count: int, size: int) -> str | None:
        """Why a registration of ``count`` callbacks in ``size`` bytes is refused, said of the
        process that offers them ("offers 11 callbacks, over ..."); None: it is not."""
        if count > self.max_callbacks:
            return (
                f"offers {count} callbacks, over the limit of {self.max_callbacks} per "
                "process (max_callbacks)"
            )
        if size > self.max_size:
            return (
                f"offers callbacks in a registration of {size} bytes, over the limit of "
                f"{self.max_size} bytes (max_registration_size)"
            )
        return None


_callbacks_decoder = msgspec.msgpack.Decoder(tuple[CallbackInfo, ...])


def encode_callbacks(callbacks: tuple[CallbackInfo, ...]) -> msgspec.Raw:
    """``callbacks`` encoded for a :class:`Register`."""
    return msgspec.Raw(msgspec.msgpack.encode(callbacks))


def callbacks_length(raw: msgspec.Raw) -> int:
    """How many callbacks a :class:`Register` lists, read from its array's header alone.

    Raises:
        msgspec.DecodeError: ``raw`` is not a msgpack array.
    """
    data = memoryview(raw)
    if not data:
        raise msgspec.DecodeError("an empty registration")
    first = data[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F
    if first == 0xDC and len(data) >= 3:
        return int.from_bytes(data[1:3], "big")
    if first == 0xDD and len(data) >= 5:
        return int.from_bytes(data[1:5], "big")
    raise msgspec.DecodeError("a registration that is not an array")


def decode_callbacks(raw: msgspec.Raw) -> tuple[CallbackInfo, ...]:
    """The callbacks a :class:`Register` lists.

    Raises:
        msgspec.DecodeError: they do not decode.
        RecursionError: they are nested deeper than msgspec decodes (in a field it skips).
    """
    return _callbacks_decoder.decode(raw)


#: Items a stream's sender may have in flight before the receiver grants more.
STREAM_WINDOW = 64


class Ping(_Msg, tag=20, frozen=True):
    pass


class Pong(_Msg, tag=21, frozen=True):
    pass


class Bye(_Msg, tag=22, frozen=True):
    """A clean goodbye, sent before closing the connection."""

    reason: str = ""


Message = Union[  # noqa: UP007 - msgspec needs a runtime Union object here
    Hello,
    Welcome,
    Challenge,
    Proof,
    Reject,
    Attach,
    NodeUp,
    NodeDown,
    Register,
    Call,
    Result,
    Error,
    Cancel,
    StreamItem,
    StreamEnd,
    YieldItem,
    Credit,
    Ping,
    Pong,
    Bye,
]
