"""Transports by scheme: the built-ins, explicit registrations and entry-point plugins."""

from __future__ import annotations

import importlib
import logging
import threading
from typing import TYPE_CHECKING

from ._address import _SCHEME_RE
from ._base import Transport

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["ENTRY_POINT_GROUP", "available_schemes", "get_transport", "register_transport"]

logger = logging.getLogger("daffi.transports")

#: Entry-point group third-party packages use to provide transports.
ENTRY_POINT_GROUP = "daffi.transports"

#: The built-in transports, imported on first use (a process needs one or two of them).
_BUILTIN: dict[str, tuple[str, str]] = {
    "tcp": ("daffi.transports.tcp", "TcpTransport"),
    "unix": ("daffi.transports.unix", "UnixTransport"),
    "memory": ("daffi.transports.memory", "MemoryTransport"),
}
_registered: dict[str, type[Transport]] = {}
_instances: dict[str, Transport] = {}
# Discovered on first need only: scanning installed distributions costs import time.
_entry_points: dict[str, EntryPoint] | None = None
# Reentrant because get_transport() reports errors through available_schemes().
_lock = threading.RLock()


def register_transport(scheme: str, transport: type[Transport]) -> None:
    """Make ``scheme://`` addresses use ``transport``.

    A registration takes precedence over the built-ins and entry points, so tests can
    also replace a built-in scheme.

    Args:
        scheme: Lower-case scheme, e.g. ``"nats"``.
        transport: A :class:`Transport` subclass constructible without arguments.

    Raises:
        ValueError: If ``scheme`` is not a valid URL scheme.
        TypeError: If ``transport`` is not a :class:`Transport` subclass.
    """
    if not isinstance(scheme, str) or not _SCHEME_RE.match(scheme):
        raise ValueError(
            f"invalid transport scheme {scheme!r}: expected lower-case letters, digits, "
            f"'+', '-' or '.' starting with a letter, e.g. 'nats'"
        )
    if not (isinstance(transport, type) and issubclass(transport, Transport)):
        raise TypeError(
            f"register_transport({scheme!r}, ...) expects a Transport subclass, got {transport!r}"
        )
    with _lock:
        _registered[scheme] = transport
        _instances.pop(scheme, None)


def get_transport(scheme: str) -> Transport:
    """Return the transport for ``scheme`` (one shared instance per scheme).

    Looks at registrations, then the built-ins (``tcp``, ``unix``, ``memory``), then the
    ``daffi.transports`` entry points, which are discovered once and loaded on first use.

    Raises:
        ValueError: If no transport handles ``scheme``; the message lists the known ones.
        ImportError: If the plugin providing ``scheme`` fails to import.
        TypeError: If that plugin's entry point is not a :class:`Transport` subclass.
    """
    scheme = scheme.lower()
    with _lock:
        instance = _instances.get(scheme)
        if instance is not None:
            return instance
        transport = _registered.get(scheme) or _builtin(scheme) or _load_plugin(scheme)
        if transport is None:
            raise ValueError(
                f"unknown transport scheme {scheme!r}; known schemes: "
                f"{', '.join(available_schemes())}. Install a package that provides it "
                f"(entry-point group {ENTRY_POINT_GROUP!r}) or call register_transport()"
            )
        instance = _instances[scheme] = transport()
        return instance


def _builtin(scheme: str) -> type[Transport] | None:
    where = _BUILTIN.get(scheme)
    if where is None:
        return None
    transport: type[Transport] = getattr(importlib.import_module(where[0]), where[1])
    return transport


def available_schemes() -> list[str]:
    """Return every scheme :func:`get_transport` knows, sorted."""
    with _lock:
        return sorted({*_BUILTIN, *_registered, *_plugin_entry_points()})


def _plugin_entry_points() -> dict[str, EntryPoint]:
    global _entry_points
    if _entry_points is None:
        from importlib.metadata import entry_points  # costs ~20 ms: only when needed

        found: dict[str, EntryPoint] = {}
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            # A distribution installed twice (e.g. editable and regular) lists it twice.
            if found.setdefault(entry_point.name, entry_point).value != entry_point.value:
                logger.warning(
                    "transport scheme %r is provided by both %r and %r; using the first",
                    entry_point.name,
                    found[entry_point.name].value,
                    entry_point.value,
                )
        _entry_points = found
    return _entry_points


def _load_plugin(scheme: str) -> type[Transport] | None:
    entry_point = _plugin_entry_points().get(scheme)
    if entry_point is None:
        return None
    try:
        loaded = entry_point.load()
    except Exception as exc:
        raise ImportError(
            f"transport plugin for {scheme!r} ({entry_point.value}) failed to import: {exc}"
        ) from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Transport)):
        raise TypeError(
            f"entry point {entry_point.value!r} for transport scheme {scheme!r} is "
            f"{loaded!r}, not a daffi.transports.Transport subclass"
        )
    return loaded
