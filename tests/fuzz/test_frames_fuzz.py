"""Property-based fuzzing of the wire format, without sockets to a controller (issue 11,
"hostile input").

What a peer sends is decoded by :func:`daffi._frames.first_frame` (the controller's and the
nodes' connections) or :class:`daffi._frames.FrameReader` (call, work and served channels).
Whatever the bytes — random, truncated, mutated, msgpack of the wrong shape, nested deeper
than msgspec recurses, announcing huge lengths, ext types, invalid UTF-8, NaN or
out-of-range numbers — the outcome must be "incomplete", a message, or a
:class:`~daffi.exceptions.ProtocolError`: the caller closes that one connection on a
ProtocolError and nothing else, so any other exception escaping would take down more than
the offending peer. Every message type must also survive an encode/decode round trip, a
registration's length must be read from its header alone, and the controller's stream relay
(:func:`daffi._stream_relay.stream_hop`) must hold each stream to its credit window whatever
frames arrive from whichever node.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from daffi._frames import (
    _LARGE_FRAME,
    DEFAULT_MAX_FRAME_SIZE,
    FrameReader,
    FrameTooLarge,
    decode_frame,
    encode_frame,
    first_frame,
)
from daffi._protocol import (
    STREAM_WINDOW,
    CallbackInfo,
    Credit,
    Ping,
    Result,
    StreamEnd,
    StreamItem,
    YieldItem,
    callbacks_length,
    decode_callbacks,
    encode_callbacks,
)
from daffi._router import InFlight, Router
from daffi._stream_relay import STRAY_LIMIT, stream_hop
from daffi.exceptions import ProtocolError

from ._strategies import (
    MESSAGE_TYPES,
    MESSAGES,
    callback_infos,
    chunked,
    examples,
    frame_of,
    hostile_bytes,
    hostile_frames,
    messages,
    msgpack_values,
    mutated,
    raw_payloads,
    same,
)

# generous: the slowest property takes about 15 ms an example
pytestmark = pytest.mark.timeout(120 + examples() // 10)

PEER = "'peer'"

#: frame size limits a connection may have: tiny, a handshake's, the default, anything
max_frame_sizes = st.one_of(
    st.just(DEFAULT_MAX_FRAME_SIZE),
    st.just(1024 * 1024 + 64 * 1024),
    st.sampled_from([0, 1, 16, 1024]),
    st.integers(0, 2**32),
)


def check_first_frame(data: bytes, max_frame_size: int) -> Any:
    """``first_frame`` on ``data``, checked against its contract: None while incomplete, the
    message and its exact bytes, or ProtocolError; ``data`` left as it was. Returns what it
    returned, or the ProtocolError."""
    buf = bytearray(data)
    error: ProtocolError | None = None
    try:
        taken = first_frame(buf, max_frame_size, PEER)
    except ProtocolError as exc:
        error = exc
    if error is not None:
        assert PEER in str(error)
        if isinstance(error, FrameTooLarge):
            assert error.size == int.from_bytes(data[:4], "big") > max_frame_size
        outcome: Any = error
        event(f"first_frame: {type(error).__name__}")
    else:
        event("first_frame: " + ("incomplete" if taken is None else type(taken[0]).__name__))
        if taken is None:
            assert len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big")
        else:
            msg, frame = taken
            size = int.from_bytes(data[:4], "big")
            assert size <= max_frame_size
            assert frame == data[: 4 + size]
            assert isinstance(msg, MESSAGE_TYPES)
            # whatever decodes encodes again, to the same message
            assert same(decode_frame(encode_frame(msg), PEER), msg)
        outcome = taken
    assert buf == data
    return outcome


# ------------------------------------------------------------------ round trips


def test_every_message_type_has_a_strategy() -> None:
    assert set(MESSAGES) == set(MESSAGE_TYPES)
    assert len(MESSAGE_TYPES) == 20


@pytest.mark.parametrize("kind", MESSAGE_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=examples(1 / 4))
@given(data=st.data())
def test_every_message_round_trips(kind: type[Any], data: st.DataObject) -> None:
    msg = data.draw(MESSAGES[kind])
    frame = encode_frame(msg)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert same(decode_frame(frame, PEER), msg)
    # behind it, the start of another frame: first_frame takes exactly this one
    buf = bytearray(frame) + bytes(encode_frame(Ping()))[:3]
    taken = first_frame(buf, len(frame), PEER)
    assert taken is not None
    assert same(taken[0], msg)
    assert taken[1] == frame


@given(msg=messages)
def test_a_frame_over_the_limit_is_refused_from_its_header(msg: Any) -> None:
    frame = encode_frame(msg)
    with pytest.raises(FrameTooLarge) as info:
        first_frame(bytearray(frame[:4]), len(frame) - 5, PEER)
    assert info.value.size == len(frame) - 4


# ------------------------------------------------------------------ hostile bytes


@given(data=st.one_of(st.binary(max_size=256), hostile_bytes), max_frame_size=max_frame_sizes)
def test_first_frame_on_any_bytes_is_incomplete_a_message_or_a_protocol_error(
    data: bytes, max_frame_size: int
) -> None:
    check_first_frame(data, max_frame_size)


@pytest.mark.parametrize("kind", MESSAGE_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=examples(1 / 4))
@given(data=st.data())
def test_a_mutated_frame_is_incomplete_a_message_or_a_protocol_error(
    kind: type[Any], data: st.DataObject
) -> None:
    frames = MESSAGES[kind].map(lambda msg: bytes(encode_frame(msg)))
    check_first_frame(data.draw(mutated(frames)), DEFAULT_MAX_FRAME_SIZE)


@given(value=msgpack_values)
def test_valid_msgpack_of_the_wrong_shape_is_a_protocol_error(value: Any) -> None:
    outcome = check_first_frame(frame_of(msgspec.msgpack.encode(value)), DEFAULT_MAX_FRAME_SIZE)
    # No plain value is an envelope: those are arrays starting with a known tag.
    if not (isinstance(value, list) and value):
        assert isinstance(outcome, ProtocolError)


# ------------------------------------------------------------------ FrameReader


@contextlib.contextmanager
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair; the reading end (the second) does not block."""
    a, b = socket.socketpair()
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def drain(reader: FrameReader, sock: socket.socket) -> bool:
    """Read everything there is now (non-blocking); False if the peer closed."""
    while True:
        try:
            if not reader.read_from(sock):
                return False
        except BlockingIOError:
            return True


