"""A node that speaks the wire protocol by hand, for tests of hostile and broken peers.

It connects to a controller's Unix socket with anyio (so it runs on asyncio and trio),
sends whatever messages a test builds, and reads what the controller sends back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec

from daffi._codec import PayloadCodec
from daffi._frames import DEFAULT_MAX_FRAME_SIZE, encode_frame, first_frame
from daffi._protocol import PROTOCOL_VERSION, CallbackInfo, Hello, Message, Welcome

__all__ = ["RawPeer", "args_payload", "value_payload"]

_codec = PayloadCodec()


def args_payload(*args: Any, **kwargs: Any) -> msgspec.Raw:
    """A call's payload, as a real node encodes ``f(*args, **kwargs)``."""
    return msgspec.Raw(_codec.encode_args(args, kwargs))


def value_payload(value: Any) -> msgspec.Raw:
    """A result's or a stream item's payload, as a real node encodes ``value``."""
    return msgspec.Raw(_codec.encode_value(value))


class RawPeer:
    """One raw connection to the controller listening in ``sock_dir``."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self._buf = bytearray()

    @classmethod
    async def join(
        cls, sock_dir: str, name: str, callbacks: tuple[CallbackInfo, ...] = ()
    ) -> RawPeer:
        """Connect, say ``Hello`` as node ``name`` and wait for the ``Welcome``."""
        peer = cls(await anyio.connect_unix(str(Path(sock_dir) / "daffi.sock")))
        await peer.send(Hello(PROTOCOL_VERSION, name, ("msgpack",), callbacks))
        welcome = await peer.receive()
        assert isinstance(welcome, Welcome), welcome
        return peer

    async def send(self, *messages: Message) -> None:
        """Send ``messages`` in one write."""
        await self.stream.send(b"".join(bytes(encode_frame(msg)) for msg in messages))

    async def receive(self) -> Message:
        """The next message from the controller.

        Raises:
            anyio.EndOfStream: the controller closed the connection.
        """
        while True:
            taken = first_frame(self._buf, DEFAULT_MAX_FRAME_SIZE, "the controller")
            if taken is not None:
                del self._buf[: len(taken[1])]
                return taken[0]
            try:
                self._buf += await self.stream.receive()
            except (anyio.BrokenResourceError, ConnectionError):
                raise anyio.EndOfStream from None

    async def receive_until(self, kind: type[Message]) -> Any:
        """The next message of type ``kind``, skipping others (directory news, pings)."""
        while True:
            msg = await self.receive()
            if isinstance(msg, kind):
                return msg

    async def closed_by_controller(self) -> bool:
        """Read until the controller closes the connection (True) or 5 s pass (False)."""
        with anyio.move_on_after(5):
            try:
                while True:
                    await self.receive()
            except anyio.EndOfStream:
                return True
        return False

    async def aclose(self) -> None:
        await self.stream.aclose()
