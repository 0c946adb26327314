"""Transports: how daffi processes reach each other (``tcp``, ``unix``, ``memory``, plugins).

A transport connects to or listens on an :class:`Address` and yields anyio byte
streams; :func:`get_transport` picks one by the address scheme.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._address import Address
from ._base import PLAIN_SOCKET, Listening, Transport
from ._registry import available_schemes, get_transport, register_transport

if TYPE_CHECKING:
    from .memory import MemoryTransport, memory_stream_pair
    from .tcp import TcpTransport
    from .unix import UnixTransport, default_unix_socket_dir

# The built-in transports are imported on first use: a process needs one or two of them.
_LAZY = {
    "MemoryTransport": ".memory",
    "memory_stream_pair": ".memory",
    "TcpTransport": ".tcp",
    "UnixTransport": ".unix",
    "default_unix_socket_dir": ".unix",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "PLAIN_SOCKET",
    "Address",
    "Listening",
    "MemoryTransport",
    "TcpTransport",
    "Transport",
    "UnixTransport",
    "available_schemes",
    "default_unix_socket_dir",
    "get_transport",
    "memory_stream_pair",
    "register_transport",
]