def frames_now(reader: FrameReader, got: list[Any] | None = None) -> list[Any]:
    """The frames complete now, added to ``got`` (kept if a later one raises)."""
    got = [] if got is None else got
    while (taken := reader.next_frame()) is not None:
        got.append(taken)
    return got


#: a Result large enough to take the reader's large-frame path
large_results = st.builds(
    Result,
    st.integers(0, 10),
    st.just("client"),
    st.integers(_LARGE_FRAME - 16, _LARGE_FRAME + 70_000).map(
        lambda size: msgspec.Raw(msgspec.msgpack.encode(bytes(size)))
    ),
)


@settings(max_examples=examples(1 / 2))
@given(
    msgs=st.lists(st.one_of(messages, messages, large_results), max_size=6),
    data=st.data(),
)
def test_frame_reader_yields_the_frames_in_order_however_they_are_cut(
    msgs: list[Any], data: st.DataObject
) -> None:
    stream = b"".join(bytes(encode_frame(msg)) for msg in msgs)
    chunks = data.draw(chunked(stream))
    already = data.draw(st.integers(0, len(chunks[0]))) if chunks else 0
    reader = FrameReader(DEFAULT_MAX_FRAME_SIZE, PEER, chunks[0][:already])
    got = frames_now(reader)
    chunks[0] = chunks[0][already:]
    with socket_pair() as (a, b):
        for chunk in chunks:
            if chunk:
                a.sendall(chunk)
            assert drain(reader, b)
            got += frames_now(reader)
    assert len(got) == len(msgs)
    for (msg, frame), sent in zip(got, msgs, strict=True):
        assert same(msg, sent)
        assert frame == encode_frame(sent)
    assert not reader.pending


