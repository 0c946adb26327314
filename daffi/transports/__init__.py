"""Transports: how daffi processes reach each other (``tcp``, ``unix``, ``memory``, plugins).

A transport connects to or listens on an :class:`Address` and yields anyio byte
streams; :func:`get_transport` picks one by the address scheme.
"""

from ._address import Address
from ._base import Listening, Transport
from ._registry import available_schemes, get_transport, register_transport
from .memory import MemoryTransport, memory_stream_pair
from .tcp import TcpTransport
from .unix import UnixTransport, default_unix_socket_dir

__all__ = [
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
