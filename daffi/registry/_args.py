"""``Args`` and ``__body_unknown__``: what fetcher bodies use to say what is sent."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, ClassVar

__all__ = ["Args", "__body_unknown__", "arguments_from_body", "arguments_from_items"]


class Args:
    """Exact positional and keyword arguments for the remote callback.

    A fetcher body that returns (or a generator fetcher that yields) ``Args(1, 2, c=3)`` sends
    ``(1, 2)`` and ``{"c": 3}``.
    """

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args: tuple[Any, ...] = args
        self.kwargs: dict[str, Any] = kwargs

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Args({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Args):
            return NotImplemented
        return self.args == other.args and self.kwargs == other.kwargs

    __hash__: ClassVar[None] = None  # type: ignore[assignment]


class __body_unknown__:
    """Placeholder body for proxy fetchers: ``__body_unknown__(a, b)`` does nothing."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __reduce__(self) -> tuple[type[__body_unknown__], tuple[()]]:
        return (type(self), ())


def arguments_from_body(result: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Map what a fetcher body returned to ``(args, kwargs)``.

    ``Args`` is taken as is, a tuple is the positional arguments, anything else is the one
    positional argument.
    """
    if isinstance(result, Args):
        return result.args, result.kwargs
    if isinstance(result, tuple):
        return result, {}
    return (result,), {}


async def arguments_from_items(
    items: AsyncIterable[Any],
) -> AsyncIterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Map each item of a stream (an async generator fetcher's, ``g.call.f(items)``'s) to
    ``(args, kwargs)``, as :func:`arguments_from_body` maps one."""
    async for item in items:
        yield arguments_from_body(item)
