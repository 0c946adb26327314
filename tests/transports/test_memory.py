"""Memory transport specifics: the ByteStream contract, backpressure and names."""

from __future__ import annotations

import errno

import anyio
import pytest

from daffi.transports import Address, MemoryTransport, memory_stream_pair

from ._helpers import echo, receive_exactly, serving

pytestmark = pytest.mark.anyio


async def test_bytes_are_passed_without_copying() -> None:
    a, b = memory_stream_pair()
    payload = b"x" * 1000
    async with a, b:
        with anyio.fail_after(5):
            await a.send(payload)
            assert await b.receive() is payload


async def test_receive_returns_at_most_max_bytes_and_keeps_the_rest() -> None:
    a, b = memory_stream_pair()
    async with a, b:
        with anyio.fail_after(5):
            await a.send(b"abcdefgh")
            await a.send(b"ij")
            assert await b.receive(3) == b"abc"
            assert await b.receive(3) == b"def"
            assert await b.receive(10) == b"gh"
            assert await b.receive(10) == b"ij"


async def test_mutable_buffers_are_copied_on_send() -> None:
    a, b = memory_stream_pair()
    buffer = bytearray(b"before")
    async with a, b:
        with anyio.fail_after(5):
            await a.send(buffer)  # type: ignore[arg-type]  # callers do pass bytearrays
            buffer[:] = b"after!"
            assert await b.receive() == b"before"


async def test_full_buffer_blocks_the_sender() -> None:
    a, b = memory_stream_pair(max_buffer=2)
    async with a, b:
        with anyio.fail_after(5):
            await a.send(b"1")
            await a.send(b"2")
            with anyio.move_on_after(0.05) as scope:
                await a.send(b"3")
            assert scope.cancelled_caught, "send() should wait while the peer's buffer is full"
            assert await b.receive() == b"1"
            await a.send(b"3")  # room again
            assert await b.receive() == b"2"
            assert await b.receive() == b"3"


async def test_send_eof_half_closes() -> None:
    a, b = memory_stream_pair()
    async with a, b:
        with anyio.fail_after(5):
            await a.send(b"last words")
            await a.send_eof()
            await a.send_eof()  # idempotent
            with pytest.raises(anyio.ClosedResourceError):
                await a.send(b"more")
            # b still gets what was sent, then EOF, and can still reply.
            assert await b.receive() == b"last words"
            with pytest.raises(anyio.EndOfStream):
                await b.receive()
            await b.send(b"reply")
            assert await a.receive() == b"reply"


async def test_peer_close_and_own_close() -> None:
    a, b = memory_stream_pair()
    async with a, b:
        with anyio.fail_after(5):
            await b.send(b"sent before closing")
            await b.aclose()
            with pytest.raises(anyio.BrokenResourceError):
                await a.send(b"anyone?")
            assert await a.receive() == b"sent before closing"
            with pytest.raises(anyio.EndOfStream):
                await a.receive()
            with pytest.raises(anyio.ClosedResourceError):
                await b.receive()
            with pytest.raises(anyio.ClosedResourceError):
                await b.send(b"x")
            with pytest.raises(anyio.ClosedResourceError):
                await b.send_eof()
            await b.aclose()  # closing twice is harmless


async def test_closing_wakes_a_blocked_receiver() -> None:
    a, _b = memory_stream_pair()
    async with a, _b:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def receive_until_closed() -> None:
                    with pytest.raises(anyio.ClosedResourceError):
                        await a.receive()

                tg.start_soon(receive_until_closed)
                await anyio.wait_all_tasks_blocked()
                await a.aclose()


async def test_peer_closing_wakes_a_blocked_sender() -> None:
    a, b = memory_stream_pair(max_buffer=0)
    async with a, b:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def send_until_peer_closes() -> None:
                    with pytest.raises(anyio.BrokenResourceError):
                        await a.send(b"nobody receives this")

                tg.start_soon(send_until_peer_closes)
                await anyio.wait_all_tasks_blocked()
                await b.aclose()


async def test_concurrent_receives_are_refused() -> None:
    a, b = memory_stream_pair()
    async with a, b:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(b.receive)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(anyio.BusyResourceError):
                    await b.receive()
                tg.cancel_scope.cancel()


async def test_duplicate_name_is_in_use_until_closed(memory_name: str) -> None:
    address = Address(scheme="memory", path=memory_name)
    transport = MemoryTransport()
    with anyio.fail_after(5):
        listening = await transport.listen(address)
        with pytest.raises(OSError, match="in use") as info:
            await transport.listen(address)
        assert info.value.errno == errno.EADDRINUSE
        await listening.aclose()
        # The name is free again.
        async with serving(address, echo), await transport.connect(address) as stream:
            await stream.send(b"hi")
            assert await receive_exactly(stream, 2) == b"hi"


async def test_unknown_name_is_refused(memory_name: str) -> None:
    address = Address(scheme="memory", path=memory_name)
    with anyio.fail_after(5), pytest.raises(ConnectionRefusedError, match=memory_name):
        await MemoryTransport().connect(address)


async def test_unaccepted_connections_end_when_the_listener_closes(memory_name: str) -> None:
    address = Address(scheme="memory", path=memory_name)
    transport = MemoryTransport()
    with anyio.fail_after(5):
        listening = await transport.listen(address)
        stream = await transport.connect(address)  # queued, never accepted
        await listening.aclose()
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        with pytest.raises(anyio.BrokenResourceError):
            await stream.send(b"x")
        await stream.aclose()


async def test_missing_name_is_rejected() -> None:
    with anyio.fail_after(5), pytest.raises(ValueError, match="no name"):
        await MemoryTransport().listen(Address(scheme="memory"))


async def test_closing_wakes_its_own_blocked_sender() -> None:
    a, _b = memory_stream_pair(max_buffer=0)
    async with a, _b:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def send_until_closed() -> None:
                    with pytest.raises(anyio.ClosedResourceError):
                        await a.send(b"nobody receives this")

                tg.start_soon(send_until_closed)
                await anyio.wait_all_tasks_blocked()
                await a.aclose()
