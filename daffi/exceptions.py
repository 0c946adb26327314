"""Exceptions raised by daffi, and how a remote failure travels between processes.

Every daffi exception derives from `DaffiError`. A failure inside a remote callback travels as
an `ErrorInfo` (plain data: type name, module, message, formatted traceback, node name) and is
rebuilt on the caller by `exception_from_error_info` as a `RemoteCallError`. When the remote
type is a built-in exception, the rebuilt object is also an instance of that built-in, so
`except ValueError:` catches a `ValueError` raised in another process.
"""

from __future__ import annotations

import builtins
import sys
import traceback
from collections.abc import Mapping
from typing import Any, NoReturn

import msgspec

__all__ = [
    "REMOTE_KIND",
    "ArgumentsError",
    "AuthenticationError",
    "DaffiError",
    "ErrorInfo",
    "GlobalContextError",
    "InitializationError",
    "ProtocolError",
    "RemoteCallError",
    "RemoteStoppedUnexpectedly",
    "TimeoutError",
    "UnableToFindCandidate",
    "broadcast_error",
    "error_info_from_exception",
    "exception_from_error_info",
]

#: `ErrorInfo.kind` of an exception raised by user code (anything that is not a daffi error).
REMOTE_KIND = "remote"


class DaffiError(Exception):
    """Base class of every exception daffi raises.

    Attributes:
        message: The error text (kept from daffi 2).
    """

    message: str

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def fire(self) -> NoReturn:
        """Raise this exception (kept from daffi 2)."""
        raise self


class InitializationError(DaffiError, ValueError):
    """Invalid configuration or arguments: a modifier, a duration, a callback registration."""


class GlobalContextError(DaffiError):
    """`Global` used in a way its current state does not allow (e.g. after it stopped)."""


class ArgumentsError(GlobalContextError, TypeError):
    """Arguments that cannot bind the remote callback's signature (raised before sending)."""


class UnableToFindCandidate(GlobalContextError):
    """No node (other than the caller) offers the requested callback.

    A `GlobalContextError`, as in daffi 2: ``except GlobalContextError`` catches it too.
    """


class RemoteStoppedUnexpectedly(DaffiError):
    """The node executing a call disconnected before it answered."""


class ProtocolError(DaffiError):
    """A peer sent something that does not follow the daffi protocol."""


class AuthenticationError(DaffiError):
    """A peer failed the handshake's authentication.

    Raised where a node starts (``Global(...)``, ``async with Global(...)``) when:

    * the controller refused it: it has no ``auth_token`` or another one than the
      controller's; its name is held for a node that lost its link and may reconnect (the
      impostor case); with ``ssl_bind_names``, its client certificate does not carry its
      name; with mutual TLS, it presents no client certificate, or one the controller does
      not trust;
    * it refused the controller: the controller's certificate does not verify against
      ``ssl_ca`` (or does not name its host); the node has a token and the controller does
      not check tokens, or cannot prove it knows the same one.

    The message says which side refused and why. A node that was connected before and is
    refused while reconnecting logs the error and keeps retrying instead.
    """


class TimeoutError(DaffiError, builtins.TimeoutError):
    """A call did not finish in time.

    It is also a built-in `TimeoutError`, so `except TimeoutError:` works whether or not the
    name was imported from daffi.
    """


