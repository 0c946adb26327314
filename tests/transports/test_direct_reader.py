"""Direct handling of received frames (``Connection.direct``) by the asyncio reader.

On asyncio, :class:`~daffi._connection.Connection` reads its socket through
:class:`~daffi._backends._asyncio_reader.AsyncioReader`: frames that arrive while the receiving task
waits in ``receive()`` are offered to ``conn.direct`` right where they were read. The first
frame it declines, a bad frame or the end of the stream wakes the task, which gets that frame
(and everything after it) from ``receive()``, in order. On trio there is no reader and
everything comes from ``receive()``.

These tests drive one end of a ``socket.socketpair()`` wrapped in a ``Connection`` and write
raw frames to the other end.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import msgspec
import pytest

from daffi._connection import Connection
from daffi._frames import encode_frame
from daffi._protocol import Message, NodeUp, Ping, Pong, Result
from daffi.exceptions import ProtocolError

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(60),
    pytest.mark.skipif(not hasattr(socket, "socketpair"), reason="needs socket.socketpair"),
]

#: The payload of the small Results: msgpack nil.
NIL = msgspec.Raw(b"\xc0")


def _result(call_id: int, payload: msgspec.Raw = NIL) -> Result:
    return Result(call_id, "dst", payload)


#: Results around two messages ``direct`` declines.
SEQUENCE: list[Message] = [
    _result(1),
    _result(2),
    Ping(),
    _result(3),
    NodeUp("n", ()),
    _result(4),
]


def _pieces(data: bytes, sizes: Sequence[int] = (1, 3, 7, 2, 5, 4, 6)) -> Iterator[bytes]:
    """``data`` cut into pieces of 1-7 bytes (so headers and bodies are split)."""
    pos = 0
    index = 0
    while pos < len(data):
        size = sizes[index % len(sizes)]
        yield data[pos : pos + size]
        pos += size
        index += 1


def _stream_bytes(messages: Sequence[Message]) -> bytes:
    return b"".join(bytes(encode_frame(msg)) for msg in messages)


@dataclass
class Recorder:
    """Where every message went: ``("direct" | "recv", msg, frame)`` in arrival order."""

    conn: Connection
    takes: Callable[[Message], bool] = lambda msg: isinstance(msg, Result)
    log: list[tuple[str, Message, bytes]] = field(default_factory=list)
    #: what ended the receiving loop (EndOfStream, ProtocolError, ...)
    error: BaseException | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def direct(self, msg: Message, frame: bytes | bytearray) -> bool:
        if not self.takes(msg):
            return False
        self.log.append(("direct", msg, bytes(frame)))
        self._poke()
        return True

    def _poke(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def receive_loop(self) -> None:
        try:
            while True:
                msg, frame = await self.conn.receive()
                self.log.append(("recv", msg, bytes(frame)))
                self._poke()
        except (anyio.EndOfStream, ProtocolError) as exc:
            self.error = exc
        finally:
            self.done.set()
            self._poke()

    @property
    def messages(self) -> list[Message]:
        return [msg for _, msg, _ in self.log]

    @property
    def sources(self) -> list[str]:
        return [source for source, _, _ in self.log]

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        """Wait until ``count`` messages arrived (or the receiving loop ended)."""
        with anyio.fail_after(timeout):
            while len(self.log) < count and not self.done.is_set():
                await self.changed.wait()


@dataclass
class Pair:
    conn: Connection
    raw: socket.socket

    def send(self, data: bytes) -> None:
        self.raw.sendall(data)

    async def send_in_pieces(self, data: bytes, pause: float = 0.001) -> None:
        for piece in _pieces(data):
            self.raw.sendall(piece)
            await anyio.sleep(pause)

    async def deliver(self, data: bytes, *, split: bool) -> None:
        """Send ``data`` at once, or (``split``) in pieces the reader sees one by one."""
        if split:
            await self.send_in_pieces(data)
        else:
            self.send(data)


@asynccontextmanager
async def connected_pair(**kwargs: object) -> AsyncIterator[Pair]:
    """A ``Connection`` on one end of a socket pair, the raw other end to write frames to."""
    ours, theirs = socket.socketpair()
    conn: Connection | None = None
    try:
        stream = await anyio.abc.SocketStream.from_socket(ours)
        # A socket pair is a plain socket: the reader and direct writes may be used.
        conn = Connection(stream, peer="raw-peer", plain_socket=True, **kwargs)  # type: ignore[arg-type]
        yield Pair(conn, theirs)
    finally:
        if conn is not None:
            with anyio.CancelScope(shield=True):
                await conn.aclose()
        else:
            ours.close()
        theirs.close()


@asynccontextmanager
async def receiving(pair: Pair, **kwargs: object) -> AsyncIterator[Recorder]:
    """A recorder installed as ``conn.direct``, with a task looping on ``conn.receive()``."""
    recorder = Recorder(pair.conn, **kwargs)  # type: ignore[arg-type]
    pair.conn.direct = recorder.direct
    async with anyio.create_task_group() as tg:
        tg.start_soon(recorder.receive_loop)
        # Let the receiving task reach its wait in receive() before anything is sent.
        await anyio.sleep(0.01)
        yield recorder
        tg.cancel_scope.cancel()


def _require_asyncio(anyio_backend: str) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("the direct reader exists only on asyncio")


def _assert_frames_match(recorder: Recorder) -> None:
    for _, msg, frame in recorder.log:
        assert frame == bytes(encode_frame(msg))


# ---------------------------------------------------------------- asyncio: the reader


async def test_reader_is_installed_only_on_asyncio(anyio_backend: str) -> None:
    async with connected_pair() as pair:
        if anyio_backend == "asyncio":
            assert pair.conn._reader is not None
        else:
            assert pair.conn._reader is None


async def test_one_write_declined_message_and_the_rest_go_to_receive(anyio_backend: str) -> None:
    _require_asyncio(anyio_backend)
    async with connected_pair() as pair, receiving(pair) as rec:
        pair.send(_stream_bytes(SEQUENCE))
        await rec.wait_for(len(SEQUENCE))
        assert rec.messages == SEQUENCE
        # Everything came in one read: the Results before the Ping are taken directly, and
        # from the declined Ping on, receive() delivers everything that read brought, so
        # no Result overtakes the Ping or the NodeUp.
        assert rec.sources == ["direct", "direct", "recv", "recv", "recv", "recv"]
        _assert_frames_match(rec)
        assert rec.error is None


async def test_tiny_pieces_arrive_once_and_in_order(anyio_backend: str) -> None:
    _require_asyncio(anyio_backend)
    async with connected_pair() as pair, receiving(pair) as rec:
        await pair.send_in_pieces(_stream_bytes(SEQUENCE))
        await rec.wait_for(len(SEQUENCE))
        await anyio.sleep(0.05)  # nothing more (no duplicate) may show up
        assert rec.messages == SEQUENCE
        # Each Result completes while the task waits again (the message before it was
        # handled by then): all of them are taken directly, the others are received.
        assert rec.sources == ["direct", "direct", "recv", "direct", "recv", "direct"]
        _assert_frames_match(rec)
        assert rec.error is None


@pytest.mark.parametrize("how", ["one write", "pieces"])
async def test_many_messages_interleaved_keep_order(anyio_backend: str, how: str) -> None:
    _require_asyncio(anyio_backend)
    sent: list[Message] = []
    for i in range(1, 301):
        sent.append(_result(i))
        if i % 7 == 0:
            sent.append(Ping())
        if i % 11 == 0:
            sent.append(NodeUp(f"n{i}", ()))
        if i % 13 == 0:
            sent.append(Pong())
    data = _stream_bytes(sent)
    async with connected_pair() as pair, receiving(pair) as rec:
        if how == "one write":
            pair.send(data)
        else:
            # Larger pieces, mostly not on frame boundaries.
            for start in range(0, len(data), 37):
                pair.send(data[start : start + 37])
                await anyio.lowlevel.checkpoint()
        await rec.wait_for(len(sent))
        await anyio.sleep(0.05)
        assert rec.messages == sent
        assert "direct" in rec.sources
        # Only Results were ever taken directly.
        assert all(isinstance(msg, Result) for src, msg, _ in rec.log if src == "direct")
        _assert_frames_match(rec)


async def test_direct_takes_everything_task_stays_blocked(anyio_backend: str) -> None:
    _require_asyncio(anyio_backend)
    sent = [_result(i) for i in range(1, 201)]
    async with connected_pair() as pair, receiving(pair) as rec:
        data = _stream_bytes(sent)
        half = len(data) // 2
        pair.send(data[:half])
        await pair.send_in_pieces(data[half : half + 100])
        pair.send(data[half + 100 :])
        await rec.wait_for(len(sent))
        assert rec.messages == sent
        assert set(rec.sources) == {"direct"}
        # The receiving task never returned from receive(): it is still waiting.
        with anyio.move_on_after(0.1):
            await rec.done.wait()
        assert not rec.done.is_set()
        assert rec.error is None
        # The end of the stream wakes it: receive() raises EndOfStream.
        pair.raw.close()
        with anyio.fail_after(5):
            await rec.done.wait()
        assert isinstance(rec.error, anyio.EndOfStream)
        assert len(rec.log) == len(sent)


async def test_end_of_stream_after_partial_frame_ends_receive(anyio_backend: str) -> None:
    _require_asyncio(anyio_backend)
    async with connected_pair() as pair, receiving(pair) as rec:
        frame = bytes(encode_frame(_result(9)))
        pair.send(_stream_bytes([_result(1)]) + frame[:5])
        await rec.wait_for(1)
        pair.raw.close()
        with anyio.fail_after(5):
            await rec.done.wait()
        assert rec.messages == [_result(1)]
        assert isinstance(rec.error, anyio.EndOfStream)


@pytest.mark.parametrize("split", [False, True])
async def test_oversized_frame_is_a_protocol_error(anyio_backend: str, split: bool) -> None:
    _require_asyncio(anyio_backend)
    async with connected_pair(max_frame_size=1024) as pair, receiving(pair) as rec:
        data = _stream_bytes([_result(1)]) + (10_000).to_bytes(4, "big") + b"x" * 100
        await pair.deliver(data, split=split)
        with anyio.fail_after(5):
            await rec.done.wait()
        assert isinstance(rec.error, ProtocolError)
        assert "10000" in str(rec.error)
        # The good frame before it was taken directly; the bad one never reached direct.
        assert rec.log[0][:2] == ("direct", _result(1))
        assert rec.messages == [_result(1)]


@pytest.mark.parametrize("split", [False, True])
async def test_undecodable_frame_is_a_protocol_error(anyio_backend: str, split: bool) -> None:
    _require_asyncio(anyio_backend)
    async with connected_pair() as pair, receiving(pair) as rec:
        data = _stream_bytes([_result(1)]) + b"\x00\x00\x00\x05hello" + _stream_bytes([_result(2)])
        await pair.deliver(data, split=split)
        with anyio.fail_after(5):
            await rec.done.wait()
        assert isinstance(rec.error, ProtocolError)
        assert "undecodable" in str(rec.error)
        # Result 2 comes after the bad frame: it must not be delivered.
        assert rec.messages == [_result(1)]
        assert rec.sources == ["direct"]


async def test_direct_none_leaves_everything_to_receive(anyio_backend: str) -> None:
    _require_asyncio(anyio_backend)
    async with connected_pair() as pair, receiving(pair) as rec:
        pair.conn.direct = None
        pair.send(_stream_bytes(SEQUENCE))
        await rec.wait_for(len(SEQUENCE))
        assert rec.messages == SEQUENCE
        assert set(rec.sources) == {"recv"}


# ---------------------------------------------------------------- both backends


async def test_large_frame_arrives_intact(anyio_backend: str) -> None:
    payload = msgspec.Raw(msgspec.msgpack.encode(os.urandom(3 * 1024 * 1024)))
    big = _result(7, payload)
    sent: list[Message] = [_result(6), big, Ping(), _result(8)]
    data = _stream_bytes(sent)
    async with connected_pair() as pair, receiving(pair) as rec:

        def write_in_chunks() -> None:
            for start in range(0, len(data), 50_000):
                pair.raw.sendall(data[start : start + 50_000])

        with anyio.fail_after(20):
            await anyio.to_thread.run_sync(write_in_chunks)
        await rec.wait_for(len(sent), timeout=20)
        assert rec.messages == sent
        got = rec.log[1][1]
        assert isinstance(got, Result)
        assert bytes(got.payload) == bytes(payload)
        _assert_frames_match(rec)
        if anyio_backend == "asyncio":
            assert rec.sources[0] == "direct"
            assert rec.sources[2] == "recv"  # the Ping is declined
        else:
            assert set(rec.sources) == {"recv"}


@pytest.mark.parametrize("how", ["one write", "pieces"])
async def test_sequence_complete_and_in_order_on_both_backends(
    anyio_backend: str, how: str
) -> None:
    async with connected_pair() as pair, receiving(pair) as rec:
        data = _stream_bytes(SEQUENCE)
        if how == "one write":
            pair.send(data)
        else:
            await pair.send_in_pieces(data)
        await rec.wait_for(len(SEQUENCE))
        await anyio.sleep(0.05)
        assert rec.messages == SEQUENCE
        _assert_frames_match(rec)
        if anyio_backend == "trio":
            # No reader on trio: direct is never called from the read side.
            assert set(rec.sources) == {"recv"}
        else:
            assert rec.sources[0] == "direct"
            assert all(src == "recv" for src, msg, _ in rec.log if not isinstance(msg, Result))
        pair.raw.close()
        with anyio.fail_after(5):
            await rec.done.wait()
        assert isinstance(rec.error, anyio.EndOfStream)
