"""``@alias`` and ``@local``: marks read when callbacks and fetchers are registered."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar, overload

from daffi.exceptions import InitializationError
from daffi.registry._roles import Role, is_instance

__all__ = ["alias", "alias_of", "is_local", "local", "refused"]

F = TypeVar("F")

_ALIAS = "__daffi_alias__"
_LOCAL = "__daffi_local__"


def alias(value: str) -> Callable[[F], F]:
    """Give a callback or fetcher another remote name; works above or below the decorator.

    Raises:
        ValueError: ``value`` is not a non-empty string.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("Alias must be string.")

    def mark(target: F) -> F:
        if isinstance(getattr(type(target), "alias", None), property):
            setattr(target, "alias", value)  # noqa: B010 - a callback/fetcher object re-keys
            return target
        func: Any = target.__func__ if isinstance(target, staticmethod | classmethod) else target
        setattr(func, _ALIAS, value)
        with contextlib.suppress(AttributeError, TypeError):
            func.alias = value  # daffi 2 reads .alias
        return target

    return mark


def alias_of(target: Any) -> str | None:
    """The alias set on ``target`` (or on the function it wraps), if any."""
    func = target.__func__ if isinstance(target, staticmethod | classmethod) else target
    value = getattr(func, _ALIAS, None)
    return value if isinstance(value, str) else None


@overload
def local(fn: F) -> F: ...
@overload
def local(fn: None = None) -> Callable[[F], F]: ...
def local(fn: Any = None) -> Any:
    """Keep a method of a ``Callback`` or ``Fetcher`` class local (not remote).

    Usable as ``@local`` or ``@local()``. Only for methods of those classes: on a function
    decorated ``@callback`` or ``@fetcher`` (in either order) it is refused, since it would
    not stop the function being offered or calling remotely.

    Raises:
        InitializationError: ``@local`` over a ``@callback`` or ``@fetcher`` function.
    """

    def mark(target: Any) -> Any:
        if is_instance(target, Role.CALLBACK):
            target.withdraw()  # refused: it must not stay offered
            raise refused(target)
        if is_instance(target, Role.FETCHER):
            raise refused(target)
        func: Any = target.__func__ if isinstance(target, staticmethod | classmethod) else target
        setattr(func, _LOCAL, True)
        with contextlib.suppress(AttributeError, TypeError):
            func.local = True
        return target

    return mark if fn is None else mark(fn)


def refused(target: Any) -> InitializationError:
    """The error for ``@local`` and ``@callback``/``@fetcher`` on one plain function."""
    name = getattr(target, "__name__", repr(target))
    return InitializationError(
        f"@local on the function {name!r} has no effect: @local keeps a method of a Callback "
        "or Fetcher class local; to keep a plain function local, do not decorate it with "
        "@callback or @fetcher"
    )


def is_local(target: Any) -> bool:
    func = target.__func__ if isinstance(target, staticmethod | classmethod) else target
    return bool(getattr(func, _LOCAL, False))
