"""daffi's exceptions, and how a remote failure is described and rebuilt on the caller."""

from __future__ import annotations

import builtins
import copy
import pickle
import sys
import traceback
from typing import Any

import msgspec
import pytest

import daffi.exceptions as exc_module
from daffi._outgoing import mark_outgoing
from daffi.exceptions import (
    AuthenticationError,
    DaffiError,
    ErrorInfo,
    GlobalContextError,
    InitializationError,
    ProtocolError,
    RemoteCallError,
    RemoteStoppedUnexpectedly,
    UnableToFindCandidate,
    daffi_error_info,
    error_info_from_exception,
    exception_from_error_info,
)

DAFFI_CLASSES: list[type[DaffiError]] = [
    DaffiError,
    InitializationError,
    GlobalContextError,
    UnableToFindCandidate,
    RemoteStoppedUnexpectedly,
    ProtocolError,
    AuthenticationError,
    exc_module.TimeoutError,
]

BUILTIN_EXCEPTIONS: list[type[BaseException]] = sorted(
    {
        value
        for value in vars(builtins).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    },
    key=lambda cls: cls.__name__,
)


def raised_in_callback(exc: BaseException) -> BaseException:
    """Raise `exc` from a nested function and return it with its traceback."""

    def callback() -> None:
        raise exc

    try:
        callback()
    except BaseException as caught:
        return caught
    raise AssertionError("unreachable")


def over_the_wire(exc: BaseException, process_name: str = "worker-1") -> DaffiError:
    """What the caller gets when a callback on `process_name` raises `exc`."""
    info = error_info_from_exception(raised_in_callback(exc), process_name)
    wire = msgspec.msgpack.encode(info)
    return exception_from_error_info(msgspec.msgpack.decode(wire, type=ErrorInfo))


# --- the exception classes -------------------------------------------------------------------


@pytest.mark.parametrize("cls", DAFFI_CLASSES)
def test_daffi_classes_keep_daffi2_message_and_fire(cls: type[DaffiError]) -> None:
    error = cls("something broke")
    assert isinstance(error, DaffiError)
    assert isinstance(error, Exception)
    assert error.message == "something broke"
    assert str(error) == "something broke"
    with pytest.raises(cls, match="something broke"):
        error.fire()


@pytest.mark.parametrize("cls", DAFFI_CLASSES)
def test_daffi_classes_pickle(cls: type[DaffiError]) -> None:
    error = pickle.loads(pickle.dumps(cls("x")))
    assert type(error) is cls
    assert error.message == "x"


def test_initialization_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bad"):
        raise InitializationError("bad")


def test_daffi_timeout_error_is_the_builtin_timeout_error() -> None:
    assert isinstance(exc_module.TimeoutError(), builtins.TimeoutError)
    assert issubclass(exc_module.TimeoutError, OSError)
    with pytest.raises(builtins.TimeoutError, match="Function f result timed out"):
        raise exc_module.TimeoutError("Function f result timed out")
    # The builtin name is untouched for code that imports daffi's exceptions with a star.
    namespace: dict[str, Any] = {}
    exec("from daffi.exceptions import *", namespace)
    assert namespace["TimeoutError"] is exc_module.TimeoutError
    assert TimeoutError is builtins.TimeoutError


def test_all_lists_the_public_names() -> None:
    assert set(exc_module.__all__) == {
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
    }
    for name in exc_module.__all__:
        assert hasattr(exc_module, name)


# --- RemoteCallError -------------------------------------------------------------------------


def test_remote_value_error_is_caught_as_value_error() -> None:
    with pytest.raises(ValueError, match="bad input") as info:
        raise over_the_wire(ValueError("bad input"))
    error = info.value
    assert isinstance(error, RemoteCallError)
    assert error.remote_type == "ValueError"
    assert error.remote_module == "builtins"
    assert error.remote_message == "bad input"
    assert error.process_name == "worker-1"
    assert error.results == {}
    assert error.errors == {}


def test_str_names_type_message_and_process() -> None:
    error = over_the_wire(ValueError("x"))
    assert str(error).splitlines()[0] == "ValueError: x (raised in process 'worker-1')"
    assert error.message == "ValueError: x (raised in process 'worker-1')"