@given(data=hostile_bytes, max_frame_size=max_frame_sizes, cuts=st.data())
def test_frame_reader_on_garbage_reads_what_first_frame_reads(
    data: bytes, max_frame_size: int, cuts: Any
) -> None:
    """Fed any bytes, the reader yields the frames :func:`first_frame` finds one after the
    other, then stops where it stops: incomplete, or the same ProtocolError."""
    expected: list[bytes] = []
    expected_error: type[ProtocolError] | None = None
    rest = bytearray(data)
    while True:
        try:
            taken = first_frame(rest, max_frame_size, PEER)
        except ProtocolError as exc:
            expected_error = type(exc)
            break
        if taken is None:
            break
        expected.append(taken[1])
        del rest[: len(taken[1])]

    reader = FrameReader(max_frame_size, PEER)
    got: list[Any] = []
    error: type[ProtocolError] | None = None
    with socket_pair() as (a, b):
        try:
            for chunk in cuts.draw(chunked(data)):
                a.sendall(chunk)
                drain(reader, b)
                frames_now(reader, got)
            a.shutdown(socket.SHUT_WR)
            assert not drain(reader, b)
            frames_now(reader, got)
        except ProtocolError as exc:
            error = type(exc)
    assert [bytes(frame) for _, frame in got] == expected
    assert error is expected_error


# ------------------------------------------------------------------ registrations


@given(data=st.one_of(st.binary(max_size=64), msgpack_values.map(msgspec.msgpack.encode)))
def test_callbacks_length_is_an_int_or_a_decode_error(data: bytes) -> None:
    first = data[0] if data else None
    is_array = first is not None and (
        0x90 <= first <= 0x9F
        or (first == 0xDC and len(data) >= 3)
        or (first == 0xDD and len(data) >= 5)
    )
    try:
        length = callbacks_length(msgspec.Raw(data))
    except msgspec.DecodeError:
        assert not is_array
    else:
        assert is_array
        assert 0 <= length < 2**32


@given(value=msgpack_values)
def test_callbacks_length_of_an_array_is_its_length(value: Any) -> None:
    if isinstance(value, list):
        assert callbacks_length(msgspec.Raw(msgspec.msgpack.encode(value))) == len(value)


@given(callbacks=st.lists(callback_infos, max_size=40).map(tuple))
def test_a_registration_round_trips_and_its_length_reads_from_the_header(
    callbacks: tuple[CallbackInfo, ...],
) -> None:
    raw = encode_callbacks(callbacks)
    assert callbacks_length(raw) == len(callbacks)
    assert same(decode_callbacks(raw), callbacks)


@given(data=st.one_of(st.binary(max_size=64), hostile_frames.map(lambda f: f[4:]), raw_payloads))
def test_decode_callbacks_raises_only_decode_errors(data: Any) -> None:
    """``decode_callbacks`` on anything: callbacks, or a msgspec error (ValidationError is a
    DecodeError), which the controller turns into a ProtocolError of the sender. Nesting
    past the recursion limit raises RecursionError, which the controller's only caller
    (``daffi._admission.reoffer``) turns into a ProtocolError too."""
    try:
        decoded = decode_callbacks(msgspec.Raw(data))
    except (msgspec.DecodeError, RecursionError):
        pass
    else:
        assert all(isinstance(info, CallbackInfo) for info in decoded)
        assert callbacks_length(msgspec.Raw(data)) == len(decoded)


# ------------------------------------------------------------------ the stream relay

CALL = ("caller", 1)
SENDERS = ("caller", "callee", "third")


class Sender:
    def __init__(self, name: str) -> None:
        self.name = name
        self.strays = 0


def stream_frames(honest: bool) -> st.SearchStrategy[Any]:
    """Stream frames: ``honest``, about the call in flight and naming its caller (they
    pass, unless beyond the window or over-granting credit); else also about another call,
    naming anyone, granting any credit."""
    ids = st.just(1) if honest else st.sampled_from([1, 1, 1, 1, 2])
    names = st.just("caller") if honest else st.sampled_from(["caller", "callee", "third"])
    credit = (
        st.integers(1, 8)
        if honest
        else st.one_of(st.integers(-2, STREAM_WINDOW + 2), st.integers(-(2**63), 2**64 - 1))
    )
    payload = st.just(msgspec.Raw(b"\xc0"))
    return st.one_of(
        st.builds(StreamItem, ids, names, payload),
        st.builds(YieldItem, ids, names, payload),
        st.builds(Credit, ids, names, credit, st.booleans()),
        st.builds(StreamEnd, ids, names),
    )


def natural_sender(msg: Any) -> str:
    """The party that may send ``msg`` on the call in flight."""
    if isinstance(msg, StreamItem | StreamEnd):
        return "caller"
    if isinstance(msg, YieldItem):
        return "callee"
    return "caller" if msg.to_callee else "callee"


