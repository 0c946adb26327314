"""The callback registry: name -> callable, with what peers are told about each."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from daffi._codec import default_codec, make_arg_structurer
from daffi._protocol import CallbackInfo
from daffi.exceptions import InitializationError
from daffi.registry._inspect import callback_info, function_kind

__all__ = ["CallbackEntry", "CallbackRegistry", "default_registry"]

Structurer = Callable[[list[Any], dict[str, Any]], tuple[list[Any], dict[str, Any]]]


@dataclass(frozen=True, eq=False)
class CallbackEntry:
    """One registered callback."""

    name: str
    fn: Callable[..., Any]
    info: CallbackInfo
    is_async: bool
    is_generator: bool
    is_async_generator: bool
    structure_args: Structurer | None

    @property
    def runs_in_thread(self) -> bool:
        """A plain ``def`` callback: it runs in a worker thread."""
        return not (self.is_async or self.is_generator or self.is_async_generator)


class CallbackRegistry:
    """Callbacks a process offers.

    One registry per process is used by default (:data:`default_registry`); a
    :class:`~daffi.Global` can be given its own, so several Globals can live in one process.
    Thread-safe: decorators register from import-time code while a Global runs elsewhere.
    """

    def __init__(self) -> None:
        self._entries: dict[str, CallbackEntry] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def add(self, fn: Callable[..., Any], name: str | None = None) -> CallbackEntry:
        """Register ``fn`` under ``name`` (default: its ``__name__``).

        Raises:
            InitializationError: a callback with that name is already registered here.
        """
        name = name or getattr(fn, "__name__", None)
        if not name or not isinstance(name, str):
            raise InitializationError(f"cannot tell the name of callback {fn!r}; use @alias")
        is_async, is_gen, is_async_gen = function_kind(fn)
        entry = CallbackEntry(
            name=name,
            fn=fn,
            info=callback_info(name, fn),
            is_async=is_async,
            is_generator=is_gen,
            is_async_generator=is_async_gen,
            structure_args=make_arg_structurer(fn, default_codec),
        )
        with self._lock:
            existing = self._entries.get(name)
            if existing is not None:
                raise InitializationError(
                    f"a callback named {name!r} is already registered in this process "
                    f"({_where(existing.fn)}); give one of them another name with @alias"
                )
            self._entries[name] = entry
        self._notify()
        return entry

    def remove(self, name: str) -> bool:
        """Unregister ``name``; returns whether it was registered."""
        with self._lock:
            removed = self._entries.pop(name, None) is not None
        if removed:
            self._notify()
        return removed

    def get(self, name: str) -> CallbackEntry | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return list(self._entries)

    def infos(self) -> tuple[CallbackInfo, ...]:
        return tuple(entry.info for entry in list(self._entries.values()))

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` (in the registering thread) after every change.

        Returns a function that unsubscribes.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        self._notify()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def _where(fn: Callable[..., Any]) -> str:
    target = inspect.unwrap(fn)
    module = getattr(target, "__module__", "?")
    qualname = getattr(target, "__qualname__", repr(target))
    return f"{module}.{qualname}"


default_registry: CallbackRegistry = CallbackRegistry()