def test_remote_traceback_is_kept_and_printed() -> None:
    error = over_the_wire(KeyError("missing"))
    assert isinstance(error, RemoteCallError)
    assert "Traceback (most recent call last)" in error.remote_traceback
    assert "in callback" in error.remote_traceback
    assert "KeyError: 'missing'" in error.remote_traceback
    printed = "".join(traceback.format_exception(type(error), error, None))
    assert "Remote traceback (process 'worker-1'):" in printed
    assert error.remote_traceback.rstrip() in printed
    assert "KeyError: 'missing' (raised in process 'worker-1')" in printed


def test_uncaught_remote_error_prints_remote_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    error = over_the_wire(ZeroDivisionError("division by zero"))
    try:
        raise error
    except RemoteCallError:
        sys.excepthook(*sys.exc_info())
    printed = capsys.readouterr().err
    assert "ZeroDivisionError: division by zero (raised in process 'worker-1')" in printed
    assert "in callback" in printed


def test_without_traceback_nothing_extra_is_shown() -> None:
    error = exception_from_error_info(ErrorInfo("ValueError", "builtins", "x", "", "n1"))
    assert str(error) == "ValueError: x (raised in process 'n1')"
    assert not getattr(error, "__notes__", None)


def test_str_without_message_or_process() -> None:
    assert str(exception_from_error_info(ErrorInfo("ValueError", "builtins", ""))) == "ValueError"
    assert str(RemoteCallError("2 of 3 nodes failed")) == "2 of 3 nodes failed"


def test_builtin_timeout_error_raised_remotely_is_a_builtin_timeout_error() -> None:
    error = over_the_wire(builtins.TimeoutError("slow disk"))
    assert isinstance(error, RemoteCallError)
    assert isinstance(error, builtins.TimeoutError)
    assert not isinstance(error, exc_module.TimeoutError)


def test_user_exception_types_become_plain_remote_call_error() -> None:
    class PaymentDeclined(Exception):
        pass

    error = over_the_wire(PaymentDeclined("card expired"))
    assert type(error) is RemoteCallError
    assert error.remote_type.endswith("PaymentDeclined")
    assert error.remote_module == __name__
    assert "PaymentDeclined: card expired (raised in process 'worker-1')" in str(error)


def test_user_exception_named_like_a_builtin_is_not_treated_as_builtin() -> None:
    error = exception_from_error_info(ErrorInfo("ValueError", "mylib.errors", "x"))
    assert type(error) is RemoteCallError
    assert not isinstance(error, ValueError)


def test_remote_subclass_is_cached_and_shared() -> None:
    first = over_the_wire(ValueError("a"))
    second = over_the_wire(ValueError("b"))
    assert type(first) is type(second)
    assert type(first).__name__ == "RemoteValueError"
    assert type(first).__module__ == "daffi.exceptions"


@pytest.mark.parametrize("builtin", BUILTIN_EXCEPTIONS, ids=lambda cls: cls.__name__)
def test_every_builtin_exception_type_is_rebuilt_without_crashing(
    builtin: type[BaseException],
) -> None:
    info = ErrorInfo(
        type_name=builtin.__name__,
        module="builtins",
        message="boom",
        traceback=f"Traceback (most recent call last):\n{builtin.__name__}: boom\n",
        process_name="w",
    )
    error = exception_from_error_info(info)
    assert isinstance(error, RemoteCallError)
    assert error.remote_type == builtin.__name__
    assert str(error).startswith(f"{builtin.__name__}: boom (raised in process 'w')")
    repr(error)
    if not issubclass(builtin, Exception) and builtin is not BaseException:
        # KeyboardInterrupt, SystemExit, ...: another process's interrupt must not stop us.
        assert not isinstance(error, builtin)
        assert type(error) is RemoteCallError
    elif builtin.__name__ in {"UnicodeDecodeError", "UnicodeEncodeError", "UnicodeTranslateError"}:
        # Their constructors need 5 specific arguments; the nearest usable base is used.
        assert isinstance(error, UnicodeError)
        assert isinstance(error, ValueError)
    elif builtin.__name__ in {"ExceptionGroup", "BaseExceptionGroup"}:
        assert type(error) is RemoteCallError
    else:
        assert isinstance(error, builtin)
    # It can be raised, caught, copied and pickled.
    with pytest.raises(RemoteCallError):
        raise error
    assert type(copy.copy(error)) is type(error)
    assert type(copy.deepcopy(error)) is type(error)
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is type(error)
    assert str(restored) == str(error)


