"""Small servers and stream helpers shared by the transport tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from daffi.transports import Address, Listening, get_transport

Handler = Callable[[anyio.abc.ByteStream], Awaitable[None]]


async def echo(stream: anyio.abc.ByteStream) -> None:
    """Send back everything received until the peer sends EOF, then close."""
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except anyio.EndOfStream:
            pass


async def receive_exactly(stream: anyio.abc.ByteStream, size: int) -> bytes:
    """Receive exactly ``size`` bytes (a receive may return any non-empty amount)."""
    chunks = bytearray()
    while len(chunks) < size:
        chunks += await stream.receive(size - len(chunks))
    return bytes(chunks)


async def receive_all(stream: anyio.abc.ByteStream) -> bytes:
    """Receive until EOF."""
    chunks = bytearray()
    try:
        while True:
            chunks += await stream.receive()
    except anyio.EndOfStream:
        return bytes(chunks)


@asynccontextmanager
async def serving(address: Address, handler: Handler) -> AsyncIterator[Listening]:
    """Listen on ``address`` and run ``handler`` per connection until the block exits."""
    listening = await get_transport(address.scheme).listen(address)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listening.listener.serve, handler)
            yield listening
            tg.cancel_scope.cancel()
    finally:
        await listening.aclose()


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The non-group exceptions inside (possibly nested) exception groups."""
    nested = getattr(exc, "exceptions", None)
    if nested is None:
        yield exc
        return
    for inner in nested:
        yield from leaves(inner)
