"""Errors of calls this process made, told apart from daffi's answers about calls it runs.

A daffi error raised by a call this process made (a fetcher's call, a ``g.call``, a method of
``Global``) is marked where it leaves daffi's public entry points. When such an error
escapes a callback, its caller gets a `RemoteCallError` that is also of that daffi class,
naming this process (see `daffi.exceptions.error_info_from_exception`), instead of what
would look like an error of the caller's own call.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from daffi.exceptions import OUTGOING_MARK, DaffiError

__all__ = ["mark_outgoing", "outgoing_errors"]

F = TypeVar("F", bound=Callable[..., Any])


def mark_outgoing(exc: DaffiError) -> None:
    """Mark ``exc`` as the error of a call this process made (see `outgoing_errors`)."""
    setattr(exc, OUTGOING_MARK, True)


def outgoing_errors(func: F) -> F:
    """Mark the daffi errors ``func`` raises as errors of a call this process made (a
    fetcher's call, a ``g.call``, a method of ``Global``), for when they escape a callback:
    the callback's caller then gets a `RemoteCallError` that is also of that daffi class,
    naming this process, instead of what looks like an error of its own call."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def marked_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except DaffiError as exc:
                mark_outgoing(exc)
                raise

        return cast("F", marked_async)

    @functools.wraps(func)
    def marked(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DaffiError as exc:
            mark_outgoing(exc)
            raise

    return cast("F", marked)
