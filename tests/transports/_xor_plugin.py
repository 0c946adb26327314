"""A third-party-style transport plugin that transforms bytes: ``xor+unix:///path``.

Every byte written is XORed with 0x5A before it reaches the Unix socket, and every byte read
is XORed back, so a peer that skips the plugin's stream (writes frames to the socket itself)
sends garbage. The plugin is built to tempt every fast path: it subclasses
:class:`~daffi.transports.UnixTransport` (inheriting ``connect_blocking``), and its streams
are anyio ``SocketStream``\\ s that pass the Unix socket's ``raw_socket`` through, as anyio's
``TLSStream`` does. Only its (undeclared) capabilities keep daffi on its ``send``/``receive``.

Each stream records the plaintext it carried (:data:`TRAFFIC`), so tests can count the frames
that went through the plugin. Tests load it through the ``daffi.transports`` entry-point
group (see ``test_plugin_transports.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from daffi.transports import Address, Listening, UnixTransport

KEY = 0x5A
_TABLE = bytes(i ^ KEY for i in range(256))


def xor(data: bytes | bytearray | memoryview) -> bytes:
    return bytes(data).translate(_TABLE)


class XorStream(anyio.abc.SocketStream):
    """Wraps a Unix socket stream: XOR on the way out and in; records the plaintext."""

    def __init__(self, inner: anyio.abc.SocketStream, side: str) -> None:
        self._inner = inner
        #: "connect" (a node's end) or "accept" (the controller's end)
        self.side = side
        self.sent = bytearray()
        self.received = bytearray()
        TRAFFIC.append(self)

    async def send(self, item: bytes) -> None:
        self.sent += item
        await self._inner.send(xor(item))

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = xor(await self._inner.receive(max_bytes))
        self.received += data
        return data

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def _raw_socket(self) -> Any:  # what anyio's socket streams expose as raw_socket
        return self._inner.extra(anyio.abc.SocketAttribute.raw_socket)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes


class XorListener(anyio.abc.Listener[anyio.abc.SocketStream]):
    """Accepts Unix connections and hands them on wrapped in :class:`XorStream`."""

    def __init__(self, inner: anyio.abc.Listener[Any]) -> None:
        self._inner = inner

    async def serve(
        self,
        handler: Callable[[anyio.abc.SocketStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        async def wrapped(stream: anyio.abc.SocketStream) -> None:
            await handler(XorStream(stream, "accept"))

        await self._inner.serve(wrapped, task_group)

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes


class XorUnixTransport(UnixTransport):
    """``xor+unix:///path``: a Unix socket carrying XORed bytes (declares no capability)."""

    scheme = "xor+unix"

    async def connect(self, address: Address) -> anyio.abc.ByteStream:
        stream = await super().connect(address)
        assert isinstance(stream, anyio.abc.SocketStream)
        return XorStream(stream, "connect")

    async def listen(self, address: Address) -> Listening:
        inner = await super().listen(address)
        return Listening(
            listener=XorListener(inner.listener),
            address=Address(scheme=self.scheme, path=inner.address.path),
        )


#: every XorStream made, in order (tests clear it)
TRAFFIC: list[XorStream] = []