@st.composite
def step(draw: st.DrawFn, honest: bool) -> tuple[str, Any, int]:
    """(sender, frame, how many times in a row): ``honest``, from the party that may send
    it, else mostly; bursts reach the window's edge."""
    msg = draw(stream_frames(honest))
    sender = natural_sender(msg)
    if not honest:
        sender = draw(st.one_of(st.just(sender), st.sampled_from(SENDERS)))
    times = draw(st.one_of(st.just(1), st.integers(1, 2 * STREAM_WINDOW + 8)))
    return sender, msg, times


#: the steps of one example: a conversation of the call's parties (with windows used up
#: and credit granted, or over-granted), or frames of anyone about anything
steps = st.one_of(
    st.lists(step(honest=True), max_size=20), st.lists(step(honest=False), max_size=20)
)


def expected_hop(sender: str, msg: Any, live: bool, forwarded: dict[str, int]) -> str | None:
    """Where a relay exactly as strict as the nodes themselves sends ``msg`` from
    ``sender``: the other party of the call, or None (not forwarded: dropped or refused)."""
    if not live or msg.id != 1:
        return None
    to_callee_left = STREAM_WINDOW + forwarded["credit_to_caller"] - forwarded["items"]
    to_caller_left = STREAM_WINDOW + forwarded["credit_to_callee"] - forwarded["values"]
    if sender == "caller":
        if isinstance(msg, StreamEnd) and msg.src == "caller":
            return "callee"
        if isinstance(msg, StreamItem) and msg.src == "caller" and to_callee_left > 0:
            return "callee"
        if (
            isinstance(msg, Credit)
            and msg.peer == "caller"
            and msg.to_callee
            and 0 < msg.n <= STREAM_WINDOW - to_caller_left
        ):
            return "callee"
    if sender == "callee":
        if isinstance(msg, YieldItem) and msg.dst == "caller" and to_caller_left > 0:
            return "caller"
        if (
            isinstance(msg, Credit)
            and msg.peer == "caller"
            and not msg.to_callee
            and 0 < msg.n <= STREAM_WINDOW - to_callee_left
        ):
            return "caller"
    return None


@given(steps=steps)
def test_stream_relay_holds_each_direction_to_its_credit(
    steps: list[tuple[str, Any, int]],
) -> None:
    """One call in flight (``caller`` -> ``callee``), frames from any of the three nodes.

    The relay forwards a frame only between the call's two parties, in the direction each
    may send; items forwarded never exceed the window plus the credit forwarded the other
    way, and credit forwarded never exceeds the items forwarded; every frame a party may
    send is forwarded (the check is never stricter than the nodes' own); the only error is
    ProtocolError, after which the real controller closes that node (and the call ends if
    it was a party). A third node is never forwarded anything, and is closed after
    ``STRAY_LIMIT`` stray frames at the latest.
    """
    router: Router[Any] = Router()
    router.record(CALL, InFlight("callee", "f", None))
    senders = {name: Sender(name) for name in SENDERS}
    closed: set[str] = set()
    forwarded = {"items": 0, "values": 0, "credit_to_caller": 0, "credit_to_callee": 0}
    for sender, msg, times in steps:
        for _ in range(times):
            if sender in closed:
                break
            expected = expected_hop(sender, msg, CALL in router, forwarded)
            try:
                hop = stream_hop(router, senders[sender], msg)
            except ProtocolError:
                assert expected is None, f"{msg!r} from {sender!r} refused"
                closed.add(sender)
                if sender in ("caller", "callee"):
                    router.take_all(sender)  # the controller drops it: its calls end
                continue
            assert hop == expected, f"{msg!r} from {sender!r} went to {hop!r}"
            assert senders[sender].strays < STRAY_LIMIT  # at the limit, it is closed
            if isinstance(msg, StreamItem) and hop is not None:
                forwarded["items"] += 1
            elif isinstance(msg, YieldItem) and hop is not None:
                forwarded["values"] += 1
            elif isinstance(msg, Credit) and hop is not None:
                forwarded["credit_to_callee" if msg.to_callee else "credit_to_caller"] += msg.n
            assert forwarded["items"] <= STREAM_WINDOW + forwarded["credit_to_caller"]
            assert forwarded["values"] <= STREAM_WINDOW + forwarded["credit_to_callee"]
            assert forwarded["credit_to_caller"] <= forwarded["items"]
            assert forwarded["credit_to_callee"] <= forwarded["values"]
    event(f"relay: closed {sorted(closed) or 'nobody'}")
    if max(forwarded["items"], forwarded["values"]) >= STREAM_WINDOW:
        event("relay: a window was used up")
