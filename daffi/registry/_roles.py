"""Callback or fetcher: the two roles, declared here so each side can recognise the other.

``Callback`` and ``Fetcher`` cannot be combined in one class, and ``@callback`` and
``@fetcher`` stack (``@callback`` over ``@fetcher`` also offers the function; ``@fetcher``
over ``@callback`` calls it remotely). So ``_callback.py`` must recognise fetchers and
``_fetcher.py`` callbacks: each module declares its classes here and looks the other's up
here, and neither imports the other.
"""

from __future__ import annotations

import enum

__all__ = ["Role", "declare", "is_instance", "is_subclass"]


class Role(enum.Enum):
    CALLBACK_CLASS = "Callback"  # the base class whose public methods are callbacks
    FETCHER_CLASS = "Fetcher"  # the base class whose public methods are fetchers
    CALLBACK = "callback"  # the @callback decorator (its objects wrap a function)
    FETCHER = "fetcher"  # the @fetcher decorator


_classes: dict[Role, type] = {}


def declare(role: Role, cls: type) -> None:
    """``cls`` is the class that plays ``role``."""
    _classes[role] = cls


def is_subclass(cls: type, role: Role) -> bool:
    """Whether ``cls`` derives from the class of ``role`` (False while none is declared:
    nothing can derive from it yet)."""
    declared = _classes.get(role)
    return declared is not None and issubclass(cls, declared)


def is_instance(obj: object, role: Role) -> bool:
    """Whether ``obj`` is an instance of the class of ``role``."""
    declared = _classes.get(role)
    return declared is not None and isinstance(obj, declared)
