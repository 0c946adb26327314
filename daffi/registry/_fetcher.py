"""Fetchers: local stand-ins that run the remote callback of the same name.

A fetcher whose body has no ``return`` with a value (``pass``, ``...``, a docstring,
``__body_unknown__(...)``) is a *proxy*: its arguments are sent as given. Otherwise the body
runs locally first and what it returns is sent (see :func:`arguments_from_body`).

An annotated fetcher checks the arguments it is given against its annotations before
anything is sent (:class:`~daffi._structure.ArgumentTypeError`, a ``TypeError``).

At run time ``fetcher`` is the class :class:`FetcherFunction`; type checkers see overloads
that keep the decorated function's signature instead (see :mod:`daffi.registry._typing`).
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, TypeVar, cast, overload

from daffi._codec import default_codec, make_arg_structurer, make_return_structurer
from daffi._context import current_global, current_global_or_none
from daffi.exceptions import InitializationError
from daffi.execution_modifiers import FG, ExecModifier, is_exec_modifier, normalize_modifier
from daffi.registry._args import arguments_from_body, arguments_from_items
from daffi.registry._inspect import function_kind, has_body
from daffi.registry._markers import alias_of, is_local, refused
from daffi.registry._roles import Role, declare, is_instance, is_subclass

if TYPE_CHECKING:
    from daffi.execution_modifiers import BG, BROADCAST, PERIOD
    from daffi.registry._typing import (
        _BG,
        _FG,
        AsyncFetcherFunction,
        FetcherDecorator,
        SyncFetcherFunction,
        _Broadcast,
        _Period,
    )

__all__ = ["Fetcher", "FetcherFunction", "fetcher"]

P = ParamSpec("P")
T = TypeVar("T")


class _FetcherCore:
    """What a fetcher function is, decided once: name, proxy or body, sync or async."""

    def __init__(self, fn: Callable[..., Any], name: str, *, proxy: bool | None = None) -> None:
        if inspect.isclass(fn):
            raise InitializationError(
                f"Classes are not supported by @fetcher ({fn.__name__}). Use the Fetcher base "
                "class instead"
            )
        if not callable(fn):
            raise InitializationError(f"@fetcher needs a function, got {fn!r}")
        self.fn = fn
        self.name = name
        self.is_async, self.is_generator, self.is_async_generator = function_kind(fn)
        self.proxy = (not has_body(fn)) if proxy is None else proxy
        self.structure_result = make_return_structurer(fn, default_codec)
        self.check_args = make_arg_structurer(fn, default_codec)

    def check(self, bound: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ArgumentTypeError if an argument does not fit the fetcher's annotations.

        Works on copies: what is sent is what the caller gave (the callee structures it).
        """
        if self.check_args is not None:
            values = [bound, *args] if bound is not None else list(args)
            self.check_args(values, dict(kwargs))

    def arguments(
        self, bound: object, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.proxy:
            return args, kwargs
        result = self.fn(bound, *args, **kwargs) if bound is not None else self.fn(*args, **kwargs)
        return arguments_from_body(result)

    def invoke(
        self, bound: object, modifier: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        mod = normalize_modifier(modifier)
        self.check(bound, args, kwargs)
        if self.is_generator:
            items = (
                self.fn(bound, *args, **kwargs) if bound is not None else self.fn(*args, **kwargs)
            )
            return current_global()._execution.stream_in(
                self.name, (arguments_from_body(item) for item in items), mod
            )
        if self.is_async_generator:
            aitems = (
                self.fn(bound, *args, **kwargs) if bound is not None else self.fn(*args, **kwargs)
            )
            return current_global()._execution.stream_in_async(
                self.name, arguments_from_items(aitems), mod
            )
        if self.is_async:
            coro = cast(
                "types.CoroutineType[Any, Any, Any]", self._invoke_async(bound, mod, args, kwargs)
            )
            # Python's "coroutine ... was never awaited" warning and the coroutine's repr
            # name it by this: say which fetcher was called without `await`.
            coro.__qualname__ = f"fetcher {self.name}"
            coro.__name__ = self.name
            return coro
        call_args, call_kwargs = self.arguments(bound, args, kwargs)
        return current_global()._execution.execute(
            self.name, call_args, call_kwargs, mod, self.structure_result
        )

    async def _invoke_async(
        self, bound: object, mod: ExecModifier, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self.proxy:
            call_args, call_kwargs = args, kwargs
        else:
            coro = (
                self.fn(bound, *args, **kwargs) if bound is not None else self.fn(*args, **kwargs)
            )
            call_args, call_kwargs = arguments_from_body(await coro)
        return await current_global()._execution.execute_async(
            self.name, call_args, call_kwargs, mod, self.structure_result
        )


class FetcherFunction(Generic[P, T]):
    """Declare a fetcher: ``@fetcher``, ``@fetcher(FG)``, ``@fetcher(exec_modifier=X)``.

    Calling the fetcher runs the remote callback named like the function (or its ``@alias``)
    with the fetcher's execution modifier; ``.call(*args, exec_modifier=..., **kwargs)``
    overrides the modifier for one call. ``def`` fetchers block and return the result;
    ``async def`` fetchers return an awaitable usable from any asyncio or trio loop.
    Arguments are checked against the function's annotations before anything is sent.
    """

    def __new__(cls, fn: Any = None, *, exec_modifier: Any = None) -> Any:
        if fn is None or is_exec_modifier(fn):
            modifier = exec_modifier if fn is None else fn
            if modifier is not None:
                normalize_modifier(modifier)  # validate now, not at the first call

            def decorate(func: Callable[..., Any]) -> FetcherFunction[..., Any]:
                return cls(func, exec_modifier=modifier)

            return decorate
        if not callable(fn):
            normalize_modifier(fn)  # raises: "Invalid execution modifier ..."
        return super().__new__(cls)

    def __init__(self, fn: Any = None, *, exec_modifier: Any = None) -> None:
        proxy: bool | None = None
        if is_instance(fn, Role.CALLBACK):
            fn, proxy = fn.wrapped, True  # @fetcher over @callback: same function, remote call
        elif is_local(fn):
            raise refused(fn)
        self.wrapped: Callable[..., Any] = fn
        self._core = _FetcherCore(fn, alias_of(fn) or fn.__name__, proxy=proxy)
        self._exec_modifier: Any = FG
        self.exec_modifier = FG if exec_modifier is None else exec_modifier
        functools.update_wrapper(self, fn)

    @property
    def exec_modifier(self) -> Any:
        return self._exec_modifier

    @exec_modifier.setter
    def exec_modifier(self, value: Any) -> None:
        normalize_modifier(value)
        self._exec_modifier = value

    @property
    def alias(self) -> str:
        return self._core.name

    @alias.setter
    def alias(self, value: str) -> None:
        self._core.name = value

    @property
    def proxy(self) -> bool:
        return self._core.proxy

    @proxy.setter
    def proxy(self, value: bool) -> None:
        self._core.proxy = bool(value)

    @property
    def g(self) -> Any:
        """The Global this fetcher calls through right now (None if none is running)."""
        return current_global_or_none()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = self._core.invoke(None, self._exec_modifier, args, kwargs)
        return result

    def call(self, *args: Any, exec_modifier: Any = None, **kwargs: Any) -> Any:
        """Run the remote callback once with ``exec_modifier`` (default: the fetcher's)."""
        modifier = self._exec_modifier if exec_modifier is None else exec_modifier
        return self._core.invoke(None, modifier, args, kwargs)

    def __repr__(self) -> str:
        return f"<fetcher {self._core.name!r} {self._exec_modifier!r}>"


if TYPE_CHECKING:
    # Modifiers first: FG and the other modifier classes are callables too.
    @overload
    def fetcher(  # type: ignore[overload-overlap]
        fn: FG | type[FG] | None = None, /, *, exec_modifier: FG | type[FG] | None = None
    ) -> FetcherDecorator[_FG]: ...
    @overload
    def fetcher(fn: BG | type[BG], /) -> FetcherDecorator[_BG]: ...  # type: ignore[overload-overlap]
    @overload
    def fetcher(*, exec_modifier: BG | type[BG]) -> FetcherDecorator[_BG]: ...
    @overload
    def fetcher(fn: BROADCAST | type[BROADCAST], /) -> FetcherDecorator[_Broadcast]: ...  # type: ignore[overload-overlap]
    @overload
    def fetcher(*, exec_modifier: BROADCAST | type[BROADCAST]) -> FetcherDecorator[_Broadcast]: ...
    @overload
    def fetcher(fn: PERIOD, /) -> FetcherDecorator[_Period]: ...
    @overload
    def fetcher(*, exec_modifier: PERIOD) -> FetcherDecorator[_Period]: ...
    @overload
    def fetcher(  # type: ignore[overload-overlap]
        fn: Callable[P, Coroutine[Any, Any, T]], /
    ) -> AsyncFetcherFunction[P, T, T]: ...
    @overload
    def fetcher(fn: Callable[P, T], /) -> SyncFetcherFunction[P, T, T]: ...
    def fetcher(fn: Any = None, /, *, exec_modifier: Any = None) -> Any:
        """Declare a fetcher (see `FetcherFunction`)."""
else:
    fetcher = FetcherFunction


class _FetcherMethod:
    """A public method of a ``Fetcher`` subclass (a descriptor)."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self._core = _FetcherCore(fn, name)
        self.wrapped = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return _BoundFetcherMethod(self._core, instance)


class _BoundFetcherMethod:
    __slots__ = ("_core", "_instance")

    def __init__(self, core: _FetcherCore, instance: Any) -> None:
        self._core = core
        self._instance = instance

    @property
    def wrapped(self) -> Callable[..., Any]:
        """The method as written in the class (unbound)."""
        return self._core.fn

    @property
    def g(self) -> Any:
        """The Global this method calls through right now (None if none is running)."""
        return current_global_or_none()

    @property
    def alias(self) -> str:
        return self._core.name

    @property
    def proxy(self) -> bool:
        return self._core.proxy

    @property
    def exec_modifier(self) -> Any:
        return self._instance.exec_modifier

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._core.invoke(self._instance, self._instance.exec_modifier, args, kwargs)

    def call(self, *args: Any, exec_modifier: Any = None, **kwargs: Any) -> Any:
        modifier = self._instance.exec_modifier if exec_modifier is None else exec_modifier
        return self._core.invoke(self._instance, modifier, args, kwargs)

    def __repr__(self) -> str:
        return f"<fetcher method {self._core.name!r} of {self._instance!r}>"


class Fetcher:
    """Base class: every public method of a subclass is a fetcher of the same-named callback.

    The class attribute ``exec_modifier`` (default ``FG``) is how its methods run; a method's
    ``.call(..., exec_modifier=...)`` overrides it for one call. Methods starting with ``_`` and
    methods marked ``@local`` stay ordinary methods. A ``__post_init__()`` method runs once
    when an instance has been created (after the class's own ``__init__``, as in daffi 2).
    """

    exec_modifier: ClassVar[Any] = FG

    @property
    def g(self) -> Any:
        """The Global its methods call through right now (None if none is running)."""
        return current_global_or_none()

    def __init__(self) -> None:
        if _init_owner(type(self)) is Fetcher:
            _post_init(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if is_subclass(cls, Role.CALLBACK_CLASS):
            raise InitializationError(
                f"Multiple inheritance is prohibited: {cls.__name__} inherits both Fetcher and "
                "Callback; split it into two classes"
            )
        normalize_modifier(cls.exec_modifier)
        for name, attr in list(vars(cls).items()):
            if name.startswith("_") or is_local(attr) or not inspect.isfunction(attr):
                continue
            setattr(cls, name, _FetcherMethod(attr, alias_of(attr) or name))
        own_init = cls.__dict__.get("__init__")
        if own_init is not None:
            # Run __post_init__ after the subclass's own __init__ finished, whether or not it
            # called super().__init__() (and once: only the outermost __init__ does it).
            @functools.wraps(own_init)
            def __init__(self: Fetcher, *args: Any, **kwargs: Any) -> None:
                own_init(self, *args, **kwargs)
                if _init_owner(type(self)) is cls:
                    _post_init(self)

            cls.__init__ = __init__  # type: ignore[method-assign]


def _init_owner(cls: type) -> type:
    """The class whose ``__init__`` runs when ``cls`` is instantiated."""
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            return klass
    return object  # pragma: no cover - Fetcher defines __init__


def _post_init(instance: Fetcher) -> None:
    post_init = getattr(instance, "__post_init__", None)
    if callable(post_init):
        post_init()


declare(Role.FETCHER_CLASS, Fetcher)
declare(Role.FETCHER, FetcherFunction)
