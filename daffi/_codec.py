"""User-payload codec: msgspec msgpack on the wire, a cattrs converter for annotated types.

Call arguments and return values are encoded once by the sender and travel inside protocol
envelopes as raw bytes; the controller never decodes them. Arguments are one msgpack array
``[args, kwargs]``; a return value (or one stream item) is a single msgpack value.

Encoding accepts everything msgspec encodes natively (``None``, ``bool``, ``int`` within 64 bits,
``float``, ``str``, ``bytes``/``bytearray``/``memoryview``, ``list``/``tuple``/``set``/
``frozenset``, ``dict``, dataclasses, attrs classes, ``msgspec.Struct``, enums, ``datetime``/
``date``/``time``/``timedelta``, ``UUID``, ``Decimal``, named tuples, typed dicts) and, for any
other type, whatever the codec's cattrs converter can unstructure (e.g. ``pathlib.Path``, or any
type you register an unstructure hook for with :func:`daffi.codec.register_unstructure_hook`).
Anything else raises :class:`PayloadEncodeError` (a ``TypeError``) before a byte is sent,
unless both ends of a call allow pickle (see :mod:`daffi._pickling`).

Without annotations the receiver gets the plain msgspec decoding of what was sent:

==========================================  ===================================================
Sent                                        Received
==========================================  ===================================================
None, bool, int, float, str, bytes          the same
bytearray, memoryview                       bytes
list, tuple, set, frozenset, named tuple    list
dict, typed dict                            dict
dataclass, attrs class, msgspec.Struct      dict of field name to (decoded) value
enum member                                 its value (str or int)
timezone-aware datetime                     datetime, same instant, tzinfo UTC
naive datetime, date, time, timedelta       ISO 8601 str (e.g. ``"2024-05-01T12:00:00"``,
                                            ``"2024-05-01"``, ``"12:00:00"``, ``"PT5S"``)
UUID, Decimal                               str
==========================================  ===================================================

When a callback's parameters (or a fetcher's return) are annotated, the values are structured
into the annotated types: see :mod:`daffi._structure` (:func:`make_arg_structurer` and
:func:`make_return_structurer`, re-exported here).
"""

from __future__ import annotations

import typing
from typing import Any, ClassVar

import msgspec

from daffi._converter import make_converter
from daffi._structure import (
    PayloadStructureError,
    make_arg_structurer,
    make_return_structurer,
    mismatch_message,
)

if typing.TYPE_CHECKING:
    import cattrs

# PayloadStructureError, make_arg_structurer and make_return_structurer live in
# daffi._structure; they are part of the codec's interface.
__all__ = [
    "PayloadCodec",
    "PayloadDecodeError",
    "PayloadEncodeError",
    "PayloadStructureError",
    "make_arg_structurer",
    "make_return_structurer",
]

_ENCODE_FIX = (
    "make it a dataclass, attrs class or msgspec.Struct, register hooks for it with "
    "daffi.codec.register_unstructure_hook and daffi.codec.register_structure_hook, or let "
    "calls and results (not streams) carry it pickled with Global(allow_pickle=True) on both "
    "ends"
)


class PayloadEncodeError(TypeError):
    """A value cannot be encoded by the payload codec (nothing was sent)."""


class PayloadDecodeError(ValueError):
    """Bytes received as a payload are not a valid msgpack payload of the expected shape."""


class _Unencodable(TypeError):
    """Raised from the encoder hook; carries the type that neither msgspec nor cattrs handle."""

    def __init__(self, tp: type) -> None:
        super().__init__(tp.__qualname__)
        self.tp = tp