@pytest.mark.parametrize(
    "exc",
    [
        OSError(2, "No such file or directory", "/nope"),
        FileNotFoundError(2, "No such file or directory"),
        KeyError("k"),
        StopIteration(5),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        SyntaxError("invalid syntax", ("f.py", 1, 2, "x x", 1, 3)),
        ImportError("no module", name="m", path="/p"),
        AttributeError("no attr"),
        RecursionError("too deep"),
    ],
    ids=repr,
)
def test_awkward_builtins_round_trip(exc: Exception) -> None:
    error = over_the_wire(exc)
    assert isinstance(error, RemoteCallError)
    assert error.remote_type == type(exc).__name__
    assert error.remote_message == str(exc)
    # UnicodeDecodeError cannot be subclassed usefully: its base UnicodeError is used instead.
    expected = UnicodeError if isinstance(exc, UnicodeDecodeError) else type(exc)
    assert isinstance(error, expected)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is new in 3.11")
def test_exception_group_raised_remotely() -> None:
    group = builtins.ExceptionGroup("several", [ValueError("a"), TypeError("b")])
    error = over_the_wire(group)
    assert isinstance(error, RemoteCallError)
    assert "ValueError: a" in error.remote_traceback
    assert "TypeError: b" in error.remote_traceback


def test_broadcast_results_and_errors() -> None:
    failed = over_the_wire(ValueError("x"), "n2")
    assert isinstance(failed, RemoteCallError)
    error = RemoteCallError("1 of 2 nodes failed", results={"n1": 1}, errors={"n2": failed})
    assert error.results == {"n1": 1}
    assert error.errors == {"n2": failed}
    restored = pickle.loads(pickle.dumps(error))
    assert restored.results == {"n1": 1}
    assert isinstance(restored.errors["n2"], ValueError)
    assert str(restored.errors["n2"]).startswith("ValueError: x (raised in process 'n2')")


def test_copy_keeps_notes_without_duplicating_them() -> None:
    error = over_the_wire(ValueError("x"))
    restored = pickle.loads(pickle.dumps(error))
    assert getattr(restored, "__notes__", None) == getattr(error, "__notes__", None)


# --- error_info_from_exception / exception_from_error_info -----------------------------------


def test_error_info_from_a_user_exception() -> None:
    info = error_info_from_exception(raised_in_callback(ValueError("x")), "node-a")
    assert info.type_name == "ValueError"
    assert info.module == "builtins"
    assert info.message == "x"
    assert info.process_name == "node-a"
    assert info.kind == "remote"
    assert info.traceback.startswith("Traceback (most recent call last)")
    assert info.traceback.rstrip().endswith("ValueError: x")


def test_error_info_includes_chained_exceptions() -> None:
    try:
        try:
            {}["k"]
        except KeyError as inner:
            raise RuntimeError("lookup failed") from inner
    except RuntimeError as outer:
        info = error_info_from_exception(outer, "n")
    assert "KeyError: 'k'" in info.traceback
    assert "direct cause" in info.traceback


def test_error_info_without_traceback() -> None:
    info = error_info_from_exception(ValueError("never raised"), "n")
    assert info.traceback.strip() == "ValueError: never raised"


@pytest.mark.parametrize("cls", DAFFI_CLASSES)
def test_daffi_kinds_round_trip(cls: type[DaffiError]) -> None:
    """daffi's own answer about a call (a refusal) is raised as its class."""
    error = exception_from_error_info(daffi_error_info(cls.__name__, "no luck", "controller"))
    assert type(error) is cls
    assert error.message == "no luck"
    info = error_info_from_exception(cls("no luck"), "controller")  # raised by the callee
    assert info.kind == cls.__name__
    error = over_the_wire(cls("no luck"))
    assert type(error) is cls
    assert error.message == "no luck"


