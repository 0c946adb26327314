"""``Global.call``: call a callback by its name, with no fetcher declared (daffi 2's ``g.call``).

``g.call.add(1, 2) & FG`` runs the call with the modifier; ``(g.call.add & FG)(1, 2)`` is the
same with the modifier given first; ``g.call.add(1, 2)`` alone and ``g.call.add & FG`` alone
send nothing. The methods ``fg``, ``bg``, ``broadcast``, ``period`` and ``stream`` of a
:class:`RemoteCall` spell the modifiers out, and each has an ``_async`` twin for async code.

Every call goes through the Global's ``Execution``, the path fetchers take: a call by name
means exactly what a ``@fetcher`` of that name (a proxy: no body) means with that modifier.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from daffi._context import Arguments, Fetching
from daffi.exceptions import GlobalContextError, InitializationError, UnableToFindCandidate
from daffi.execution_modifiers import (
    BG,
    BROADCAST,
    FG,
    PERIOD,
    AtTime,
    Duration,
    ExecModifier,
    normalize_modifier,
)
from daffi.registry._args import arguments_from_body, arguments_from_items

if TYPE_CHECKING:
    from daffi._node import Node
    from daffi._protocol import CallbackInfo
    from daffi._results import AsyncResult, ScheduledTask

__all__ = ["LazyRemoteCall", "ModifiedCall", "RemoteCall", "RemoteCalls"]

R = TypeVar("R")


class _Caller:
    """What a remote call needs of its Global: how calls run, and its node's directory."""

    __slots__ = ("execution", "node_of")

    def __init__(self, execution: Fetching, node_of: Callable[[], Node | None]) -> None:
        self.execution: Fetching = execution
        #: returns the Global's node (None before it starts or without one)
        self.node_of: Callable[[], Node | None] = node_of

    def info(self, name: str) -> CallbackInfo | None:
        node: Node | None = self.node_of()
        if node is None:
            return None
        try:
            return node.directory.target_info(name, None)
        except UnableToFindCandidate:
            return None


class _Named:
    """A callback known by its name: whether a connected node offers it, and what it
    advertises."""

    __slots__ = ("_caller", "func_name")

    _caller: _Caller
    func_name: str

    @property
    def info(self) -> CallbackInfo | None:
        """What a node offering the callback advertises (its parameters, whether it is
        async or a generator), or None if no connected node offers it."""
        return self._caller.info(self.func_name)

    @property
    def exists(self) -> bool:
        """Whether a connected node offers the callback."""
        return self.info is not None


