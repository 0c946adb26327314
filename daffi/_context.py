"""Which Global a fetcher calls through.

In order: the Global made current in this context (``async with Global(...)`` does that for
its body, ``with g.as_current():`` does it explicitly), else the most recently started Global
of the process that is still running.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

from daffi.exceptions import GlobalContextError
from daffi.execution_modifiers import ExecModifier

__all__ = [
    "Arguments",
    "Fetching",
    "Target",
    "current_global",
    "current_global_or_none",
    "forget",
    "remember",
]

#: what a fetcher sends: ``(args, kwargs)``
Arguments = tuple[tuple[Any, ...], dict[str, Any]]


class Fetching(Protocol):
    """How a fetcher's call runs, by kind of fetcher (``daffi._execution.Execution``)."""

    def execute(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: ExecModifier,
        structure: Callable[[Any], Any] | None,
    ) -> Any: ...

    async def execute_async(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: ExecModifier,
        structure: Callable[[Any], Any] | None,
    ) -> Any: ...

    def stream_in(self, name: str, items: Iterator[Arguments], modifier: ExecModifier) -> Any: ...

    async def stream_in_async(
        self, name: str, items: AsyncIterator[Arguments], modifier: ExecModifier
    ) -> Any: ...


class Target(Protocol):
    """What this module keeps and fetchers call through: a ``daffi.Global``."""

    @property
    def _execution(self) -> Fetching: ...


current_var: contextvars.ContextVar[Target | None] = contextvars.ContextVar(
    "daffi_current_global", default=None
)
_running: list[Target] = []
_lock = threading.Lock()


def remember(g: Target) -> None:
    """Note ``g`` as running (the newest is the process default)."""
    with _lock:
        if g in _running:
            _running.remove(g)
        _running.append(g)


def forget(g: Target) -> None:
    with _lock:
        if g in _running:
            _running.remove(g)


def current_global_or_none() -> Target | None:
    g = current_var.get()
    if g is not None:
        return g  # even when stopped: calls through it must fail, not go elsewhere
    with _lock:
        return _running[-1] if _running else None


def current_global() -> Target:
    """The Global to call through.

    Raises:
        GlobalContextError: no Global is running in this process.
    """
    g = current_global_or_none()
    if g is None:
        raise GlobalContextError(
            "Global is not initialized: create daffi.Global(...) (or enter "
            "`async with Global(...)`) before calling fetchers"
        )
    return g
