"""Pickle as an opt-in second payload codec, and the opt-ins a node is built with.

Unpickling runs code chosen by whoever made the bytes, so nothing a peer sends is unpickled
unless the receiving process opted in (``Global(allow_pickle=True)``). The rule, applied by
:class:`Pickling` on both sides of every call, whatever path the call takes:

* **Caller.** Arguments are encoded as always (msgpack, cattrs); only when that fails, and
  this node allows pickle, are they sent pickled (``Call.pickled``). A node that allows
  pickle marks every call it sends ``Call.accepts_pickle`` (:meth:`Pickling.mark`).
* **Callee.** Pickled arguments are unpickled only if this node allows pickle; otherwise the
  call is refused, its payload unread (:meth:`Pickling.loads_args`). A result msgpack cannot
  carry is pickled only if this node allows pickle **and** the call accepts it
  (:meth:`Pickling.dumps_result`); otherwise the encoding error is the call's error.
* **Caller, again.** A pickled result is unpickled only if this node allows pickle
  (:meth:`Pickling.loads_result`).

Streams (streamed arguments, generator callbacks' values) stay msgpack only.

Pickled values are the objects the sender had: annotations of a callback's parameters or of a
fetcher's return do not convert them.

Which node allows what is decided by its ``Global`` and given to the node when it is made
(:class:`OptIns`, through ``daffi._components``): its callers and its dispatcher share one
:class:`Pickling`. ``cloudpickle`` is imported only when a value is actually pickled.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import msgspec

from daffi._codec import PayloadDecodeError, PayloadEncodeError
from daffi._protocol import Call
from daffi.exceptions import GlobalContextError, InitializationError

__all__ = [
    "INSTALL_HINT",
    "OptIns",
    "Pickling",
    "pickle_module",
    "require_cloudpickle",
]

logger = logging.getLogger("daffi.node")

#: how to get cloudpickle, which pickling and code transfer need
INSTALL_HINT = "pip install 'daffi[pickle]'"

#: the pickle protocol of every pickled payload
PROTOCOL = 5

#: A pickled payload travels as one msgpack ``bin`` value (envelopes embed payloads as
#: msgpack), whose first byte is one of these; the payload of call arguments encoded with
#: msgpack is an array (0x92), so the two are told apart by that byte alone.
_BIN_HEADERS = frozenset((0xC4, 0xC5, 0xC6))
_bin_decoder = msgspec.msgpack.Decoder(bytes)

_BOTH_ENDS = (
    "pickled payloads need Global(allow_pickle=True) on both ends (only enable it between "
    "processes that trust each other: unpickling runs code chosen by the sender)"
)


@dataclass(frozen=True)
class OptIns:
    """What a node may receive beyond msgpack (see ``Global(allow_pickle, allow_transfer)``).

    Attributes:
        allow_pickle: exchange pickled payloads with peers that allow them too.
        allow_transfer: run functions other processes send with ``transfer_and_call``.
    """

    allow_pickle: bool = False
    allow_transfer: bool = False


def require_cloudpickle() -> None:
    """Check, without importing it, that cloudpickle is installed.

    Raises:
        InitializationError: it is not.
    """
    if importlib.util.find_spec("cloudpickle") is None:
        raise InitializationError(
            f"allow_pickle and allow_transfer need cloudpickle: {INSTALL_HINT}"
        )


def pickle_module() -> ModuleType:
    """cloudpickle, imported on first use.

    Raises:
        GlobalContextError: it is not installed.
    """
    try:
        return importlib.import_module("cloudpickle")
    except ImportError:
        raise GlobalContextError(f"pickling needs cloudpickle: {INSTALL_HINT}") from None


def dumps(value: Any) -> bytes:
    """``value`` pickled by value where needed (lambdas, closures, classes of ``__main__``).

    Raises:
        GlobalContextError: cloudpickle is not installed.
        Exception: whatever pickling ``value`` raised.
    """
    data: bytes = pickle_module().dumps(value, protocol=PROTOCOL)
    return data


def loads(data: bytes | memoryview | msgspec.Raw) -> Any:
    """Unpickle ``data``: this runs code chosen by whoever made it. Only for payloads a node
    that opted in received.

    Raises:
        PayloadDecodeError: they do not unpickle.
    """
    import pickle  # cloudpickle's output is plain pickle (it imports cloudpickle if needed)

    try:
        return pickle.loads(data)
    except Exception as exc:
        raise PayloadDecodeError(f"cannot unpickle payload: {exc!r}") from exc


def _is_pickled(payload: msgspec.Raw) -> bool:
    """Whether call arguments are pickled rather than msgpack (see :data:`_BIN_HEADERS`)."""
    data = memoryview(payload)
    return len(data) > 0 and data[0] in _BIN_HEADERS


def _payload(value: Any) -> bytes:
    """``value`` pickled, as a payload (a msgpack ``bin``)."""
    return msgspec.msgpack.encode(dumps(value))


def _unpickle_payload(payload: msgspec.Raw) -> Any:
    """What :func:`_payload` made, unpickled (for a node that opted in).

    Raises:
        PayloadDecodeError: ``payload`` is not a pickled payload, or does not unpickle.
    """
    try:
        data = _bin_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise PayloadDecodeError(f"a pickled payload that is not msgpack bin: {exc}") from exc
    return loads(data)


class Pickling:
    """One node's side of the pickle rule (see the module docstring).

    Args:
        node: the node's name (its errors name it).
        allowed: the node was created with ``allow_pickle=True``.
    """

    __slots__ = ("allowed", "node")

    def __init__(self, node: str, allowed: bool) -> None:
        self.node = node
        self.allowed = allowed

    # ------------------------------------------------------------------ caller

    def dumps_args(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """The arguments of a call of ``name``, pickled: for values msgpack cannot carry, when
        this node allows pickle (checked by the caller, which raised the msgpack error
        otherwise).

        Raises:
            PayloadEncodeError: they do not pickle either.
        """
        try:
            return _payload((args, kwargs))
        except GlobalContextError:
            raise
        except Exception as exc:
            raise PayloadEncodeError(
                f"cannot send the arguments of {name!r}: msgpack cannot encode them and "
                f"pickling them failed too: {exc!r}"
            ) from exc

    @staticmethod
    def mark(msg: Call) -> Call:
        """``msg`` as a node that allows pickle sends it: flagged if its arguments are
        pickled, and saying that a pickled result is welcome."""
        return msgspec.structs.replace(msg, pickled=_is_pickled(msg.payload), accepts_pickle=True)

    def loads_result(self, payload: msgspec.Raw) -> Any:
        """A pickled result, unpickled if this node allows pickle.

        Raises:
            GlobalContextError: it does not (nothing was unpickled).
            PayloadDecodeError: the result does not unpickle.
        """
        if not self.allowed:
            logger.warning("node %r received a pickled result; not unpickled", self.node)
            raise GlobalContextError(
                f"process {self.node!r} received a pickled result and did not unpickle it: it "
                f"was created without allow_pickle=True; {_BOTH_ENDS}"
            )
        return _unpickle_payload(payload)

    # ------------------------------------------------------------------ callee

    def loads_args(self, msg: Call) -> tuple[list[Any], dict[str, Any]]:
        """The pickled arguments of ``msg``, unpickled if this node allows pickle.

        Raises:
            GlobalContextError: it does not (nothing was unpickled).
            PayloadDecodeError: they do not unpickle into ``(args, kwargs)``.
        """
        if not self.allowed:
            logger.warning(
                "node %r refused a call of %r from %r with pickled arguments (allow_pickle is "
                "off); not unpickled",
                self.node,
                msg.name,
                msg.src,
            )
            raise GlobalContextError(
                f"process {self.node!r} refused the pickled arguments of {msg.name!r} and did "
                f"not unpickle them: it was created without allow_pickle=True; {_BOTH_ENDS}"
            )
        value = _unpickle_payload(msg.payload)
        if (
            not isinstance(value, tuple)
            or len(value) != 2
            or not isinstance(value[0], tuple | list)
            or not isinstance(value[1], dict)
        ):
            raise PayloadDecodeError(
                f"pickled arguments of {msg.name!r} are not an (args, kwargs) pair"
            )
        return list(value[0]), value[1]

    def dumps_result(self, value: Any, msg: Call, error: PayloadEncodeError) -> bytes:
        """The result of ``msg`` pickled, msgpack having failed with ``error``: only if this
        node allows pickle and the caller said it does too.

        Raises:
            PayloadEncodeError: ``error`` (pickle is not allowed here), or why the result
                cannot be sent pickled.
        """
        if not self.allowed:
            raise error
        if not msg.accepts_pickle:
            raise PayloadEncodeError(
                f"{error}. Process {self.node!r} allows pickle, but the caller {msg.src!r} "
                "does not (allow_pickle=False there), so the result cannot be sent pickled"
            ) from error
        try:
            return _payload(value)
        except GlobalContextError:
            raise
        except Exception as exc:
            raise PayloadEncodeError(
                f"cannot send the result of {msg.name!r} of type {type(value).__qualname__}: "
                f"msgpack cannot encode it and pickling it failed too: {exc!r}"
            ) from exc