class PayloadCodec:
    """The default payload codec: msgspec msgpack plus a cattrs converter for rich types.

    One instance can be shared by every connection and thread: the msgspec encoder and decoders
    are reused and keep no per-call state.

    Attributes:
        converter: The cattrs converter used for structuring annotated values and as the encoder's
            fallback for types msgspec does not know. Register hooks on it for your own types
            before registering callbacks that use them.
    """

    name: ClassVar[str] = "msgpack"

    def __init__(self) -> None:
        self._converter: cattrs.Converter | None = None
        self._encode = msgspec.msgpack.Encoder(enc_hook=self._enc_hook).encode
        self._decode_args = msgspec.msgpack.Decoder(tuple[list[Any], dict[str, Any]]).decode
        self._decode_value = msgspec.msgpack.Decoder().decode

    @property
    def converter(self) -> cattrs.Converter:
        """The cattrs converter (built, and cattrs imported, on first use: plain values
        never need it)."""
        converter = self._converter
        if converter is None:
            converter = self._converter = make_converter()
        return converter

    @converter.setter
    def converter(self, converter: cattrs.Converter) -> None:
        self._converter = converter

    def encode_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """Encode call arguments as one msgpack array ``[args, kwargs]``.

        Raises:
            PayloadEncodeError: An argument cannot be encoded; the message names its position
                and type.
        """
        try:
            return self._encode((args, kwargs))
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise self._locate_args_error(args, kwargs, exc) from _cause(exc)

    def decode_args(self, data: bytes | memoryview) -> tuple[list[Any], dict[str, Any]]:
        """Decode what :meth:`encode_args` made into ``(args, kwargs)``.

        ``data`` may be any buffer (e.g. a ``memoryview`` into a receive buffer); it is not
        copied. The returned list and dict are new objects owned by the caller.

        Raises:
            PayloadDecodeError: ``data`` is not a msgpack ``[list, dict with str keys]`` array.
        """
        try:
            return self._decode_args(data)
        except msgspec.DecodeError as exc:
            raise PayloadDecodeError(
                f"cannot decode call arguments: {exc}; expected the msgpack array "
                "[args, kwargs] made by PayloadCodec.encode_args"
            ) from exc

    def encode_value(self, value: Any) -> bytes:
        """Encode one value (a return value or a stream item).

        Raises:
            PayloadEncodeError: The value cannot be encoded; the message names its type.
        """
        try:
            return self._encode(value)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise _encode_error("value", value, exc) from _cause(exc)

    def decode_value(self, data: bytes | memoryview) -> Any:
        """Decode what :meth:`encode_value` made; ``data`` may be any buffer and is not copied.

        Raises:
            PayloadDecodeError: ``data`` is not one valid msgpack value.
        """
        try:
            return self._decode_value(data)
        except msgspec.DecodeError as exc:
            raise PayloadDecodeError(f"cannot decode payload value: {exc}") from exc

    def structure(self, value: Any, tp: Any) -> Any:
        """Structure a decoded value into the type ``tp`` (e.g. a dict into a dataclass).

        Raises:
            PayloadStructureError: The value does not fit ``tp``.
        """
        try:
            return self.converter.structure(value, tp)
        except Exception as exc:
            raise PayloadStructureError(mismatch_message("value", tp, value, exc)) from exc

    def _enc_hook(self, obj: Any) -> Any:
        # Only reached for types msgspec cannot encode itself, so the hot path never gets here.
        try:
            result = self.converter.unstructure(obj)
        except Exception as exc:
            raise _Unencodable(type(obj)) from exc
        # cattrs hands unknown objects back (or a copy of the same type): encoding that again
        # would loop, so treat it as unencodable.
        if type(result) is type(obj):
            raise _Unencodable(type(obj))
        return result

    def _locate_args_error(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception
    ) -> PayloadEncodeError:
        # Error path only: encode one argument at a time to say which one failed.
        for index, value in enumerate(args):
            try:
                self._encode(value)
            except (TypeError, ValueError, OverflowError, RecursionError) as item_exc:
                return _encode_error(f"argument {index}", value, item_exc)
        for key, value in kwargs.items():
            try:
                self._encode(value)
            except (TypeError, ValueError, OverflowError, RecursionError) as item_exc:
                return _encode_error(f"keyword argument {key!r}", value, item_exc)
        return PayloadEncodeError(f"cannot send call arguments: {exc}")


def _cause(exc: Exception) -> BaseException | None:
    # Our own hook's marker is noise in a traceback; show what cattrs said instead, if anything.
    return exc.__cause__ if isinstance(exc, _Unencodable) else exc


def _encode_error(where: str, value: Any, exc: Exception) -> PayloadEncodeError:
    value_type = type(value).__qualname__
    if isinstance(exc, _Unencodable):
        if exc.tp is type(value):
            return PayloadEncodeError(
                f"cannot send {where} of type {value_type}: msgspec cannot encode it and the "
                f"codec's cattrs converter cannot unstructure it; {_ENCODE_FIX}"
            )
        return PayloadEncodeError(
            f"cannot send {where} of type {value_type}: it contains a value of type "
            f"{exc.tp.__qualname__} that msgspec cannot encode and the codec's cattrs converter "
            f"cannot unstructure; {_ENCODE_FIX}"
        )
    if isinstance(exc, OverflowError):
        return PayloadEncodeError(
            f"cannot send {where} of type {value_type}: {exc} (msgpack integers are 64-bit); "
            "send it as a str or Decimal"
        )
    if isinstance(exc, RecursionError):
        return PayloadEncodeError(
            f"cannot send {where} of type {value_type}: it contains itself or is nested too "
            "deeply to encode"
        )
    return PayloadEncodeError(f"cannot send {where} of type {value_type}: {exc}")


#: The codec every part of a process shares, so hooks registered on its converter apply to
#: arguments, results and fetcher return values alike.
default_codec = PayloadCodec()
