"""What type checkers see of ``@fetcher`` and ``@callback``: the decorated signature, kept.

At run time ``@fetcher`` makes a :class:`~daffi.registry._fetcher.FetcherFunction` whatever the
function; a type checker sees one of the protocols below instead, chosen by the decorator's
execution modifier and by whether the function is ``async def``, so that calling the fetcher
checks the arguments against the function's parameters (a ``ParamSpec``) and returns what
the call really returns:

==========================  ===========================  =====================================
modifier                    ``def`` fetcher returns      ``async def`` fetcher returns
==========================  ===========================  =====================================
``FG`` (the default)        ``T``                        an awaitable of ``T``
``BG``                      ``AsyncResult[T]``           an awaitable of ``AsyncResult[T]``
``BROADCAST``               ``dict[str, T]``             an awaitable of ``dict[str, T]``
``PERIOD(...)``             ``ScheduledTask``            an awaitable of ``ScheduledTask``
==========================  ===========================  =====================================

``T`` is the function's return annotation. ``.call(*args, exec_modifier=X, **kwargs)`` returns
by the same table for ``X``; its arguments are not checked (a ``ParamSpec`` cannot be combined
with the extra keyword ``exec_modifier``). Fire-and-forget calls (``BG(return_result=False)``,
``BROADCAST(return_result=False)``) return None, which no type can tell from the modifier's
class.

The public methods of a ``Fetcher`` subclass are typed the same way by the ``daffi.mypy``
plugin: it applies one of the typing-only functions at the end of this module to each (by the
class's ``exec_modifier``), which makes the method a `SyncFetcherMethod` or
`AsyncFetcherMethod`, a descriptor that gives the fetcher protocols on an instance.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

if TYPE_CHECKING:
    from daffi._results import AsyncResult, ScheduledTask
    from daffi.execution_modifiers import BG, BROADCAST, FG, PERIOD

__all__ = [
    "AsyncFetcherFunction",
    "AsyncFetcherMethod",
    "FetcherDecorator",
    "SyncFetcherFunction",
    "SyncFetcherMethod",
]

P = ParamSpec("P")
P2 = ParamSpec("P2")
T = TypeVar("T")
T2 = TypeVar("T2")
C_co = TypeVar("C_co", covariant=True)


class _Attributes(Protocol):
    """What every fetcher has: the function, its remote name, proxy or body, modifier."""

    @property
    def wrapped(self) -> Callable[..., Any]: ...
    @property
    def alias(self) -> str: ...
    @property
    def proxy(self) -> bool: ...
    @property
    def exec_modifier(self) -> FG | BG | BROADCAST | PERIOD | type[FG | BG | BROADCAST]: ...
    @property
    def g(self) -> Any: ...


class SyncFetcherFunction(_Attributes, Protocol[P, T, C_co]):
    """A ``def`` fetcher: ``P`` its parameters, ``T`` its result, calling it returns ``C_co``."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> C_co: ...

    @overload
    def call(self, *args: Any, exec_modifier: None = None, **kwargs: Any) -> C_co: ...
    @overload
    def call(self, *args: Any, exec_modifier: FG | type[FG], **kwargs: Any) -> T: ...
    @overload
    def call(self, *args: Any, exec_modifier: BG | type[BG], **kwargs: Any) -> AsyncResult[T]: ...
    @overload
    def call(
        self, *args: Any, exec_modifier: BROADCAST | type[BROADCAST], **kwargs: Any
    ) -> dict[str, T]: ...
    @overload
    def call(self, *args: Any, exec_modifier: PERIOD, **kwargs: Any) -> ScheduledTask: ...


class AsyncFetcherFunction(_Attributes, Protocol[P, T, C_co]):
    """An ``async def`` fetcher: like `SyncFetcherFunction`, every call is awaited."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, C_co]: ...

    @overload
    def call(
        self, *args: Any, exec_modifier: None = None, **kwargs: Any
    ) -> Coroutine[Any, Any, C_co]: ...
    @overload
    def call(
        self, *args: Any, exec_modifier: FG | type[FG], **kwargs: Any
    ) -> Coroutine[Any, Any, T]: ...
    @overload
    def call(
        self, *args: Any, exec_modifier: BG | type[BG], **kwargs: Any
    ) -> Coroutine[Any, Any, AsyncResult[T]]: ...
    @overload
    def call(
        self, *args: Any, exec_modifier: BROADCAST | type[BROADCAST], **kwargs: Any
    ) -> Coroutine[Any, Any, dict[str, T]]: ...
    @overload
    def call(
        self, *args: Any, exec_modifier: PERIOD, **kwargs: Any
    ) -> Coroutine[Any, Any, ScheduledTask]: ...


class FetcherDecorator(Protocol[C_co]):
    """``@fetcher(modifier)``: the decorator it returns (``C_co`` marks the modifier)."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self: FetcherDecorator[_FG], fn: Callable[P2, Coroutine[Any, Any, T2]], /
    ) -> AsyncFetcherFunction[P2, T2, T2]: ...
    @overload
    def __call__(
        self: FetcherDecorator[_FG], fn: Callable[P2, T2], /
    ) -> SyncFetcherFunction[P2, T2, T2]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self: FetcherDecorator[_BG], fn: Callable[P2, Coroutine[Any, Any, T2]], /
    ) -> AsyncFetcherFunction[P2, T2, AsyncResult[T2]]: ...
    @overload
    def __call__(
        self: FetcherDecorator[_BG], fn: Callable[P2, T2], /
    ) -> SyncFetcherFunction[P2, T2, AsyncResult[T2]]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self: FetcherDecorator[_Broadcast], fn: Callable[P2, Coroutine[Any, Any, T2]], /
    ) -> AsyncFetcherFunction[P2, T2, dict[str, T2]]: ...
    @overload
    def __call__(
        self: FetcherDecorator[_Broadcast], fn: Callable[P2, T2], /
    ) -> SyncFetcherFunction[P2, T2, dict[str, T2]]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self: FetcherDecorator[_Period], fn: Callable[P2, Coroutine[Any, Any, T2]], /
    ) -> AsyncFetcherFunction[P2, T2, ScheduledTask]: ...
    @overload
    def __call__(
        self: FetcherDecorator[_Period], fn: Callable[P2, T2], /
    ) -> SyncFetcherFunction[P2, T2, ScheduledTask]: ...


