"""Property-based fuzzing of a running controller over real sockets (issue 11, "hostile
input").

One controller, a node ``server`` offering callbacks and a legitimate node ``client`` run
in-process on a Unix socket in a temp dir, once per anyio backend (asyncio and trio), on the
loop of a blocking portal. Every hypothesis example then connects a raw socket and sends
what a broken or malicious peer might: bytes of any kind before the handshake; a valid
``Hello`` followed by garbage; a valid ``Hello`` (or an ``Attach`` with a guessed token)
followed by any sequence of protocol messages, lying about who sends them, calling
callbacks that exist or not with payloads of any shape, answering, cancelling, streaming and
granting credit for calls that are not theirs, re-registering, saying goodbye; or such a
sequence on a call or work channel it opened with its own session's token.

Issue 11's rule: bad input gets a clear ProtocolError that closes only the offending
connection, and the controller never stops. So after every example, once the controller has
closed the attacker's connections (and no other): the client's calls through the controller
all succeed (zero failures), neither legitimate node was disconnected, and nothing was
logged above WARNING except the controller's "protocol error from ..." lines. If an example
breaks the network, every later one fails naming it (its bytes are the reproduction).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daffi._codec import PayloadCodec
from daffi._protocol import (
    PROTOCOL_VERSION,
    Attach,
    Bye,
    Call,
    CallbackInfo,
    Cancel,
    Credit,
    Error,
    Hello,
    NodeDown,
    NodeUp,
    Ping,
    Pong,
    Register,
    Result,
    ScheduleSpec,
    StreamEnd,
    StreamItem,
    Welcome,
    YieldItem,
    encode_callbacks,
)

from ._network import ME, Network, frame, open_network
from ._strategies import (
    callback_infos,
    chunked,
    error_infos,
    examples,
    hostile_bytes,
    hostile_frames,
    message_strategies,
    msgpack_values,
    texts,
    tuples,
)

#: examples per property: each one is a connection and a few calls (the default profile
#: keeps the whole directory, both backends, near half a minute)
EXAMPLES = examples()

# generous: an example takes about 10 ms (the sequences test runs twice as many)
pytestmark = pytest.mark.timeout(120 + EXAMPLES // 5)


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def network(request: pytest.FixtureRequest) -> Iterator[Network]:
    """The controller, ``server`` and ``client``, on the portal's loop (one per backend)."""
    with open_network(str(request.param)) as net:
        yield net


# ------------------------------------------------------------------ what attackers send

#: node names a hostile message uses: its own (mostly), the others', anything
names = st.one_of(st.sampled_from([ME, ME, ME, "client", "server", "ctrl", ""]), texts)
#: callback names: existing, system, unknown, anything
callback_names = st.one_of(
    st.sampled_from(
        [
            "echo",
            "echo_sync",
            "count",
            "collect",
            "nope",
            "__daffi.list_schedules",
            "__daffi.cancel_schedule",
            "__daffi.schedule_error",
            "__daffi.nope",
        ]
    ),
    texts,
)
#: call ids: the few an attacker reuses (and so may correlate), and any
ids = st.one_of(st.integers(0, 3), st.integers(-(2**63), 2**64 - 1))

_codec = PayloadCodec()
#: call payloads: arguments as a node encodes them, any msgpack, or any bytes (which make
#: the frame undecodable unless they happen to be one msgpack value)
arguments = st.one_of(
    st.binary(max_size=16).map(msgspec.Raw),
    st.builds(
        lambda args, kwargs: msgspec.Raw(_codec.encode_args(tuple(args), kwargs)),
        st.lists(msgpack_values, max_size=3),
        st.dictionaries(st.sampled_from(["x", "n", "y"]) | texts, msgpack_values, max_size=2),
    ),
    msgpack_values.map(lambda value: msgspec.Raw(msgspec.msgpack.encode(value))),
)
#: schedules that never run a callback more often than every 1,000 s (a hostile schedule
#: outlives its example: a fast one would load the server for the rest of the module)
schedules = st.builds(
    ScheduleSpec,
    texts,
    st.one_of(st.sampled_from(["interval", "at_time"]), texts),
    st.one_of(
        st.none(),
        st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -1.0, 1e308]),
        st.floats(1000, 1e12),
    ),
    tuples(
        st.one_of(
            st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -1.0, 1e308]),
            st.floats(4e9, 1e12),  # later than 2096
        )
    ),
)
credits = st.one_of(st.integers(1, 64), st.integers(-(2**63), 2**64 - 1))
timeouts = st.one_of(
    st.none(),
    st.floats(0, 60),
    st.sampled_from([float("nan"), float("inf"), -1.0, 0.0, 1e308]),
)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each ``weight`` times as likely as a strategy of weight 1."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda i: pool[i])


