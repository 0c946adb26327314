"""Decorators: ``@callback``, ``@fetcher``, ``@alias``, ``@local`` (daffi 2 names)."""

from daffi.registry._args import __body_unknown__
from daffi.registry._callback import callback
from daffi.registry._fetcher import fetcher
from daffi.registry._markers import alias, local

__all__ = ["__body_unknown__", "alias", "callback", "fetcher", "local"]
