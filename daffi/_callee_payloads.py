"""The callee's side of payloads: the arguments a call brings and the values it sends back.

Every path a call takes on the callee (a worker thread, the work channel's thread, a served
channel's thread, the in-process controller's hand-over, a task, a stream) decodes its
arguments and encodes its results here, which applies the pickle rule of
:mod:`daffi._pickling` and the frame size limit: :meth:`Payloads.arguments` and
:meth:`Payloads.reply` for a call, :meth:`Payloads.item_arguments` and :meth:`Payloads.encode`
for the items of a stream (msgpack only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from daffi._codec import PayloadEncodeError
from daffi._pickling import Pickling
from daffi._protocol import Call, Result
from daffi.exceptions import unsendable_result
from daffi.registry._store import CallbackEntry

if TYPE_CHECKING:
    from daffi._codec import PayloadCodec

__all__ = ["Payloads", "SizeLimit"]


class SizeLimit(Protocol):
    def check_size(self, payload: bytes, what: str) -> None:
        """Raise ``PayloadEncodeError`` if ``payload`` does not fit in a frame."""
        ...


class Payloads:
    """Decoding and encoding for one node's callee side.

    Args:
        codec: the node's payload codec.
        pickling: the node's side of the pickle rule (``allow_pickle``).
        limit: the node, whose ``check_size`` raises ``PayloadEncodeError`` if a payload does
            not fit in a frame (looked up at each use).
    """

    __slots__ = ("codec", "limit", "pickling")

    def __init__(self, codec: PayloadCodec, pickling: Pickling, limit: SizeLimit) -> None:
        self.codec = codec
        self.pickling = pickling
        self.limit = limit

    def arguments(self, msg: Call, entry: CallbackEntry | None) -> tuple[list[Any], dict[str, Any]]:
        """The arguments ``msg`` carries, in ``entry``'s annotated types (if given).

        Pickled arguments (``Call.pickled``) are unpickled only if this node allows pickle,
        and are not structured: they are the objects the caller sent.

        Raises:
            GlobalContextError: they are pickled and this node does not allow pickle
                (nothing was unpickled).
            PayloadDecodeError: they do not decode.
            ArgumentTypeError: they do not match ``entry``'s annotations.
        """
        if msg.pickled:
            return self.pickling.loads_args(msg)
        args, kwargs = self.codec.decode_args(msg.payload)
        if entry is not None and entry.structure_args is not None:
            args, kwargs = entry.structure_args(args, kwargs)
        return args, kwargs

    def item_arguments(
        self, entry: CallbackEntry, payload: msgspec.Raw
    ) -> tuple[list[Any], dict[str, Any]]:
        """The arguments of one item streamed into ``entry`` (msgpack only), in its
        annotated types."""
        args, kwargs = self.codec.decode_args(payload)
        if entry.structure_args is not None:
            args, kwargs = entry.structure_args(args, kwargs)
        return args, kwargs

    def encode(self, value: Any, msg: Call, what: str = "the result of") -> msgspec.Raw:
        """``value`` encoded with msgpack for the caller of ``msg`` (a stream's item: streams
        are msgpack only), refused if too large for a frame.

        Raises:
            TypeError: ``value`` cannot be encoded (see :func:`unsendable_result`).
        """
        try:
            payload = self.codec.encode_value(value)
        except PayloadEncodeError as exc:
            raise unsendable_result(f"{what} {msg.name!r}", exc) from exc
        self.limit.check_size(payload, f"{what} {msg.name!r}")
        return msgspec.Raw(payload)

    def reply(self, value: Any, msg: Call) -> Result:
        """The ``Result`` of ``msg``: ``value`` encoded with msgpack or, when msgpack cannot
        carry it, pickled if both this node and the caller allow pickle (see
        :meth:`Pickling.dumps_result`); refused if too large for a frame.

        Raises:
            TypeError: ``value`` cannot be encoded (see :func:`unsendable_result`).
            PayloadEncodeError: ``value`` is too large for a frame.
        """
        try:
            payload = self.codec.encode_value(value)
        except PayloadEncodeError as exc:
            try:
                payload = self.pickling.dumps_result(value, msg, exc)
            except PayloadEncodeError as final:
                raise unsendable_result(f"the result of {msg.name!r}", final) from final
            self.limit.check_size(payload, f"the result of {msg.name!r}")
            return Result(msg.id, msg.src, msgspec.Raw(payload), pickled=True)
        self.limit.check_size(payload, f"the result of {msg.name!r}")
        return Result(msg.id, msg.src, msgspec.Raw(payload))