@pytest.mark.parametrize("cls", DAFFI_CLASSES)
def test_a_daffi_error_raised_in_a_callback_is_also_a_remote_call_error(
    cls: type[DaffiError],
) -> None:
    """Raised by a call the callback made (a nested call that failed, a blocking call in an
    async callback): its class, and a RemoteCallError saying where, with the traceback."""

    def failed_call() -> DaffiError:
        exc = cls("no luck")
        mark_outgoing(exc)
        return exc

    info = error_info_from_exception(failed_call(), "controller")
    assert info.kind == cls.__name__
    assert info.traceback
    error = over_the_wire(failed_call())
    assert isinstance(error, cls)
    assert isinstance(error, RemoteCallError)
    assert error.remote_message == "no luck"
    assert error.remote_type == cls.__name__
    assert error.process_name == "worker-1"
    assert "(raised in process 'worker-1')" in str(error)
    again = over_the_wire(error, "worker-0")  # one more hop keeps the class
    assert isinstance(again, cls)
    assert isinstance(again, RemoteCallError)
    assert again.process_name == "worker-0"
    unpickled = pickle.loads(pickle.dumps(error))
    assert type(unpickled) is type(error)


def test_subclass_of_a_daffi_error_travels_as_its_daffi_base() -> None:
    class CustomProtocolError(ProtocolError):
        pass

    info = error_info_from_exception(CustomProtocolError("bad frame"), "n")
    assert info.kind == "ProtocolError"
    error = exception_from_error_info(info)
    assert isinstance(error, ProtocolError)
    assert not isinstance(error, CustomProtocolError)


def test_nested_remote_error_keeps_the_original_type() -> None:
    """A callback whose own remote call failed: the caller still sees a ValueError."""
    first_hop = over_the_wire(ValueError("deep"), "worker-b")
    second_hop = over_the_wire(first_hop, "worker-a")
    assert isinstance(second_hop, ValueError)
    assert isinstance(second_hop, RemoteCallError)
    assert second_hop.remote_message == "deep"
    assert second_hop.process_name == "worker-a"
    assert "worker-b" in second_hop.remote_traceback


def test_unprintable_exception_never_breaks_the_description() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    info = error_info_from_exception(raised_in_callback(Unprintable()), "n")
    assert info.message == "<Unprintable str() failed>"
    assert info.type_name.endswith("Unprintable")


def test_unpicklable_exception_is_described() -> None:
    import threading

    class HoldsLock(Exception):
        def __init__(self) -> None:
            super().__init__("locked")
            self.lock = threading.Lock()

    error = over_the_wire(HoldsLock())
    assert "locked" in str(error)


@pytest.mark.parametrize(
    "info",
    [
        ErrorInfo("", "", ""),
        ErrorInfo("NoSuchThing", "builtins", "x"),
        ErrorInfo("print", "builtins", "x"),  # a builtin that is not an exception
        ErrorInfo("__class__", "builtins", "x"),
        ErrorInfo("ValueError", "builtins", "x", kind="SomeFutureKind"),
        ErrorInfo("ValueError", "builtins", "x", kind=""),
        ErrorInfo(5, None, b"x"),  # type: ignore[arg-type]  # malformed, built locally
    ],
    ids=repr,
)
def test_odd_error_info_never_raises(info: ErrorInfo) -> None:
    error = exception_from_error_info(info)
    assert isinstance(error, RemoteCallError)
    str(error)


def test_error_info_msgpack_round_trip() -> None:
    info = ErrorInfo(
        type_name="ValueError",
        module="builtins",
        message="x",
        traceback="Traceback...",
        process_name="p",
        kind="remote",
    )
    encoded = msgspec.msgpack.encode(info)
    assert msgspec.msgpack.decode(encoded, type=ErrorInfo) == info
    # array_like: a compact positional array.
    assert msgspec.msgpack.decode(encoded) == [
        "ValueError",
        "builtins",
        "x",
        "Traceback...",
        "p",
        "remote",
    ]
    # A peer that sends fewer (trailing, defaulted) fields is still understood.
    short = msgspec.msgpack.encode(["ValueError", "builtins", "x"])
    assert msgspec.msgpack.decode(short, type=ErrorInfo) == ErrorInfo("ValueError", "builtins", "x")


def test_error_info_is_frozen() -> None:
    info = ErrorInfo("ValueError", "builtins", "x")
    with pytest.raises(AttributeError):
        info.message = "y"  # type: ignore[misc]


def test_unable_to_find_candidate_is_a_global_context_error_as_in_daffi_2() -> None:
    assert issubclass(exc_module.UnableToFindCandidate, exc_module.GlobalContextError)
    with pytest.raises(exc_module.GlobalContextError, match="nobody offers"):
        raise exc_module.UnableToFindCandidate("nobody offers 'add'")
