"""Hypothesis strategies shared by the fuzz tests: every wire message, and hostile bytes.

``messages`` builds any message of the protocol with any field values its types allow
(payloads are ``msgspec.Raw`` of valid msgpack). ``hostile_bytes`` builds what a broken or
malicious peer may send instead: random bytes, truncated and mutated frames, msgpack of the
wrong shape, deep nesting, huge declared lengths, ext types, invalid UTF-8, NaN and
out-of-range numbers in typed fields.
"""

from __future__ import annotations

import itertools
import math
import typing
from typing import Any

import msgspec
from hypothesis import settings
from hypothesis import strategies as st

from daffi._frames import NESTING_LIMIT, encode_frame
from daffi._protocol import (
    Attach,
    Bye,
    Call,
    CallbackInfo,
    Cancel,
    Challenge,
    Credit,
    Error,
    Hello,
    Message,
    NodeDown,
    NodeUp,
    ParamInfo,
    Ping,
    Pong,
    Proof,
    Register,
    Reject,
    Result,
    ScheduleSpec,
    StreamEnd,
    StreamItem,
    Welcome,
    YieldItem,
    encode_callbacks,
)
from daffi.exceptions import ErrorInfo


def examples(factor: float = 1.0) -> int:
    """``factor`` times the examples per property of the loaded profile (see conftest)."""
    return max(10, int(settings().max_examples * factor))


MESSAGE_TYPES: tuple[type[Any], ...] = typing.get_args(Message)
#: the tag of every message type
TAGS: tuple[int, ...] = tuple(t.__struct_config__.tag for t in MESSAGE_TYPES)

# ------------------------------------------------------------------ scalars

#: any text msgspec can encode (no lone surrogates)
texts = st.text(st.characters(codec="utf-8"), max_size=16)
#: every int msgpack can carry
ints = st.integers(-(2**63), 2**64 - 1)
#: small ints, huge ints, and the edges
any_ints = st.one_of(st.integers(-3, 70), ints, st.sampled_from([-(2**63), 2**63 - 1, 2**64 - 1]))
#: any float, NaN and infinities included
floats = st.floats()
exts = st.builds(msgspec.msgpack.Ext, st.integers(-128, 127), st.binary(max_size=16))

#: any value msgpack carries (ext types included)
msgpack_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), any_ints, floats, texts, st.binary(max_size=24), exts),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(texts, ints), children, max_size=4),
    ),
    max_leaves=16,
)


