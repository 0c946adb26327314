"""Structuring: turning decoded payload values into the annotated types of a callable.

A payload decodes to plain values (see :mod:`daffi._codec`). When a callback's parameters,
or a fetcher's return, are annotated, those values are structured into the annotated types
by a cattrs converter (:func:`daffi._converter.make_converter`, built on first use:
unannotated callables never need cattrs): :func:`make_arg_structurer` and
:func:`make_return_structurer` build, once per callable, the function that does it for each
call. Values that already have the annotated type are passed through unchanged; only
``Any``, ``object`` and unannotated parameters are not checked. Structuring is strict: a str
is never turned into an int or a bool, and a container annotation takes only a container of
that shape (``list[str]`` refuses ``"ab"``; msgspec already decodes scalars, arrays and maps
to their own types, so a mismatch means the sender sent something else).
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import logging
import reprlib
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, Protocol

from daffi._converter import UNION_ORIGINS, WrongShape, type_name
from daffi.exceptions import ArgumentsError

if typing.TYPE_CHECKING:
    import cattrs

__all__ = [
    "ArgStructurer",
    "ArgumentTypeError",
    "ConverterOwner",
    "PayloadStructureError",
    "make_arg_structurer",
    "make_return_structurer",
    "mismatch_message",
]

logger = logging.getLogger("daffi.codec")

ArgStructurer = Callable[[list[Any], dict[str, Any]], tuple[list[Any], dict[str, Any]]]
_Convert = Callable[[Any], Any]

# Annotations every value fits: nothing to check.
_UNCHECKED: frozenset[Any] = frozenset({Any, object})
# Return annotations whose values arrive one item at a time (a stream).
_STREAM_ORIGINS = (
    collections.abc.Iterator,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncGenerator,
)

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


class PayloadStructureError(TypeError):
    """A decoded value cannot be structured into the annotated type of its parameter."""


class ArgumentTypeError(PayloadStructureError, ArgumentsError):
    """An argument does not fit the annotated type of its parameter.

    Raised by the caller before anything is sent (the fetcher is annotated) or by the callee
    before the callback runs; a caller gets the callee's as `ArgumentsError`, also a
    ``TypeError``. The message names the parameter, the expected and the given type.
    """


class ConverterOwner(Protocol):
    """What holds the converter that structures values (a payload codec)."""

    @property
    def converter(self) -> cattrs.Converter: ...


class _Mismatch(Exception):
    """Raised by a per-value converter; the caller adds which parameter it was."""

    def __init__(self, tp: Any, value: Any, cause: Exception) -> None:
        super().__init__()
        self.tp = tp
        self.value = value
        self.cause = cause

    def to_error(
        self, label: str, cls: type[PayloadStructureError] = PayloadStructureError
    ) -> PayloadStructureError:
        return cls(mismatch_message(label, self.tp, self.value, self.cause))


def make_arg_structurer(func: Callable[..., Any], codec: ConverterOwner) -> ArgStructurer | None:
    """Build the function that structures decoded arguments into ``func``'s annotated types.

    Called once per callback at registration. Positional values are matched to parameters by
    position in ``inspect.signature(func)`` (so a bound method's ``self`` is not counted), keyword
    values by name; ``*args: T`` and ``**kwargs: T`` structure every extra value as ``T``.
    Parameters whose annotation cannot be resolved or structured are passed through as decoded
    (logged at debug level); registration never fails because of annotations.

    Args:
        func: The callable as it will be called (function, bound method, callable object...).
        codec: The codec whose converter does the structuring.

    Returns:
        ``None`` when no parameter needs checking (no annotations, or only ``Any`` and
        ``object``), so the hot path can skip the step. Otherwise a function
        ``(args, kwargs) -> (args, kwargs)`` that replaces the values in place and returns the
        same list and dict; it raises :class:`ArgumentTypeError` (a ``TypeError``) naming the
        parameter, the expected and the given type when a value does not fit.
    """
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        logger.debug("no signature for %r (%s): arguments are passed as decoded", func, exc)
        return None
    hints = _resolve_hints(func)
    if not hints:
        return None
    fname = _func_name(func)
    positional: list[tuple[int, str, _Convert]] = []
    keyword: list[tuple[str, _Convert]] = []
    named: set[str] = set()  # names a keyword argument can bind to (not **kwargs)
    var_positional: tuple[int, str, _Convert] | None = None
    var_keyword: tuple[str, _Convert] | None = None
    for index, param in enumerate(signature.parameters.values()):
        kind = param.kind
        if kind is not param.POSITIONAL_ONLY and kind is not param.VAR_KEYWORD:
            named.add(param.name)
        if param.name not in hints:
            continue
        convert = _value_converter(codec, hints[param.name], f"parameter {param.name!r}", fname)
        if convert is None:
            continue
        if kind is param.VAR_POSITIONAL:
            var_positional = (index, param.name, convert)
        elif kind is param.VAR_KEYWORD:
            var_keyword = (param.name, convert)
        else:
            if kind is not param.KEYWORD_ONLY:
                positional.append((index, param.name, convert))
            if kind is not param.POSITIONAL_ONLY:
                keyword.append((param.name, convert))
    if not (positional or keyword or var_positional or var_keyword):
        return None
    return _build_arg_structurer(fname, positional, keyword, named, var_positional, var_keyword)


def make_return_structurer(
    func: Callable[..., Any], codec: ConverterOwner
) -> Callable[[Any], Any] | None:
    """Build the function that structures a remote result into ``func``'s return annotation.

    For ``async def`` the annotation already is the awaited type; a ``Coroutine[..., T]`` or
    ``Awaitable[T]`` annotation is unwrapped to ``T``. A stream annotation (``Iterator[T]``,
    ``Generator[T, ...]``, ``AsyncIterator[T]``, ``AsyncGenerator[T, ...]``) gives a per-item
    structurer to apply to each received item.

    Returns:
        ``None`` when nothing needs structuring (no or a plain return annotation, or one that
        cannot be resolved); otherwise a function ``value -> structured value`` that raises
        :class:`PayloadStructureError` when the value does not fit.
    """
    tp = _resolve_hints(func).get("return")
    if tp is None:
        return None
    fname = _func_name(func)
    origin = typing.get_origin(tp)
    tp_args = typing.get_args(tp)
    if origin is collections.abc.Coroutine and len(tp_args) == 3:
        tp = tp_args[2]
    elif origin is collections.abc.Awaitable and tp_args:
        tp = tp_args[0]
    if tp in _STREAM_ORIGINS:  # bare Iterator etc.: items of any type
        return None
    stream = typing.get_origin(tp) in _STREAM_ORIGINS
    if stream:
        tp_args = typing.get_args(tp)
        tp = tp_args[0] if tp_args else Any
    label = f"{'stream item' if stream else 'return value'} of {fname}()"
    convert = _value_converter(codec, tp, "return annotation", fname)
    if convert is None:
        return None

    def structure_return(value: Any) -> Any:
        try:
            return convert(value)
        except _Mismatch as exc:
            raise exc.to_error(label) from exc.cause

    return structure_return


def _build_arg_structurer(
    fname: str,
    positional: list[tuple[int, str, _Convert]],
    keyword: list[tuple[str, _Convert]],
    named: set[str],
    var_positional: tuple[int, str, _Convert] | None,
    var_keyword: tuple[str, _Convert] | None,
) -> ArgStructurer:
    positional_slots = tuple(positional)
    keyword_slots = tuple(keyword)
    named_set = frozenset(named)

    def structure_args(args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        # `where` only feeds the error message: keep it a plain assignment on the success path.
        where: str | int = ""
        try:
            count = len(args)
            for index, name, convert in positional_slots:
                if index < count:
                    where = name
                    args[index] = convert(args[index])
            if var_positional is not None:
                convert = var_positional[2]
                for index in range(var_positional[0], count):
                    where = index
                    args[index] = convert(args[index])
            if kwargs:
                for name, convert in keyword_slots:
                    if name in kwargs:
                        where = name
                        kwargs[name] = convert(kwargs[name])
                if var_keyword is not None:
                    convert = var_keyword[1]
                    for key in kwargs:
                        if key not in named_set:
                            where = key
                            kwargs[key] = convert(kwargs[key])
        except _Mismatch as exc:
            label = f"{_arg_label(where)} of {fname}()"
            raise exc.to_error(label, ArgumentTypeError) from exc.cause
        return args, kwargs

    def _arg_label(where: str | int) -> str:
        if isinstance(where, int) and var_positional is not None:
            return f"argument *{var_positional[1]}[{where - var_positional[0]}]"
        if var_keyword is not None and where not in named_set:
            return f"argument **{var_keyword[0]}[{where!r}]"
        return f"argument {where!r}"

    return structure_args


def _value_converter(codec: ConverterOwner, tp: Any, what: str, fname: str) -> _Convert | None:
    """Return a one-value converter into ``tp`` raising `_Mismatch`, or None if not needed."""
    if not _needs_structuring(tp):
        return None
    try:
        hook = codec.converter.get_structure_hook(tp)
    except Exception as exc:
        logger.debug(
            "%s of %s(): cannot structure %s (%s); values are passed as decoded",
            what,
            fname,
            type_name(tp),
            exc,
        )
        return None
    exact = _exact_types(tp)

    def convert(value: Any) -> Any:
        if type(value) in exact:
            return value
        try:
            return hook(value, tp)
        except Exception as exc:
            raise _Mismatch(tp, value, exc) from exc

    return convert


def _needs_structuring(tp: Any) -> bool:
    try:
        return tp not in _UNCHECKED
    except TypeError:  # an unhashable annotation: let cattrs decide what it means
        return True


def _exact_types(tp: Any) -> frozenset[type]:
    """Classes whose instances already are a valid value for ``tp`` (passed through as is)."""
    members = typing.get_args(tp) if typing.get_origin(tp) in UNION_ORIGINS else (tp,)
    return frozenset(
        member
        for member in members
        if isinstance(member, type) and typing.get_origin(member) is None
    )


def _resolve_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations of ``func``; unresolvable ones are left out (and logged)."""
    target = _annotated_target(func)
    try:
        return typing.get_type_hints(target)
    except Exception:
        pass
    # Resolve one annotation at a time so one bad forward reference only costs its parameter.
    raw = getattr(target, "__annotations__", None)
    if not isinstance(raw, dict):
        return {}
    globalns = getattr(inspect.unwrap(target), "__globals__", {})
    hints: dict[str, Any] = {}
    for name, annotation in raw.items():
        holder = types.SimpleNamespace(__annotations__={name: annotation})
        try:
            hints[name] = typing.get_type_hints(holder, globalns=globalns)[name]
        except Exception as exc:
            logger.debug(
                "cannot resolve annotation %r of %r in %s() (%s); its values are passed as decoded",
                annotation,
                name,
                _func_name(func),
                exc,
            )
    return hints


def _annotated_target(func: Callable[..., Any]) -> Any:
    """The object that carries ``func``'s annotations."""
    if isinstance(func, functools.partial):
        return _annotated_target(func.func)
    if inspect.isclass(func):
        return func.__init__
    if inspect.isroutine(func):
        return func
    # A callable object: its annotations live on the class's __call__.
    return type(func).__call__ if callable(func) else func


def _func_name(func: Callable[..., Any]) -> str:
    if isinstance(func, functools.partial):
        return _func_name(func.func)
    return str(getattr(func, "__qualname__", None) or getattr(type(func), "__qualname__", func))


def mismatch_message(label: str, tp: Any, value: Any, exc: Exception) -> str:
    given = type(value).__qualname__
    message = f"{label} expects {type_name(tp)}, got {_repr.repr(value)} of type {given}"
    if isinstance(exc, WrongShape):  # its text would only repeat the message
        return message
    cattrs_module = sys.modules.get("cattrs")  # only cattrs itself raises its errors
    if cattrs_module is not None and isinstance(exc, cattrs_module.BaseValidationError):
        details = cattrs_module.transform_error(exc)
        more = f" and {len(details) - 3} more" if len(details) > 3 else ""
        return f"{message} ({'; '.join(details[:3])}{more})"
    detail = str(exc)
    return f"{message} ({detail})" if detail else message
