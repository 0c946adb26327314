"""Callbacks and fetchers: ``Callback``, ``Fetcher``, ``Args``, ``__body_unknown__``."""

from daffi.registry._args import Args, __body_unknown__
from daffi.registry._callback import Callback, callback
from daffi.registry._fetcher import Fetcher, fetcher
from daffi.registry._markers import alias, local
from daffi.registry._store import CallbackEntry, CallbackRegistry, default_registry

__all__ = [
    "Args",
    "Callback",
    "CallbackEntry",
    "CallbackRegistry",
    "Fetcher",
    "__body_unknown__",
    "alias",
    "callback",
    "default_registry",
    "fetcher",
    "local",
]