def encode(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


#: payloads as a node's codec would carry them: any valid msgpack
raw_payloads = msgpack_values.map(lambda value: msgspec.Raw(encode(value)))


def tuples(elements: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[Any]:
    return st.lists(elements, max_size=max_size).map(tuple)


# ------------------------------------------------------------------ messages

param_infos = st.builds(ParamInfo, texts, any_ints, st.booleans())
callback_infos = st.builds(CallbackInfo, texts, tuples(param_infos), st.booleans(), st.booleans())
schedule_specs = st.builds(
    ScheduleSpec,
    texts,
    st.one_of(st.sampled_from(["interval", "at_time"]), texts),
    st.none() | floats,
    tuples(floats),
)
error_infos = st.builds(ErrorInfo, texts, texts, texts, texts, texts, texts)
registrations = st.one_of(tuples(callback_infos).map(encode_callbacks), raw_payloads)


def message_strategies(
    names: st.SearchStrategy[str] = texts,
    ids: st.SearchStrategy[int] = any_ints,
    callbacks: st.SearchStrategy[str] = texts,
) -> dict[type[Any], st.SearchStrategy[Any]]:
    """A strategy per message type; ``names`` for node names, ``ids`` for call ids,
    ``callbacks`` for callback names."""
    return {
        Hello: st.builds(
            Hello,
            any_ints,
            names,
            tuples(texts),
            tuples(callback_infos),
            st.none() | st.binary(max_size=40),
            st.booleans(),
        ),
        Welcome: st.builds(
            Welcome,
            any_ints,
            names,
            texts,
            st.dictionaries(names, tuples(callback_infos), max_size=3),
            st.none() | st.binary(max_size=32),
            st.none() | st.binary(max_size=40),
            st.none() | st.binary(max_size=40),
        ),
        Challenge: st.builds(Challenge, st.binary(max_size=40), st.booleans()),
        Proof: st.builds(
            Proof, st.none() | st.binary(max_size=40), st.none() | st.binary(max_size=40)
        ),
        Reject: st.builds(Reject, texts, texts),
        NodeUp: st.builds(NodeUp, names, tuples(callback_infos)),
        NodeDown: st.builds(NodeDown, names, st.booleans()),
        Register: st.builds(Register, registrations),
        Attach: st.builds(Attach, any_ints, names, st.binary(max_size=32), st.booleans()),
        Call: st.builds(
            Call,
            ids,
            callbacks,
            raw_payloads,
            names,
            st.none() | names,
            st.none() | floats,
            st.booleans(),
            st.none() | schedule_specs,
            st.booleans(),
            texts,
        ),
        Result: st.builds(Result, ids, names, raw_payloads),
        Error: st.builds(Error, ids, names, error_infos),
        Cancel: st.builds(Cancel, ids, names),
        StreamItem: st.builds(StreamItem, ids, names, raw_payloads),
        StreamEnd: st.builds(StreamEnd, ids, names),
        YieldItem: st.builds(YieldItem, ids, names, raw_payloads),
        Credit: st.builds(Credit, ids, names, any_ints, st.booleans()),
        Ping: st.just(Ping()),
        Pong: st.just(Pong()),
        Bye: st.builds(Bye, texts),
    }


MESSAGES = message_strategies()
#: any message of the protocol
messages: st.SearchStrategy[Any] = st.one_of(*MESSAGES.values())


def same(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same value: field by field for structs, by bytes for
    ``msgspec.Raw``, and NaN the same as NaN."""
    if isinstance(a, msgspec.Raw) or isinstance(b, msgspec.Raw):
        return type(a) is type(b) and bytes(a) == bytes(b)
    if isinstance(a, msgspec.Struct):
        return type(a) is type(b) and all(
            same(getattr(a, f), getattr(b, f)) for f in a.__struct_fields__
        )
    if isinstance(a, tuple | list):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and list(a) == list(b)
            and all(same(value, b[key]) for key, value in a.items())
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------ hostile bytes


def frame_of(body: bytes) -> bytes:
    """``body`` behind a header announcing exactly its length."""
    return len(body).to_bytes(4, "big") + body


encoded_frames = messages.map(lambda msg: bytes(encode_frame(msg)))


@st.composite
def mutated(draw: st.DrawFn, frames: st.SearchStrategy[bytes] = encoded_frames) -> bytes:
    """A valid frame with one or more bytes flipped, replaced, inserted or deleted (its
    header kept, or fixed to the new length)."""
    data = bytearray(draw(frames))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if how == "insert" or not data:
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[where : where + draw(st.integers(1, 8))]
        else:
            where = min(where, len(data) - 1)
            data[where] = (
                data[where] ^ (1 << draw(st.integers(0, 7)))
                if how == "flip"
                else draw(st.integers(0, 255))
            )
    if draw(st.booleans()) and len(data) >= 4:
        return frame_of(bytes(data[4:]))
    return bytes(data)


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    """A valid frame cut short: its header kept (incomplete), or fixed to the cut body (a
    complete frame whose msgpack ends too early)."""
    data = draw(encoded_frames)
    cut = draw(st.integers(0, len(data)))
    if draw(st.booleans()) or cut < 4:
        return data[:cut]
    return frame_of(data[4:cut])


@st.composite
def fields_of_any_type(draw: st.DrawFn) -> bytes:
    """An envelope with a (mostly valid) tag and fields of any type and count: wrong types,
    NaN and infinities, negative and huge ints, ext types where strings belong."""
    tag = draw(st.one_of(st.sampled_from(TAGS), any_ints))
    return frame_of(encode([tag, *draw(st.lists(msgpack_values, max_size=12))]))


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    """Arrays or maps nested around (or far beyond) the depth msgspec decodes: bare, in a
    call's payload, or in a field that expects a string."""
    depth = draw(
        st.one_of(
            st.integers(0, 3 * NESTING_LIMIT),
            st.sampled_from([NESTING_LIMIT - 1, NESTING_LIMIT, NESTING_LIMIT + 1]),
            st.integers(0, 50 * NESTING_LIMIT),
        )
    )
    level = draw(st.sampled_from([b"\x91", b"\x81\xa1k", b"\x81\x00", b"\xdc\x00\x01"]))
    nested = level * depth + b"\xc0"
    where = draw(st.sampled_from(["bare", "payload", "trailing", "name", "callbacks"]))
    if where == "bare":
        return frame_of(nested)
    if where == "payload":
        return bytes(encode_frame(Call(1, "echo", msgspec.Raw(nested), "deep")))
    if where == "callbacks":
        return bytes(encode_frame(Register(msgspec.Raw(b"\x91\x95\xa1f\x90\xc2\xc2" + nested))))
    if where == "trailing":
        return frame_of(b"\x92\x14" + nested)  # a Ping with an extra field, skipped
    # [tag of Hello, version, <nested where the name goes>]
    return frame_of(b"\x93\x01\x01" + nested)


#: msgpack markers with 4-byte lengths: str32, bin32, array32, map32, ext32
_LONG_MARKERS = (b"\xdb", b"\xc6", b"\xdd", b"\xdf", b"\xc9")


@st.composite
def huge_lengths(draw: st.DrawFn) -> bytes:
    """A frame announcing a huge body, or a msgpack string/array/map/ext inside a frame
    announcing far more elements or bytes than the frame holds."""
    if draw(st.booleans()):
        announced = draw(st.one_of(st.integers(0, 2**32 - 1), st.just(2**32 - 1)))
        return announced.to_bytes(4, "big") + draw(st.binary(max_size=16))
    body = bytearray(draw(encoded_frames)[4:])
    marker = draw(st.sampled_from(_LONG_MARKERS))
    length = draw(st.one_of(st.integers(0, 2**32 - 1), st.just(2**32 - 1)))
    ext_type = b"\x01" if marker == b"\xc9" else b""
    where = draw(st.integers(0, len(body)))
    body[where:where] = marker + length.to_bytes(4, "big") + ext_type
    return frame_of(bytes(body))


@st.composite
def invalid_utf8(draw: st.DrawFn) -> bytes:
    """A Hello, Call or Bye whose string field holds bytes that are not UTF-8 (or UTF-8 of
    a surrogate, which is not text either)."""
    bad = draw(
        st.one_of(
            st.binary(min_size=1, max_size=24),
            st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]),
        )
    )
    string = (b"\xd9" + bytes([len(bad)]) if len(bad) > 31 else bytes([0xA0 | len(bad)])) + bad
    kind = draw(st.sampled_from(["hello", "call", "bye"]))
    if kind == "hello":
        return frame_of(b"\x93\x01\x01" + string)  # [1, version 1, name]
    if kind == "bye":
        return frame_of(b"\x92\x16" + string)  # [22, reason]
    # [10, id 1, name, payload nil, src "x"]
    return frame_of(b"\x95\x0a\x01" + string + b"\xc0\xa1x")


#: what a broken or hostile peer may send (one "frame", valid or not)
hostile_frames: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(frame_of),
    encoded_frames,
    msgpack_values.map(encode).map(frame_of),
    mutated(),
    truncated(),
    fields_of_any_type(),
    deep_nesting(),
    huge_lengths(),
    invalid_utf8(),
)

#: several of those, one after the other
hostile_bytes: st.SearchStrategy[bytes] = st.lists(hostile_frames, min_size=1, max_size=4).map(
    b"".join
)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at arbitrary places into chunks of at most 64 KiB (a chunk must fit in
    the socket buffer: it is sent before the reader reads)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    chunks = [data[start:end] for start, end in itertools.pairwise(bounds)]
    return [
        chunk[i : i + 64 * 1024] for chunk in chunks for i in range(0, max(len(chunk), 1), 65536)
    ]
