"""FrameReader: how call channels and served channels read frames off a socket.

Small frames come 64 KiB per read; a frame over 256 KiB is read straight into a buffer of
its own that grows with what arrives. Driven over a socketpair, blocking and not.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import msgspec
import pytest

from daffi._frames import _LARGE_FRAME, _LARGE_STEP, FrameReader, encode_frame
from daffi._protocol import Call, Ping, Result
from daffi.exceptions import ProtocolError

MIB = 1024 * 1024


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def result(size: int, call_id: int = 1) -> tuple[Result, bytes]:
    msg = Result(call_id, "client", msgspec.Raw(msgspec.msgpack.encode(os.urandom(size))))
    return msg, bytes(encode_frame(msg))


def read_all(reader: FrameReader, sock: socket.socket, count: int) -> list[object]:
    """``count`` messages, reading as needed (blocking)."""
    got: list[object] = []
    while len(got) < count:
        taken = reader.next_frame()
        if taken is not None:
            got.append(taken[0])
            continue
        assert reader.read_from(sock), "the connection ended early"
    return got


def send_in_thread(sock: socket.socket, data: bytes) -> threading.Thread:
    thread = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("sizes", [[10], [10, 20, 30], [300 * 1024], [3 * MIB, 10, 2 * MIB]])
def test_frames_come_back_whole_and_in_order(
    pair: tuple[socket.socket, socket.socket], sizes: list[int]
) -> None:
    a, b = pair
    sent = [result(size, i) for i, size in enumerate(sizes)]
    thread = send_in_thread(a, b"".join(frame for _, frame in sent))
    reader = FrameReader(64 * MIB, "peer")
    assert read_all(reader, b, len(sent)) == [msg for msg, _ in sent]
    thread.join(5)
    assert not reader.pending


def test_bytes_received_before_are_read_first(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    first, second = encode_frame(Ping()), encode_frame(Call(7, "add", msgspec.Raw(b"\x90"), "x"))
    reader = FrameReader(MIB, "peer", bytes(first) + bytes(second[:5]))
    taken = reader.next_frame()
    assert taken is not None
    assert taken[0] == Ping()
    assert taken[1] == first
    assert reader.pending
    assert reader.next_frame() is None
    a.sendall(second[5:])
    assert read_all(reader, b, 1) == [Call(7, "add", msgspec.Raw(b"\x90"), "x")]


def test_a_large_frame_is_its_own_buffer(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    msg, frame = result(2 * MIB)
    thread = send_in_thread(a, frame)
    reader = FrameReader(64 * MIB, "peer")
    while (taken := reader.next_frame()) is None:
        assert reader.read_from(b)
    thread.join(5)
    assert taken[0] == msg
    assert isinstance(taken[1], bytearray)
    assert taken[1] == frame


def test_a_header_alone_does_not_allocate_the_whole_frame(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A peer announcing 32 MiB and sending 4 bytes makes the reader hold ~1 MiB, not 32."""
    a, b = pair
    a.sendall((32 * MIB).to_bytes(4, "big") + b"\x00" * 100)
    reader = FrameReader(64 * MIB, "peer")
    assert reader.read_from(b)
    assert reader.next_frame() is None
    assert reader._large is not None
    assert len(reader._large) == _LARGE_STEP
    # it grows with what arrives: twice what it holds once full
    thread = send_in_thread(a, b"\x00" * (_LARGE_STEP - 104 + 10))
    while reader._have < _LARGE_STEP + 10:
        assert reader.read_from(b)
    thread.join(5)
    assert len(reader._large) == 2 * _LARGE_STEP


def test_frame_just_over_the_large_size(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    msg, frame = result(_LARGE_FRAME + 1)
    thread = send_in_thread(a, frame + bytes(encode_frame(Ping())))
    reader = FrameReader(64 * MIB, "peer")
    assert read_all(reader, b, 2) == [msg, Ping()]
    thread.join(5)


def test_oversized_frame_is_refused_from_its_header(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    a.sendall((2 * MIB).to_bytes(4, "big"))
    reader = FrameReader(MIB, "the controller")
    assert reader.read_from(b)
    with pytest.raises(ProtocolError, match="the controller sent a frame of 2097152 bytes"):
        reader.next_frame()


def test_undecodable_large_frame(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    body = b"\xc1" * (_LARGE_FRAME + 10)  # 0xc1 is never used in msgpack
    thread = send_in_thread(a, len(body).to_bytes(4, "big") + body)
    reader = FrameReader(64 * MIB, "peer")

    def read_until_error() -> None:
        while reader.next_frame() is None:
            assert reader.read_from(b)

    with pytest.raises(ProtocolError, match="undecodable"):
        read_until_error()
    thread.join(5)


@pytest.mark.parametrize("cut", [2, 100, 600 * 1024])
def test_end_of_connection_mid_frame(pair: tuple[socket.socket, socket.socket], cut: int) -> None:
    a, b = pair
    _, frame = result(MIB)

    def send_then_end() -> None:
        a.sendall(frame[:cut])
        a.shutdown(socket.SHUT_WR)

    threading.Thread(target=send_then_end, daemon=True).start()
    reader = FrameReader(64 * MIB, "peer")
    ended = False
    while not ended:
        assert reader.next_frame() is None
        ended = not reader.read_from(b)
    assert reader.pending  # what was read of the frame is still there, never returned


def test_non_blocking_reads_resume_where_they_stopped(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    b.setblocking(False)
    msg, frame = result(MIB)
    reader = FrameReader(64 * MIB, "peer")
    with pytest.raises(BlockingIOError):
        reader.read_from(b)
    for start in range(0, len(frame), 100_000):
        a.sendall(frame[start : start + 100_000])
        while True:
            try:
                assert reader.read_from(b)
            except BlockingIOError:
                break
        taken = reader.next_frame()
        if start + 100_000 < len(frame):
            assert taken is None
    assert taken is not None
    assert taken[0] == msg
