"""``Callback`` classes and the ``@callback`` decorator: what a process offers to others."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar

from daffi._context import current_global_or_none
from daffi.exceptions import InitializationError
from daffi.registry._markers import alias_of, is_local, refused
from daffi.registry._roles import Role, declare, is_instance, is_subclass
from daffi.registry._store import CallbackRegistry, default_registry

__all__ = ["Callback", "callback", "public_members"]

P = ParamSpec("P")
T = TypeVar("T")


def public_members(cls: type, stop: type) -> Iterator[tuple[str, Any]]:
    """Public functions, static and class methods of ``cls`` (and its bases below ``stop``)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass is stop or klass is object:
            continue
        for name, attr in vars(klass).items():
            if name in seen or name.startswith("_"):
                continue
            seen.add(name)
            is_method = isinstance(attr, staticmethod | classmethod) or inspect.isfunction(attr)
            if is_method and not is_local(attr):
                yield name, attr


class Callback:
    """Base class: every public method of a subclass is a callback other processes can call.

    Methods whose names start with ``_`` and methods marked ``@local`` stay local. With
    ``auto_init = True`` the class is instantiated when it is created (running
    ``__post_init__`` if defined); otherwise create the one instance yourself. Static and class
    methods are callbacks too.
    """

    auto_init: ClassVar[bool] = False
    #: registry the instance's callbacks go to (default: the process-wide one)
    registry: ClassVar[CallbackRegistry | None] = None

    _daffi_registered: bool = False

    @property
    def g(self) -> Any:
        """The Global of the calling context: in a callback, the one running it (None if
        no Global runs); see :func:`daffi.get_g`."""
        return current_global_or_none()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if is_subclass(cls, Role.FETCHER_CLASS):
            raise InitializationError(
                f"Multiple inheritance is prohibited: {cls.__name__} inherits both Callback and "
                "Fetcher; split it into two classes"
            )
        own_init = cls.__dict__.get("__init__")
        if own_init is not None:
            # Register after the subclass's own __init__ finished, whether or not it called
            # super().__init__(): an instance half set up must not receive calls.
            @functools.wraps(own_init)
            def __init__(self: Callback, *args: Any, **kwargs: Any) -> None:
                own_init(self, *args, **kwargs)
                if type(self) is cls:
                    self._daffi_register()

            cls.__init__ = __init__  # type: ignore[method-assign]
        if vars(cls).get("auto_init", False):
            instance = cls()
            post_init = getattr(instance, "__post_init__", None)
            if callable(post_init):
                post_init()

    def __init__(self) -> None:
        if "__init__" not in type(self).__dict__:
            self._daffi_register()

    def _daffi_register(self) -> None:
        if self._daffi_registered:
            return
        cls = type(self)
        if cls.__dict__.get("_daffi_instance") is not None:
            raise InitializationError(
                f"{cls.__name__} already has an instance serving its callbacks; a Callback "
                "class can be instantiated once per process"
            )
        registry = cls.registry if cls.registry is not None else default_registry
        added: list[str] = []
        try:
            for name, attr in public_members(cls, Callback):
                registry.add(getattr(self, name), alias_of(attr) or name)
                added.append(alias_of(attr) or name)
        except BaseException:
            for name in added:
                registry.remove(name)
            raise
        cls._daffi_instance = self  # type: ignore[attr-defined]
        self._daffi_registered = True


class callback(Generic[P, T]):
    """Register a function (sync, async, generator or async generator) as a callback.

    The decorated object still calls the function locally, with the function's signature
    (``callback[P, T]`` for type checkers). ``.wrapped`` is the function, ``.alias`` the remote
    name (settable: re-registers under the new name).
    """

    def __new__(
        cls, fn: Callable[P, T], *, registry: CallbackRegistry | None = None
    ) -> callback[P, T]:
        if is_instance(fn, Role.FETCHER):
            # @callback over @fetcher: register the function, keep the fetcher as the object
            # (it calls like the callback would: type checkers may see it as one)
            fetcher_obj: Any = fn
            target = registry if registry is not None else default_registry
            target.add(fetcher_obj.wrapped, fetcher_obj.alias)
            fetcher_obj.proxy = True
            return fetcher_obj  # type: ignore[no-any-return]
        return super().__new__(cls)

    def __init__(self, fn: Callable[P, T], *, registry: CallbackRegistry | None = None) -> None:
        if inspect.isclass(fn):
            raise InitializationError(
                f"Classes are not supported by @callback ({fn.__name__}). Use the Callback "
                "base class instead"
            )
        if getattr(fn, "__name__", None) == "<lambda>":
            raise InitializationError("Lambdas is not supported by @callback; use a def")
        if not callable(fn):
            raise InitializationError(f"@callback needs a function, got {fn!r}")
        if is_local(fn):
            raise refused(fn)
        self.wrapped: Callable[P, T] = fn
        self._registry = registry if registry is not None else default_registry
        self._alias = alias_of(fn) or fn.__name__
        self._registry.add(fn, self._alias)
        functools.update_wrapper(self, fn)

    @property
    def alias(self) -> str:
        return self._alias

    @alias.setter
    def alias(self, value: str) -> None:
        if value == self._alias:
            return
        self._registry.add(self.wrapped, value)
        self._registry.remove(self._alias)
        self._alias = value

    @property
    def g(self) -> Any:
        """The Global of the calling context: in a callback, the one running it (None if
        no Global runs); see :func:`daffi.get_g`."""
        return current_global_or_none()

    def withdraw(self) -> None:
        """Stop offering this callback (its registry forgets it)."""
        self._registry.remove(self._alias)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.wrapped(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        method: Callable[..., Any] = self.wrapped
        return self if instance is None else functools.partial(method, instance)

    def __repr__(self) -> str:
        return f"<callback {self._alias!r} of {self.wrapped!r}>"


declare(Role.CALLBACK_CLASS, Callback)
declare(Role.CALLBACK, callback)
