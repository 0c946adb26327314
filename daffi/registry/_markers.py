"""``@alias`` and ``@local``: marks read when callbacks and fetchers are registered."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar, overload

__all__ = ["alias", "alias_of", "is_local", "local"]

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

    Usable as ``@local`` or ``@local()``.
    """

    def mark(target: Any) -> Any:
        func: Any = target.__func__ if isinstance(target, staticmethod | classmethod) else target
        setattr(func, _LOCAL, True)
        with contextlib.suppress(AttributeError, TypeError):
            func.local = True
        return target

    return mark if fn is None else mark(fn)


def is_local(target: Any) -> bool:
    func = target.__func__ if isinstance(target, staticmethod | classmethod) else target
    return bool(getattr(func, _LOCAL, False))