def node_messages(own: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """What a connected node sends, with ``own`` as the name it gives as its own (in
    ``src``, ``Credit.peer``), anything the names, ids and callbacks it knows elsewhere;
    mostly calls and stream frames."""
    calls = st.builds(
        Call,
        ids,
        callback_names,
        arguments,
        own,
        st.none() | names,
        timeouts,
        st.booleans(),
        st.none() | schedules,
        st.booleans(),
        st.one_of(st.just(""), texts),
    )
    registers = st.builds(
        Register,
        st.one_of(
            tuples(st.builds(CallbackInfo, callback_names)).map(encode_callbacks),
            tuples(callback_infos).map(encode_callbacks),
            msgpack_values.map(lambda value: msgspec.Raw(msgspec.msgpack.encode(value))),
        ),
    )
    return weighted(
        (5, calls),
        (1, st.builds(Result, ids, names, arguments)),
        (1, st.builds(Error, ids, names, error_infos)),
        (1, st.builds(Cancel, ids, own)),
        (2, st.builds(StreamItem, ids, own, arguments)),
        (1, st.builds(StreamEnd, ids, own)),
        (2, st.builds(YieldItem, ids, names, arguments)),
        (2, st.builds(Credit, ids, own | names, credits, st.booleans())),
        (1, registers),
        (1, st.just(Ping())),
        (1, st.just(Pong())),
    )


_any = message_strategies(names=names, ids=ids, callbacks=callback_names)
#: messages a node never sends the controller once connected (they close its connection)
#: and a goodbye
closing_messages = st.one_of(
    _any[Attach], _any[Hello], _any[NodeUp], _any[NodeDown], _any[Bye], _any[Welcome]
)
#: a sequence of messages: honest about who sends them (but about anything else), or not
message_sequences = st.one_of(
    st.lists(node_messages(st.just(ME)), max_size=12),
    st.lists(weighted((8, node_messages(names)), (1, closing_messages)), max_size=12),
)

hellos = st.builds(
    Hello,
    st.one_of(st.just(PROTOCOL_VERSION), st.integers(-(2**63), 2**64 - 1)),
    names,
    st.one_of(st.just(("msgpack",)), tuples(texts)),
    tuples(st.builds(CallbackInfo, callback_names)),
    st.none() | st.binary(max_size=16),
)
valid_hellos = st.builds(
    Hello,
    st.just(PROTOCOL_VERSION),
    st.just(ME),
    st.just(("msgpack",)),
    tuples(st.builds(CallbackInfo, callback_names)),
)
attaches = st.builds(
    Attach,
    st.one_of(st.just(PROTOCOL_VERSION), ids),
    st.sampled_from(["server", "client", ME, ""]),
    st.binary(max_size=32),
    st.booleans(),
)


@st.composite
def first_messages(draw: st.DrawFn) -> Any:
    """A connection's first message: a valid Hello (three times in four), or a Hello or an
    Attach of any kind (mostly refused)."""
    if draw(st.sampled_from([True, True, True, False])):
        return draw(valid_hellos)
    return draw(st.one_of(hellos, attaches))


firsts = first_messages()


# ------------------------------------------------------------------ the properties


@settings(max_examples=EXAMPLES)
@given(data=hostile_bytes, cuts=st.data())
def test_garbage_before_the_handshake_closes_only_that_connection(
    network: Network, data: bytes, cuts: st.DataObject
) -> None:
    network.attack(cuts.draw(chunked(data)))


@settings(max_examples=EXAMPLES)
@given(hello=valid_hellos, garbage=hostile_bytes, cuts=st.data())
def test_garbage_after_a_valid_hello_closes_only_that_connection(
    network: Network, hello: Hello, garbage: bytes, cuts: st.DataObject
) -> None:
    network.attack(cuts.draw(chunked(frame(hello) + garbage)))


@settings(max_examples=EXAMPLES * 2)
@given(
    first=firsts,
    msgs=message_sequences,
    tail=st.one_of(st.just(b""), hostile_frames),
    cuts=st.data(),
)
def test_any_message_sequence_leaves_the_controller_serving(
    network: Network, first: Any, msgs: list[Any], tail: bytes, cuts: st.DataObject
) -> None:
    data = b"".join(frame(msg) for msg in [first, *msgs]) + tail
    # Without garbage at the end, wait for the controller's answer to a Ping first: the
    # connection stays open while the calls it made run, are answered, or are cancelled.
    network.attack(cuts.draw(chunked(data)), ping=not tail)


@settings(max_examples=EXAMPLES)
@given(
    hello=valid_hellos,
    msgs=message_sequences,
    tail=st.one_of(st.just(b""), hostile_frames),
    work=st.booleans(),
    own_token=st.sampled_from([True, True, True, False]),
    main_first=st.booleans(),
    cuts=st.data(),
)
def test_any_message_sequence_on_a_call_or_work_channel_leaves_the_controller_serving(
    network: Network,
    hello: Hello,
    msgs: list[Any],
    tail: bytes,
    work: bool,
    own_token: bool,
    main_first: bool,
    cuts: st.DataObject,
) -> None:
    """A node's call and work channels carry only calls and cancels (call channel) or
    answers (work channel): anything else, or a wrong token, closes that channel alone."""
    data = b"".join(frame(msg) for msg in msgs) + tail
    network.attack_channel(
        hello, cuts.draw(chunked(data)), work=work, own_token=own_token, main_first=main_first
    )