# Markers for FetcherDecorator's type argument (never instantiated).
class _FG:
    pass


class _BG:
    pass


class _Broadcast:
    pass


class _Period:
    pass


class SyncFetcherMethod(Protocol[P, T, C_co]):
    """A ``def`` method of a ``Fetcher`` subclass: read on an instance, a `SyncFetcherFunction`.

    ``P`` is the method's parameters without ``self``; read on the class, the method stays
    this descriptor.
    """

    @property
    def wrapped(self) -> Callable[..., Any]: ...
    @overload
    def __get__(
        self, instance: None, owner: type[Any] | None = None, /
    ) -> SyncFetcherMethod[P, T, C_co]: ...
    @overload
    def __get__(
        self, instance: object, owner: type[Any] | None = None, /
    ) -> SyncFetcherFunction[P, T, C_co]: ...


class AsyncFetcherMethod(Protocol[P, T, C_co]):
    """An ``async def`` method of a ``Fetcher`` subclass: on an instance, an
    `AsyncFetcherFunction`."""

    @property
    def wrapped(self) -> Callable[..., Any]: ...
    @overload
    def __get__(
        self, instance: None, owner: type[Any] | None = None, /
    ) -> AsyncFetcherMethod[P, T, C_co]: ...
    @overload
    def __get__(
        self, instance: object, owner: type[Any] | None = None, /
    ) -> AsyncFetcherFunction[P, T, C_co]: ...


# What the daffi.mypy plugin applies to each public method of a Fetcher subclass, chosen by
# the class's ``exec_modifier`` (``unknown_method``: one the plugin cannot read, calls are
# Any). Typing only: nothing calls them, at run time ``Fetcher.__init_subclass__`` converts
# the methods.
if TYPE_CHECKING:

    @overload
    def fg_method(  # type: ignore[overload-overlap]
        fn: Callable[Concatenate[Any, P2], Coroutine[Any, Any, T2]], /
    ) -> AsyncFetcherMethod[P2, T2, T2]: ...
    @overload
    def fg_method(fn: Callable[Concatenate[Any, P2], T2], /) -> SyncFetcherMethod[P2, T2, T2]: ...
    def fg_method(fn: Any, /) -> Any: ...
    @overload
    def bg_method(  # type: ignore[overload-overlap]
        fn: Callable[Concatenate[Any, P2], Coroutine[Any, Any, T2]], /
    ) -> AsyncFetcherMethod[P2, T2, AsyncResult[T2]]: ...
    @overload
    def bg_method(
        fn: Callable[Concatenate[Any, P2], T2], /
    ) -> SyncFetcherMethod[P2, T2, AsyncResult[T2]]: ...
    def bg_method(fn: Any, /) -> Any: ...
    @overload
    def broadcast_method(  # type: ignore[overload-overlap]
        fn: Callable[Concatenate[Any, P2], Coroutine[Any, Any, T2]], /
    ) -> AsyncFetcherMethod[P2, T2, dict[str, T2]]: ...
    @overload
    def broadcast_method(
        fn: Callable[Concatenate[Any, P2], T2], /
    ) -> SyncFetcherMethod[P2, T2, dict[str, T2]]: ...
    def broadcast_method(fn: Any, /) -> Any: ...
    @overload
    def period_method(  # type: ignore[overload-overlap]
        fn: Callable[Concatenate[Any, P2], Coroutine[Any, Any, T2]], /
    ) -> AsyncFetcherMethod[P2, T2, ScheduledTask]: ...
    @overload
    def period_method(
        fn: Callable[Concatenate[Any, P2], T2], /
    ) -> SyncFetcherMethod[P2, T2, ScheduledTask]: ...
    def period_method(fn: Any, /) -> Any: ...
    @overload
    def unknown_method(  # type: ignore[overload-overlap]
        fn: Callable[Concatenate[Any, P2], Coroutine[Any, Any, T2]], /
    ) -> AsyncFetcherMethod[P2, T2, Any]: ...
    @overload
    def unknown_method(
        fn: Callable[Concatenate[Any, P2], T2], /
    ) -> SyncFetcherMethod[P2, T2, Any]: ...
    def unknown_method(fn: Any, /) -> Any: ...
