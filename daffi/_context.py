"""Which Global a fetcher calls through.

In order: the Global made current in this context (``async with Global(...)`` does that for
its body, ``with g.as_current():`` does it explicitly), else the most recently started Global
of the process that is still running. With none running, a fetcher's call raises: the error
of the last Global that stopped (it names it, and the crash that stopped it, if one did), or
one that says to create a Global.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
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
#: the error calls made after the last running Global stopped raise (its runtime's
#: ``stopped_error``, held weakly: it must not keep a stopped Global alive), and that
#: Global's name for when it is gone
_last_stopped: tuple[weakref.WeakMethod[Callable[[], Exception]], str] | None = None


def remember(g: Target) -> None:
    """Note ``g`` as running (the newest is the process default)."""
    with _lock:
        if g in _running:
            _running.remove(g)
        _running.append(g)


def forget(g: Target, name: str = "", stopped_error: Callable[[], Exception] | None = None) -> None:
    """Note ``g`` as no longer running.

    Args:
        g: the Global.
        name: its ``process_name``.
        stopped_error: builds the error its calls raise now that it stopped (a bound
            method); if ``g`` was running, fetchers called while no Global runs raise it.
    """
    global _last_stopped
    with _lock:
        if g in _running:
            _running.remove(g)
            if stopped_error is not None:
                _last_stopped = (weakref.WeakMethod(stopped_error), name)


def current_global_or_none() -> Target | None:
    g = current_var.get()
    if g is not None:
        return g  # even when stopped: calls through it must fail, not go elsewhere
    with _lock:
        return _running[-1] if _running else None


def current_global() -> Target:
    """The Global to call through.

    Raises:
        GlobalContextError: no Global is running in this process: the last one stopped
            (the error names it), or none has started.
    """
    g = current_global_or_none()
    if g is not None:
        return g
    last = _last_stopped
    if last is None:
        raise GlobalContextError(
            "no daffi Global is running in this process: create daffi.Global(...) (or "
            "enter `async with Global(...)`) before calling fetchers"
        )
    stopped_error = last[0]()
    if stopped_error is not None:
        raise stopped_error()
    raise GlobalContextError(
        f"Global {last[1]!r} was stopped, and no other Global runs in this process: create "
        "a new daffi.Global(...) (or enter `async with Global(...)`) to call fetchers again"
    )