class RemoteCall(_Named):
    """One call of callback ``name`` with its arguments, not sent yet.

    ``& modifier`` (or one of the methods) sends it; until then nothing happens.
    """

    __slots__ = ("args", "kwargs")

    def __init__(
        self, caller: _Caller, func_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._caller: _Caller = caller
        self.func_name: str = func_name
        self.args: tuple[Any, ...] = args
        self.kwargs: dict[str, Any] = kwargs

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"<RemoteCall {self.func_name}({', '.join(parts)})>"

    # ------------------------------------------------------------------ with a modifier

    @overload
    def __and__(self, modifier: FG | type[FG]) -> Any: ...
    @overload
    def __and__(self, modifier: BG | type[BG]) -> AsyncResult | None: ...
    @overload
    def __and__(self, modifier: BROADCAST | type[BROADCAST]) -> Any: ...
    @overload
    def __and__(self, modifier: PERIOD) -> ScheduledTask: ...
    def __and__(self, modifier: object) -> Any:
        """Send the call as ``modifier`` says (blocking for ``FG`` and ``BROADCAST`` with a
        result) and return what a fetcher with that modifier returns."""
        return self.run(_modifier(modifier, self.func_name))

    def run(self, modifier: ExecModifier) -> Any:
        """Send the call as ``modifier`` says (what ``& modifier`` does)."""
        return self._caller.execution.execute(
            self.func_name, self.args, self.kwargs, normalize_modifier(modifier), None
        )

    async def run_async(self, modifier: ExecModifier) -> Any:
        """Async twin of :meth:`run`: awaited on any loop, never blocks it."""
        return await self._caller.execution.execute_async(
            self.func_name, self.args, self.kwargs, normalize_modifier(modifier), None
        )

    # ------------------------------------------------------------------ spelled out

    def fg(self, timeout: Duration | None = None, receiver: str | None = None) -> Any:
        """``& FG(timeout, receiver)``: block until the result comes back."""
        return self.run(FG(timeout=timeout, receiver=receiver))

    def bg(
        self,
        timeout: Duration | None = None,
        eta: Duration | None = None,
        return_result: bool = True,
        receiver: str | None = None,
    ) -> AsyncResult | None:
        """``& BG(...)``: an :class:`~daffi.AsyncResult` at once (None without a result)."""
        result: AsyncResult | None = self.run(
            BG(timeout=timeout, eta=eta, return_result=return_result, receiver=receiver)
        )
        return result

    def broadcast(
        self,
        eta: Duration | None = None,
        return_result: bool = False,
        timeout: Duration | None = None,
    ) -> Any:
        """``& BROADCAST(...)``: every node offering the callback runs it. As in daffi 2,
        without a result unless ``return_result=True`` (then ``{process_name: result}``)."""
        return self.run(BROADCAST(eta=eta, timeout=timeout, return_result=return_result))

    def period(
        self,
        at_time: AtTime | Sequence[AtTime] | AbstractSet[AtTime] | None = None,
        interval: Duration | None = None,
        receiver: str | None = None,
        **options: Any,
    ) -> ScheduledTask:
        """``& PERIOD(...)``: schedule the callback on a node (``options``: the other
        arguments of :class:`~daffi.PERIOD`, such as ``cron`` or ``durable``)."""
        task: ScheduledTask = self.run(
            PERIOD(at_time=at_time, interval=interval, receiver=receiver, **options)
        )
        return task

    def stream(
        self, async_: bool = False, receiver: str | None = None, timeout: Duration | None = None
    ) -> AsyncResult | None:
        """Stream the items of the call's one argument, an iterable, to the callback: each
        item is one call (mapped like a fetcher's return value: ``Args``, a tuple, or one
        value), in order, on one node. Returns once every item was processed; with
        ``async_=True`` (daffi 2's name) at once, with an :class:`~daffi.AsyncResult`."""
        items = _items(self)
        if not isinstance(items, Iterable):
            raise InitializationError(
                f"stream() sends the items of an iterable: g.call.{self.func_name}(items)"
                f".stream(); got {type(items).__name__}"
            )
        pairs: Iterator[Arguments] = (arguments_from_body(item) for item in items)
        modifier = BG if async_ else FG
        result: AsyncResult | None = self._caller.execution.stream_in(
            self.func_name, pairs, modifier(timeout=timeout, receiver=receiver)
        )
        return result

    async def fg_async(self, timeout: Duration | None = None, receiver: str | None = None) -> Any:
        """Async twin of :meth:`fg`."""
        return await self.run_async(FG(timeout=timeout, receiver=receiver))

    async def bg_async(
        self,
        timeout: Duration | None = None,
        eta: Duration | None = None,
        return_result: bool = True,
        receiver: str | None = None,
    ) -> AsyncResult | None:
        """Async twin of :meth:`bg`."""
        result: AsyncResult | None = await self.run_async(
            BG(timeout=timeout, eta=eta, return_result=return_result, receiver=receiver)
        )
        return result

    async def broadcast_async(
        self,
        eta: Duration | None = None,
        return_result: bool = False,
        timeout: Duration | None = None,
    ) -> Any:
        """Async twin of :meth:`broadcast`."""
        return await self.run_async(
            BROADCAST(eta=eta, timeout=timeout, return_result=return_result)
        )

    async def period_async(
        self,
        at_time: AtTime | Sequence[AtTime] | AbstractSet[AtTime] | None = None,
        interval: Duration | None = None,
        receiver: str | None = None,
        **options: Any,
    ) -> ScheduledTask:
        """Async twin of :meth:`period`."""
        task: ScheduledTask = await self.run_async(
            PERIOD(at_time=at_time, interval=interval, receiver=receiver, **options)
        )
        return task

    async def stream_async(
        self, receiver: str | None = None, timeout: Duration | None = None
    ) -> None:
        """Async twin of :meth:`stream`: the argument may be an iterable or an async
        iterable."""
        items = _items(self)
        if isinstance(items, AsyncIterable):
            source: AsyncIterable[Any] = items
        elif isinstance(items, Iterable):
            source = _aiter(items)
        else:
            raise InitializationError(
                f"stream_async() sends the items of an iterable or async iterable: "
                f"g.call.{self.func_name}(items).stream_async(); got {type(items).__name__}"
            )
        await self._caller.execution.stream_in_async(
            self.func_name, arguments_from_items(source), FG(timeout=timeout, receiver=receiver)
        )


class ModifiedCall(_Named, Generic[R]):
    """``g.call.name & modifier``: callback ``name`` with the modifier its call runs with;
    calling it sends the call (``(g.call.add & FG)(1, 2)`` is ``g.call.add(1, 2) & FG``)."""

    __slots__ = ("modifier",)

    def __init__(self, caller: _Caller, func_name: str, modifier: ExecModifier) -> None:
        self._caller: _Caller = caller
        self.func_name: str = func_name
        self.modifier: ExecModifier = modifier

    def __repr__(self) -> str:
        return f"<ModifiedCall {self.func_name} & {self.modifier!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        result: R = RemoteCall(self._caller, self.func_name, args, kwargs).run(self.modifier)
        return result


class LazyRemoteCall(_Named):
    """``g.call.name``: callback ``name``, not called yet; calling it with arguments gives
    the :class:`RemoteCall`, ``& modifier`` the :class:`ModifiedCall`."""

    __slots__ = ()

    def __init__(self, caller: _Caller, func_name: str) -> None:
        self._caller: _Caller = caller
        self.func_name: str = func_name

    def __repr__(self) -> str:
        return f"<LazyRemoteCall {self.func_name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> RemoteCall:
        """The :class:`RemoteCall` with these arguments (nothing is sent)."""
        return RemoteCall(self._caller, self.func_name, args, kwargs)

    @overload
    def __and__(self, modifier: FG | type[FG]) -> ModifiedCall[Any]: ...
    @overload
    def __and__(self, modifier: BG | type[BG]) -> ModifiedCall[AsyncResult | None]: ...
    @overload
    def __and__(self, modifier: BROADCAST | type[BROADCAST]) -> ModifiedCall[Any]: ...
    @overload
    def __and__(self, modifier: PERIOD) -> ModifiedCall[ScheduledTask]: ...
    def __and__(self, modifier: object) -> ModifiedCall[Any]:
        """The callback with the modifier its call will run with (nothing is sent)."""
        return ModifiedCall(self._caller, self.func_name, _modifier(modifier, self.func_name))


class RemoteCalls:
    """What ``Global.call`` returns: ``g.call.<name>`` (or ``g.call["name"]`` for a name
    that is not an identifier) is a :class:`LazyRemoteCall` of that callback."""

    __slots__ = ("_caller",)

    def __init__(self, execution: Fetching, node_of: Callable[[], Node | None]) -> None:
        self._caller: _Caller = _Caller(execution, node_of)

    def __getattr__(self, name: str) -> LazyRemoteCall:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # copy, pickle and the like probe for these
        return LazyRemoteCall(self._caller, name)

    def __getitem__(self, name: str) -> LazyRemoteCall:
        if not isinstance(name, str) or not name:
            raise GlobalContextError(
                f"a callback's name is a non-empty string; got g.call[{name!r}]"
            )
        return LazyRemoteCall(self._caller, name)

    def __repr__(self) -> str:
        return "<RemoteCalls: g.call.<callback name>(*args, **kwargs) & FG>"


def _modifier(value: object, name: str) -> ExecModifier:
    try:
        return normalize_modifier(value)
    except InitializationError as exc:
        if isinstance(value, type) and issubclass(value, PERIOD):
            raise
        raise InitializationError(
            f"g.call.{name}(...) & X needs an execution modifier (FG, BG, BROADCAST or "
            f"PERIOD(...)) as X; got {value!r}"
        ) from exc


def _items(call: RemoteCall) -> object:
    if len(call.args) != 1 or call.kwargs:
        raise InitializationError(
            f"a stream sends the items of one iterable: g.call.{call.func_name}(items).stream()"
        )
    return call.args[0]


async def _aiter(items: Iterable[Any]) -> Any:
    for item in items:
        yield item
