"""Frames sent on daffi's loop go out once per loop turn, on asyncio and on trio.

``Connection.send`` on the loop queues the frame; what every task ready in that turn queued
is written in one system call once they have run: by a loop callback on asyncio, by the
connection's writer task on trio (which runs after them). Before the writer task runs (a
handshake), a send writes at once; a frame sent right before the connection's task group is
cancelled (a stop right after ``Bye``) still goes out.

These tests wrap one end of a ``socket.socketpair()`` in a ``Connection`` (a plain socket)
and read the frames at the other end.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec
import pytest

from daffi._connection import DEFAULT_MAX_FRAME_SIZE, Connection
from daffi._frames import encode_frame, first_frame
from daffi._protocol import Message, Result

from .test_direct_reader import connected_pair

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(30),
    pytest.mark.skipif(not hasattr(socket, "socketpair"), reason="needs socket.socketpair"),
]


def result(call_id: int) -> Result:
    return Result(call_id, "dst", msgspec.Raw(b"\xc0"))


@asynccontextmanager
async def counted_connection() -> AsyncIterator[tuple[Connection, socket.socket, list[int]]]:
    """A connection on a plain socket, the raw other end, and the sizes of its writes."""
    async with connected_pair() as pair:
        access = pair.conn._direct
        assert access.can_write, "a socket pair is a plain socket: direct writes are used"
        writes: list[int] = []
        original = access.send

        def counting_send(data: bytes | bytearray) -> int:
            sent = original(data)
            if sent:
                writes.append(sent)
            return sent

        access.send = counting_send  # type: ignore[method-assign]
        yield pair.conn, pair.raw, writes


def read_messages(raw: socket.socket, count: int) -> list[Message]:
    """The next ``count`` messages at the raw end, in order (blocking, with a timeout)."""
    raw.settimeout(5)
    buf = bytearray()
    messages: list[Message] = []
    while len(messages) < count:
        taken = first_frame(buf, DEFAULT_MAX_FRAME_SIZE, "test")
        if taken is None:
            buf += raw.recv(65536)
            continue
        messages.append(taken[0])
        del buf[: len(taken[1])]
    return messages


async def test_the_frames_a_turn_queues_go_out_in_one_write(anyio_backend: str) -> None:
    async with counted_connection() as (conn, raw, writes), anyio.create_task_group() as tg:
        tg.start_soon(conn.run_writer)
        await anyio.sleep(0.05)  # the writer task waits for work
        ready = anyio.Event()

        async def send(i: int) -> None:
            await ready.wait()
            await conn.send(result(i))

        for i in range(20):
            tg.start_soon(send, i)
        await anyio.sleep(0.05)
        ready.set()  # the 20 tasks become ready in one turn
        received = await anyio.to_thread.run_sync(read_messages, raw, 20)
        assert len(writes) <= 2, writes  # one write per turn (a turn may be split in two)
        assert sorted(msg.id for msg in received) == list(range(20))  # type: ignore[attr-defined]
        tg.cancel_scope.cancel()


async def test_frames_keep_their_order(anyio_backend: str) -> None:
    async with counted_connection() as (conn, raw, _), anyio.create_task_group() as tg:
        tg.start_soon(conn.run_writer)
        await anyio.sleep(0.05)
        for i in range(50):
            await conn.send(result(i))
            if i % 7 == 0:
                await anyio.lowlevel.checkpoint()
        received = await anyio.to_thread.run_sync(read_messages, raw, 50)
        assert received == [result(i) for i in range(50)]
        tg.cancel_scope.cancel()


async def test_before_the_writer_task_runs_a_send_writes_at_once(anyio_backend: str) -> None:
    async with counted_connection() as (conn, raw, writes):
        message: Message = result(0)
        await conn.send(message)
        if anyio_backend == "trio":
            assert writes == [len(encode_frame(message))]
        assert await anyio.to_thread.run_sync(read_messages, raw, 1) == [result(0)]


async def test_a_frame_sent_right_before_a_cancellation_goes_out(anyio_backend: str) -> None:
    async with counted_connection() as (conn, raw, _):
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run_writer)
            await anyio.sleep(0.05)
            await conn.send(result(0))  # e.g. a Bye
            tg.cancel_scope.cancel()  # the stop that follows it
        assert await anyio.to_thread.run_sync(read_messages, raw, 1) == [result(0)]