class ErrorInfo(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """A failure as it travels on the wire.

    Attributes:
        type_name: Qualified name of the exception class, e.g. ``"ValueError"``.
        module: Module of the exception class, e.g. ``"builtins"``.
        message: ``str()`` of the exception.
        traceback: The formatted traceback on the node that raised it ("" if unknown).
        process_name: Name of the node that raised it.
        kind: ``"remote"`` for user exceptions, or the name of the daffi exception class
            (e.g. ``"UnableToFindCandidate"``) that the caller should raise.
    """

    type_name: str
    module: str
    message: str
    traceback: str = ""
    process_name: str = ""
    kind: str = REMOTE_KIND


class RemoteCallError(DaffiError):
    """An exception raised by a callback in another process.

    When the remote exception is a built-in type, the object raised on the caller is an
    instance of a subclass of both this class and that built-in (e.g. ``RemoteValueError``),
    so both ``except RemoteCallError`` and ``except ValueError`` catch it.

    ``str(err)`` names the remote type, message and process, e.g.
    ``ValueError: x (raised in process 'worker-1')``. The remote traceback is attached as a
    note (Python 3.11+) or appended to ``str(err)`` (Python 3.10), so it is printed with the
    local traceback.

    Attributes:
        remote_type: Name of the remote exception class, e.g. ``"ValueError"``.
        remote_module: Module of the remote exception class, e.g. ``"builtins"``.
        remote_message: ``str()`` of the remote exception.
        remote_traceback: The formatted remote traceback ("" if unknown).
        process_name: Name of the node that raised the exception.
        results: For ``BROADCAST``: results of the nodes that succeeded, by node name.
        errors: For ``BROADCAST``: errors of the nodes that failed, by node name.
        message: The summary line (``str(err)`` without the remote traceback).
    """

    remote_type: str
    remote_module: str
    remote_message: str
    remote_traceback: str
    process_name: str
    results: dict[str, Any]
    errors: dict[str, Exception]

    def __init__(
        self,
        message: str = "",
        *,
        remote_type: str = "",
        remote_module: str = "",
        remote_traceback: str = "",
        process_name: str = "",
        results: Mapping[str, Any] | None = None,
        errors: Mapping[str, Exception] | None = None,
    ) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_module = remote_module
        self.remote_message = message
        self.remote_traceback = remote_traceback
        self.process_name = process_name
        self.results = dict(results) if results else {}
        self.errors = dict(errors) if errors else {}
        self.message = self._summary()
        if remote_traceback and sys.version_info >= (3, 11):
            self.add_note(self._traceback_note())

    def _summary(self) -> str:
        text = self.remote_message
        if self.remote_type:
            text = f"{self.remote_type}: {text}" if text else self.remote_type
        if self.process_name:
            text = f"{text} (raised in process {self.process_name!r})"
        return text

    def _traceback_note(self) -> str:
        where = f" (process {self.process_name!r})" if self.process_name else ""
        return f"Remote traceback{where}:\n{self.remote_traceback.rstrip()}"

    def __str__(self) -> str:
        if self.remote_traceback and sys.version_info < (3, 11):
            # No exception notes before 3.11: the message is the only text a traceback prints.
            return f"{self._summary()}\n{self._traceback_note()}"
        return self._summary()

    def to_error_info(self) -> ErrorInfo:
        """Return the `ErrorInfo` this error was (or could have been) rebuilt from."""
        return ErrorInfo(
            type_name=self.remote_type,
            module=self.remote_module,
            message=self.remote_message,
            traceback=self.remote_traceback,
            process_name=self.process_name,
            kind=_REMOTE_DAFFI_KINDS.get(type(self), REMOTE_KIND),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The dynamically created built-in subclasses cannot be found by name, so rebuild from
        # the wire form; the instance dict restores results, errors and notes.
        return (exception_from_error_info, (self.to_error_info(),), dict(self.__dict__))


# Daffi exceptions that keep their class when they cross the wire, by `ErrorInfo.kind`.
_DAFFI_KINDS: dict[str, type[DaffiError]] = {
    cls.__name__: cls
    for cls in (
        DaffiError,
        InitializationError,
        ArgumentsError,
        GlobalContextError,
        UnableToFindCandidate,
        RemoteStoppedUnexpectedly,
        ProtocolError,
        AuthenticationError,
        TimeoutError,
    )
}


#: set on a daffi error raised by a call this process made (see `daffi._outgoing`)
OUTGOING_MARK = "_daffi_outgoing"


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} str() failed>"


def _format_traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        return ""


def _daffi_kind(exc: DaffiError) -> str:
    for cls in type(exc).__mro__:
        if cls.__name__ in _DAFFI_KINDS and _DAFFI_KINDS[cls.__name__] is cls:
            return cls.__name__
    return DaffiError.__name__


def daffi_error_info(kind: str, message: str, process_name: str = "") -> ErrorInfo:
    """The wire form of a daffi error (``kind`` names its class, e.g. ``"ProtocolError"``)."""
    return ErrorInfo(
        type_name=kind,
        module="daffi.exceptions",
        message=message,
        process_name=process_name,
        kind=kind,
    )


def error_info_from_exception(exc: BaseException, process_name: str) -> ErrorInfo:
    """Describe an exception as plain data that can be sent to another process.

    Never raises, whatever the exception's ``__str__`` does.

    Args:
        exc: The exception, ideally with its ``__traceback__``.
        process_name: Name of the node reporting the exception.

    Returns:
        The `ErrorInfo`. A daffi exception gets its class name as ``kind`` so the caller
        raises the same daffi class. A `RemoteCallError` (a nested call that failed) keeps
        the original remote type, so ``except ValueError`` works across several hops.
    """
    if isinstance(exc, RemoteCallError):
        return ErrorInfo(
            type_name=exc.remote_type or type(exc).__qualname__,
            module=exc.remote_module or type(exc).__module__,
            message=exc.remote_message,
            traceback=_format_traceback(exc),
            process_name=process_name,
            kind=_REMOTE_DAFFI_KINDS.get(type(exc), REMOTE_KIND),
        )
    exc_type = type(exc)
    if isinstance(exc, DaffiError):
        message = getattr(exc, "message", None)
        if not isinstance(message, str):  # a subclass that skipped DaffiError.__init__
            message = _safe_str(exc)
        kind = _daffi_kind(exc)
        # daffi's own answer about the call it runs (a refusal) is raised as its class,
        # without a traceback; with one, it failed a call this process made.
        outgoing = getattr(exc, OUTGOING_MARK, False)
        tb_text = _format_traceback(exc) if outgoing else ""
    else:
        message = _safe_str(exc)
        kind = REMOTE_KIND
        tb_text = _format_traceback(exc)
    return ErrorInfo(
        type_name=_safe_str(exc_type.__qualname__),
        module=_safe_str(exc_type.__module__),
        message=message,
        traceback=tb_text,
        process_name=process_name,
        kind=kind,
    )


def exception_from_error_info(info: ErrorInfo) -> DaffiError:
    """Rebuild the exception a caller raises from an `ErrorInfo`.

    Never raises: whatever a peer sent, the result is an exception to raise.

    Args:
        info: The failure as received.

    Returns:
        The daffi exception named by ``info.kind`` (when a callback raised it, a
        `RemoteCallError` that is also of that class, e.g. ``RemoteGlobalContextError``), or
        a `RemoteCallError`. For a remote
        built-in exception type (e.g. ``ValueError``) the `RemoteCallError` is also an
        instance of that type; if no subclass can be made for that exact type, the nearest
        built-in base class that allows it is used (e.g. ``UnicodeError`` for
        ``UnicodeDecodeError``), else none.
    """
    try:
        fields: dict[str, Any] = {
            "remote_type": info.type_name,
            "remote_module": info.module,
            "remote_traceback": info.traceback,
            "process_name": info.process_name,
        }
        daffi_cls = _DAFFI_KINDS.get(info.kind)
        if daffi_cls is not None:
            if not info.traceback:  # daffi's own answer about the call (a refusal, ...)
                return daffi_cls(info.message)
            # Raised while a callback ran there (e.g. a nested call that failed): a
            # RemoteCallError, with where and the traceback, that is also that daffi class.
            return _remote_class_for_daffi(daffi_cls)(info.message, **fields)
        cls = _remote_class_for_builtin(_builtin_exception(info))
        try:
            return cls(info.message, **fields)
        except Exception:
            return RemoteCallError(info.message, **fields)
    except Exception:
        return RemoteCallError(f"undecodable remote error: {_safe_str(info)}")


def broadcast_error(
    what: str,
    results: Mapping[str, Any],
    errors: Mapping[str, Exception],
) -> RemoteCallError:
    """The error of a call that reached several processes and failed on some of them.

    ``.results`` holds the successes and ``.errors`` the failures, by process name. When
    every failure is the same built-in exception type (say ``ValueError``), the error is also
    an instance of that type, as for a single call, so ``except ValueError`` works.

    Args:
        what: what was attempted, for the message (e.g. ``"broadcast of 'f'"``).
        results: the successes by process name.
        errors: the failures by process name.
    """
    failed = sorted(errors)
    message = (
        f"{what} failed on {len(failed)} of {len(failed) + len(results)} processes: "
        + "; ".join(f"{node}: {errors[node]}" for node in failed)
    )
    remote_types = {
        (err.remote_module, err.remote_type) if isinstance(err, RemoteCallError) else None
        for err in errors.values()
    }
    cls: type[RemoteCallError] = RemoteCallError
    remote_type = ""
    if len(remote_types) == 1 and None not in remote_types:
        ((module, remote_type),) = remote_types  # type: ignore[misc]
        info = ErrorInfo(type_name=remote_type, module=module, message="")
        cls = _remote_class_for_builtin(_builtin_exception(info))
    ordered_results = {node: results[node] for node in sorted(results)}
    ordered_errors = {node: errors[node] for node in failed}
    try:
        return cls(message, remote_type=remote_type, results=ordered_results, errors=ordered_errors)
    except Exception:
        return RemoteCallError(message, results=ordered_results, errors=ordered_errors)


def _builtin_exception(info: ErrorInfo) -> type[Exception] | None:
    if info.module != "builtins":
        return None
    candidate = getattr(builtins, info.type_name, None)
    if isinstance(candidate, type) and issubclass(candidate, Exception):
        return candidate
    # Not an exception, or BaseException-only (KeyboardInterrupt, SystemExit, GeneratorExit):
    # a caller must not be stopped by another process's interrupt.
    return None


# Built-in exception type -> the class raised for it, e.g. ValueError -> RemoteValueError.
# Filled lazily; `setdefault` keeps one class per built-in if two threads race.
_REMOTE_CLASSES: dict[type[Exception], type[RemoteCallError]] = {}


def _remote_class_for_builtin(builtin: type[Exception] | None) -> type[RemoteCallError]:
    if builtin is None:
        return RemoteCallError
    cls = _REMOTE_CLASSES.get(builtin)
    if cls is None:
        # Walk up the built-in's bases until one can be combined with RemoteCallError
        # (UnicodeDecodeError cannot, UnicodeError can).
        cls = RemoteCallError
        for base in builtin.__mro__:
            if base is Exception:
                break
            if issubclass(base, Exception):
                combined = _REMOTE_CLASSES.get(base) or _combined_class(base)
                if combined is not None:
                    cls = _REMOTE_CLASSES.setdefault(base, combined)
                    break
        cls = _REMOTE_CLASSES.setdefault(builtin, cls)
    return cls


# Daffi class -> the class raised for it when a callback raised it, e.g. RemoteGlobalContextError.
_REMOTE_DAFFI: dict[type[DaffiError], type[RemoteCallError]] = {}
# ... and back: the kind such a class keeps when it crosses the wire again (a further hop).
_REMOTE_DAFFI_KINDS: dict[type, str] = {}


def _remote_class_for_daffi(daffi_cls: type[DaffiError]) -> type[RemoteCallError]:
    cls = _REMOTE_DAFFI.get(daffi_cls)
    if cls is None:
        combined = _combined_class(daffi_cls) or RemoteCallError
        cls = _REMOTE_DAFFI.setdefault(daffi_cls, combined)
        if cls is not RemoteCallError:
            _REMOTE_DAFFI_KINDS[cls] = daffi_cls.__name__
    return cls


def _combined_class(builtin: type[Exception]) -> type[RemoteCallError] | None:
    """Return ``class Remote<Name>(RemoteCallError, builtin)`` (a built-in or daffi class),
    or None if it cannot work."""
    name = f"Remote{builtin.__name__}"
    try:
        cls: type[RemoteCallError] = type(
            name,
            (RemoteCallError, builtin),
            {
                "__module__": __name__,
                "__qualname__": name,
                "__doc__": f"A `RemoteCallError` that is also a `{builtin.__name__}`.",
            },
        )
        # Some built-ins need particular constructor arguments (UnicodeDecodeError,
        # ExceptionGroup): try one instance now rather than failing for every caller.
        probe = cls(
            "probe",
            remote_type=builtin.__name__,
            remote_module="builtins",
            remote_traceback="Traceback: probe",
            process_name="probe",
        )
        str(probe)
        repr(probe)
    except Exception:
        return None
    return cls


def unsendable_result(what: str, exc: Exception) -> TypeError:
    """The error a callee reports when a value it would send back cannot be encoded.

    A built-in ``TypeError``, so that the caller gets a `RemoteCallError` that is also a
    ``TypeError`` (a remote exception keeps its built-in base class; `PayloadEncodeError`,
    defined in daffi, would arrive as a plain `RemoteCallError`).
    """
    return TypeError(f"{what} cannot be sent back to the caller: {exc}")
