"""Which Global a fetcher calls through.

In order: the Global made current in this context (``async with Global(...)`` does that for
its body, ``with g.as_current():`` does it explicitly), else the most recently started Global
of the process that is still running.
"""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING

from daffi.exceptions import GlobalContextError

if TYPE_CHECKING:
    from daffi._global import Global

__all__ = ["current_global", "current_global_or_none", "forget", "remember"]

current_var: contextvars.ContextVar[Global | None] = contextvars.ContextVar(
    "daffi_current_global", default=None
)
_running: list[Global] = []
_lock = threading.Lock()


def remember(g: Global) -> None:
    """Note ``g`` as running (the newest is the process default)."""
    with _lock:
        if g in _running:
            _running.remove(g)
        _running.append(g)


def forget(g: Global) -> None:
    with _lock:
        if g in _running:
            _running.remove(g)


def current_global_or_none() -> Global | None:
    g = current_var.get()
    if g is not None:
        return g  # even when stopped: calls through it must fail, not go elsewhere
    with _lock:
        return _running[-1] if _running else None


def current_global() -> Global:
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
