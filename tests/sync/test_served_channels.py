"""Served call channels: the controller's process reads a call channel in a thread of its own.

When the controller's process also runs a node (``Global(..., init_controller=True)``) that
offers a plain ``def`` callback, the controller hands each new call channel of a remote node
to a thread of its own (``ServedChannel`` in ``daffi/_served.py``, thread ``daffi-channel``),
at most ``workers`` of them. That thread runs plain calls of the local node's ``def``
callbacks itself, as one of the node's ``workers``, and leaves everything else to the event
loop, whose replies it writes. These tests drive such channels from a client node's sync
fetchers, and by hand on raw sockets, over a Unix socket (and TCP), on both backends, like
``test_call_channels.py`` and ``test_work_channels.py``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import re
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import anyio.lowlevel
import pytest

from daffi import BROADCAST, FG, Global
from daffi._codec import default_codec
from daffi._connection import Connection
from daffi._frames import encode_frame
from daffi._protocol import (
    PROTOCOL_VERSION,
    Attach,
    Call,
    Cancel,
    Error,
    Ping,
    Register,
    Result,
    Welcome,
)
from daffi._served import ServedChannel
from daffi.decorators import alias, fetcher
from daffi.exceptions import (
    GlobalContextError,
    RemoteCallError,
    RemoteStoppedUnexpectedly,
    UnableToFindCandidate,
)
from daffi.exceptions import TimeoutError as DaffiTimeoutError

from ._helpers import (
    Net,
    Outcome,
    closed_by_peer,
    controller_of,
    encoded_args,
    node_of,
    pool_of,
    raw_connect,
    read_frame,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

BACKENDS = ["asyncio", "trio"]

#: the thread of a served call channel (see daffi/_served.py)
SERVED_THREAD = "daffi-channel"
#: the worker pool of the controller's own node, named "ctrl" (see daffi/_dispatch.py)
POOL_THREAD = re.compile(r"^daffi-ctrl-\d+$")

MIB = 1024 * 1024


# ---------------------------------------------------------------- fetchers and callbacks


@fetcher
def add(a, b):
    pass


@fetcher
def nap(seconds):
    pass


@fetcher
def explode():
    pass


@fetcher
def echo(data):
    pass


@fetcher
def ping():
    pass


@fetcher
def count(n):
    pass


@fetcher
def remote_add(a, b):
    pass


@alias("who")
@fetcher
def who_one():
    pass


@fetcher(BROADCAST)
def who():
    pass


@alias("echo")
@fetcher(BROADCAST(timeout=0.5))
def echo_everywhere(data):
    pass


class Recorder:
    """``def`` callbacks that record the thread each call ran in, and how many ran at once."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()
        #: set when a call of nap_cb starts, and when one returns
        self.started = threading.Event()
        self.finished = threading.Event()

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        with self._lock:
            self.threads.append(threading.current_thread().name)
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1

    def add_cb(self) -> Callable[[int, int], int]:
        def add_cb(a: int, b: int) -> int:
            with self._call():
                return a + b

        return add_cb

    def nap_cb(self) -> Callable[[float], str]:
        def nap_cb(seconds: float) -> str:
            with self._call():
                self.started.set()
                time.sleep(seconds)
            self.finished.set()
            return threading.current_thread().name

        return nap_cb

    def explode_cb(self) -> Callable[[], None]:
        def explode_cb() -> None:
            with self._call():
                raise ValueError("boom")

        return explode_cb

    def echo_cb(self) -> Callable[[bytes], bytes]:
        def echo_cb(data: bytes) -> bytes:
            with self._call():
                return data

        return echo_cb

    def who_cb(self, name: str, seconds: float = 0.0) -> Callable[[], str]:
        def who_cb() -> str:
            with self._call():
                time.sleep(seconds)
                return name

        return who_cb


def add_cb(a: int, b: int) -> int:
    return a + b


async def add_async_cb(a: int, b: int) -> int:
    await anyio.lowlevel.checkpoint()
    return a + b


async def ping_cb() -> str:
    await anyio.lowlevel.checkpoint()
    return "pong"


def echo_cb(data: bytes) -> bytes:
    return data


async def echo_async_cb(data: bytes) -> bytes:
    await anyio.lowlevel.checkpoint()
    return data


def count_cb(n: int) -> Iterator[int]:
    yield from range(n)


# ---------------------------------------------------------------- helpers


def start_controller(
    net: Net,
    callbacks: dict[str, Callable[..., Any]],
    *,
    backend: str,
    transport: str = "unix",
    **options: Any,
) -> Global:
    return net.start_controller(callbacks, backend=backend, transport=transport, **options)


def ctrl_and_client(
    net: Net,
    backend: str,
    callbacks: dict[str, Callable[..., Any]],
    *,
    transport: str = "unix",
    **options: Any,
) -> tuple[Global, Global]:
    """A controller whose own node offers ``callbacks``, and a "client" node that sees them."""
    ctrl = start_controller(net, callbacks, backend=backend, transport=transport, **options)
    client = net.node("client", backend=backend)
    for name in callbacks:
        client.wait_function(name, timeout=5)
    # the client may see the directory before the controller has recorded it
    assert wait_until(lambda: "client" in controller_of(ctrl).peers)
    return ctrl, client


def wait_offered(g: Global, name: str, by: set[str]) -> None:
    assert wait_until(lambda: set(node_of(g).directory._offers.get(name, {})) == by), name


def run(g: Global, fn: Any, *args: Any, modifier: Any = None) -> Any:
    """Call fetcher ``fn`` from this thread as node ``g``."""
    with g.as_current():
        if modifier is None:
            return fn(*args)
        return fn.call(*args, exec_modifier=modifier)


def served_count(ctrl: Global) -> int:
    return controller_of(ctrl).channels.served_threads


def served_links(ctrl: Global, name: str = "client") -> list[ServedChannel]:
    peer = controller_of(ctrl).peers.get(name)
    channels = [] if peer is None else list(peer.channels)
    return [channel for channel in channels if isinstance(channel, ServedChannel)]


def served_link(ctrl: Global) -> ServedChannel:
    """The client's one served channel. The controller's loop adds it to the peer's channels
    right after starting its thread, which may answer a first call before that."""
    assert wait_until(lambda: len(served_links(ctrl)) == 1), served_links(ctrl)
    (link,) = served_links(ctrl)
    return link


def channel_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == SERVED_THREAD}


class Sampler:
    """Polls ``probe`` in a thread until :meth:`stop`; keeps the largest value seen."""

    def __init__(self, probe: Callable[[], int]) -> None:
        self._probe = probe
        self.peak = probe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._probe())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(2)
        return max(self.peak, self._probe())


def open_channels(client: Global, n: int) -> None:
    """Open ``n`` call channels of ``client`` and leave them idle."""
    pool = pool_of(client)
    opened = [pool.acquire() for _ in range(n)]
    for channel in opened:
        assert channel is not None
        pool.release(channel)


def at_once(n: int, call: Callable[[], Any]) -> list[Outcome]:
    """Run ``call`` in ``n`` threads starting together; wait for all of them."""
    barrier = threading.Barrier(n)

    def one() -> Any:
        barrier.wait(timeout=5)
        return call()

    outcomes = [Outcome(one) for _ in range(n)]
    for outcome in outcomes:
        assert outcome.done.wait(10)
    return outcomes


@contextlib.contextmanager
def attached(ctrl: Global, client: Global) -> Iterator[socket.socket]:
    """A raw call channel of ``client`` (with the token of its channel pool), served by a
    thread of the controller."""
    token = pool_of(client)._token
    assert token == controller_of(ctrl).peers[client.process_name].channel_token
    before = served_count(ctrl)
    with raw_connect(ctrl) as sock:
        sock.sendall(encode_frame(Attach(PROTOCOL_VERSION, client.process_name, token)))
        assert isinstance(read_frame(sock), Welcome)
        assert wait_until(lambda: served_count(ctrl) == before + 1)
        yield sock


def read_reply(sock: socket.socket, timeout: float = 2.0) -> Result | Error:
    reply = read_frame(sock, timeout)
    assert isinstance(reply, Result | Error), repr(reply)
    return reply


def decoded(reply: Any) -> Any:
    assert isinstance(reply, Result), repr(reply)
    return default_codec.decode_value(reply.payload)


# ---------------------------------------------------------------- calls in the channel's thread


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sequential_calls_run_in_the_channel_thread(net: Net, backend: str, transport: str) -> None:
    before = channel_threads()
    rec = Recorder()
    ctrl, client = ctrl_and_client(net, backend, {"add": rec.add_cb()}, transport=transport)
    assert served_count(ctrl) == 0  # no channel before the first sync call
    for i in range(30):
        assert run(client, add, i, 5) == i + 5
    assert run(client, add, 40, 2, modifier=FG(receiver="ctrl")) == 42  # pinned: the same
    assert rec.threads == [SERVED_THREAD] * 31
    assert served_count(ctrl) == 1
    link = served_link(ctrl)
    assert controller_of(ctrl).peers["client"].channels == {link}
    assert len(channel_threads() - before) == 1
    pool = pool_of(client)
    assert len(pool._all) == 1
    assert pool._idle == list(pool._all)


@pytest.mark.parametrize("callers", [4, 6])
@pytest.mark.parametrize("backend", BACKENDS)
def test_workers_bound_served_channels_and_calls_at_once(
    net: Net, backend: str, callers: int
) -> None:
    """With ``workers=2``: two channels get a thread (the others are served by the loop), and
    at most two calls of the local node's def callbacks run at once, wherever they came in."""
    rec = Recorder()
    ctrl, client = ctrl_and_client(net, backend, {"nap": rec.nap_cb()}, workers=2)
    peer = controller_of(ctrl).peers["client"]
    sampler = Sampler(lambda: served_count(ctrl))
    open_channels(client, callers)
    assert wait_until(lambda: len(peer.channels) == callers)
    assert len(served_links(ctrl)) == 2
    assert sum(isinstance(channel, Connection) for channel in peer.channels) == callers - 2

    t0 = time.monotonic()
    outcomes = at_once(callers, lambda: run(client, nap, 0.3))
    elapsed = time.monotonic() - t0
    assert sampler.stop() == 2
    for outcome in outcomes:
        assert outcome.error is None, repr(outcome.error)
    assert len(rec.threads) == callers
    assert rec.peak == 2, f"{rec.peak} calls ran at once"
    rounds = math.ceil(callers / 2)
    assert elapsed >= rounds * 0.3 - 0.01, f"{callers} calls of 0.3 s took {elapsed:.2f} s"
    names = [outcome.value for outcome in outcomes]
    assert all(name == SERVED_THREAD or POOL_THREAD.match(name) for name in names), names
    assert served_count(ctrl) == 2
    assert len(pool_of(client)._all) == callers


LOOP_CASES: dict[str, tuple[Callable[[Global], Any], Any]] = {
    "async-callback": (lambda g: run(g, ping), "pong"),
    "def-callback-of-another-node": (lambda g: run(g, remote_add, 2, 3), 5),
    "pinned-to-another-node": (lambda g: run(g, who_one, modifier=FG(receiver="other")), "other"),
    # a sync fetcher of a generator callback takes the portal path, not a call channel
    "generator-callback": (lambda g: list(run(g, count, 3)), [0, 1, 2]),
}


@pytest.mark.parametrize("case", list(LOOP_CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_the_thread_leaves_to_the_loop(net: Net, backend: str, case: str) -> None:
    rec, other_rec = Recorder(), Recorder()
    local: dict[str, Callable[..., Any]] = {
        "add": rec.add_cb(),
        "ping": ping_cb,
        "count": count_cb,
        "who": rec.who_cb("ctrl"),
    }
    ctrl = start_controller(net, local, backend=backend)
    net.node(
        "other",
        {"remote_add": other_rec.add_cb(), "who": other_rec.who_cb("other")},
        backend=backend,
    )
    client = net.node("client", backend=backend)
    for name in ("add", "ping", "count", "remote_add"):
        client.wait_function(name, timeout=5)
    wait_offered(client, "who", {"ctrl", "other"})
    assert run(client, add, 1, 1) == 2  # the channel is open, and served by a thread
    link = served_link(ctrl)

    call, expected = LOOP_CASES[case]
    for _ in range(3):
        assert call(client) == expected
    assert rec.threads == [SERVED_THREAD]  # only the add above ran in the channel's thread
    assert all(name.startswith("daffi-other-") for name in other_rec.threads), other_rec.threads
    if case in ("def-callback-of-another-node", "pinned-to-another-node"):
        assert len(other_rec.threads) == 3
    # the same channel goes on running the local node's def callbacks itself
    assert run(client, add, 2, 2) == 4
    assert rec.threads == [SERVED_THREAD] * 2
    assert served_links(ctrl) == [link]
    assert served_count(ctrl) == 1
    assert len(pool_of(client)._all) == 1
    assert wait_until(lambda: not controller_of(ctrl).router)


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_robin_advances_once_per_call(net: Net, backend: str) -> None:
    rec, other_rec = Recorder(), Recorder()
    ctrl = start_controller(net, {"who": rec.who_cb("ctrl")}, backend=backend)
    net.node("other", {"who": other_rec.who_cb("other")}, backend=backend)
    client = net.node("client", backend=backend)
    wait_offered(client, "who", {"ctrl", "other"})
    results = [run(client, who_one) for _ in range(20)]
    assert Counter(results) == {"ctrl": 10, "other": 10}
    assert all(a != b for a, b in itertools.pairwise(results)), results
    assert rec.threads == [SERVED_THREAD] * 10
    assert len(other_rec.threads) == 10
    assert served_count(ctrl) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_remote_error_leaves_the_channel_usable(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, client = ctrl_and_client(net, backend, {"explode": rec.explode_cb(), "add": rec.add_cb()})
    for i in range(3):
        with client.as_current(), pytest.raises(ValueError, match="boom") as info:
            explode()
        assert isinstance(info.value, RemoteCallError)
        assert info.value.remote_type == "ValueError"
        assert info.value.process_name == "ctrl"
        assert run(client, add, i, 1) == i + 1
    assert rec.threads == [SERVED_THREAD] * 6
    pool = pool_of(client)
    assert len(pool._all) == 1
    assert pool._idle == list(pool._all)  # an error reply leaves the channel in the pool
    served_link(ctrl)
    assert served_count(ctrl) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_abandons_the_channel_whose_thread_ends_after_the_callback(
    net: Net, backend: str
) -> None:
    before = channel_threads()
    rec = Recorder()
    ctrl, client = ctrl_and_client(net, backend, {"nap": rec.nap_cb(), "add": rec.add_cb()})
    assert run(client, add, 1, 1) == 2
    pool = pool_of(client)
    (channel,) = pool._all
    old = served_link(ctrl)

    t0 = time.monotonic()
    with client.as_current(), pytest.raises(DaffiTimeoutError, match=r"timed out after 0\.3 s"):
        nap.call(1.0, exec_modifier=FG(timeout=0.3))
    assert time.monotonic() - t0 < 0.8
    assert rec.started.is_set()
    assert channel not in pool._all  # closed by the caller, in an unknown state
    assert channel._closed

    # the callback cannot be interrupted: its thread is busy; a new channel gets a thread
    assert run(client, add, 2, 3) == 5
    assert not rec.finished.is_set()
    assert rec.threads[-1] == SERVED_THREAD
    assert served_count(ctrl) == 2
    assert old in served_links(ctrl)
    assert len(channel_threads() - before) == 2

    assert rec.finished.wait(3)
    assert wait_until(lambda: served_count(ctrl) == 1)
    assert old not in served_links(ctrl)
    assert wait_until(lambda: len(channel_threads() - before) == 1)
    assert run(client, add, 3, 4) == 7
    assert rec.threads == [SERVED_THREAD] * 4


# ---------------------------------------------------------------- ends of either side


def nap_in_background(client: Global, rec: Recorder) -> Outcome:
    """A 1 s call of the recorder's nap callback, running once this returns."""
    busy = Outcome(lambda: run(client, nap, 1.0))
    assert rec.started.wait(3)
    return busy


def assert_failed_at_once(busy: Outcome, since: float) -> None:
    """The call in ``busy`` failed as its link went away, without waiting for the callback."""
    assert busy.done.wait(3)
    assert busy.ended_at is not None
    assert busy.ended_at - since < 0.8, "the caller waited for the callback"
    assert isinstance(busy.error, RemoteStoppedUnexpectedly), repr(busy.error)


@pytest.mark.parametrize("state", ["idle", "busy"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_client_stopping_ends_its_served_channel(net: Net, backend: str, state: str) -> None:
    before = channel_threads()
    rec = Recorder()
    ctrl, client = ctrl_and_client(net, backend, {"nap": rec.nap_cb(), "add": rec.add_cb()})
    controller = controller_of(ctrl)
    assert run(client, add, 1, 2) == 3
    assert served_count(ctrl) == 1
    assert len(channel_threads() - before) == 1
    busy = nap_in_background(client, rec) if state == "busy" else None

    t0 = time.monotonic()
    client.stop()
    assert wait_until(lambda: "client" not in controller.peers)
    if busy is not None:
        assert_failed_at_once(busy, t0)
        # the callback cannot be interrupted: the channel's thread ends once it returns
        assert not rec.finished.is_set()
        assert served_count(ctrl) == 1
        assert rec.finished.wait(3)
    assert wait_until(lambda: served_count(ctrl) == 0)
    assert wait_until(lambda: not (channel_threads() - before)), "a daffi-channel thread is left"

    newcomer = net.node("newcomer", backend=backend)
    newcomer.wait_function("add", timeout=5)
    assert run(newcomer, add, 2, 2) == 4
    assert rec.threads[-1] == SERVED_THREAD
    assert served_count(ctrl) == 1


@pytest.mark.parametrize("state", ["idle", "busy"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_controller_stopping_fails_the_next_call_and_ends_the_thread(
    net: Net, backend: str, state: str
) -> None:
    before = channel_threads()
    rec = Recorder()
    ctrl, client = ctrl_and_client(net, backend, {"nap": rec.nap_cb(), "add": rec.add_cb()})
    assert run(client, add, 1, 2) == 3
    assert served_count(ctrl) == 1
    busy = nap_in_background(client, rec) if state == "busy" else None

    t0 = time.monotonic()
    ctrl.stop()
    if busy is not None:
        assert_failed_at_once(busy, t0)
    following = Outcome(lambda: run(client, add, 3, 4))
    assert following.done.wait(5), "the next call hangs after the controller stopped"
    assert isinstance(following.error, RemoteStoppedUnexpectedly | UnableToFindCandidate), repr(
        following.error
    )
    assert "'add'" in str(following.error)
    if busy is not None:
        assert rec.finished.wait(3)
    assert wait_until(lambda: not (channel_threads() - before)), "a daffi-channel thread is left"
    assert served_count(ctrl) == 0
    assert len(rec.threads) == 1 + (busy is not None)


# ---------------------------------------------------------------- payloads, limits, broadcast


@pytest.mark.parametrize("callback", ["def", "async"])
@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_large_payload_comes_back_identical(
    net: Net, backend: str, transport: str, callback: str
) -> None:
    """1 MiB both ways: run in the channel's thread (def), or routed by the loop (async)."""
    rec = Recorder()
    echo_fn = rec.echo_cb() if callback == "def" else echo_async_cb
    ctrl, client = ctrl_and_client(
        net, backend, {"echo": echo_fn, "add": rec.add_cb()}, transport=transport
    )
    data = os.urandom(MIB)
    for _ in range(3):
        assert run(client, echo, data) == data
    assert rec.threads == ([SERVED_THREAD] * 3 if callback == "def" else [])
    served_link(ctrl)
    assert run(client, add, 1, 1) == 2
    assert len(pool_of(client)._all) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_concurrent_calls_refuses_a_call_in_the_channel_thread(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, client = ctrl_and_client(
        net, backend, {"nap": rec.nap_cb(), "add": rec.add_cb()}, max_concurrent_calls=1
    )
    slow = Outcome(lambda: run(client, nap, 0.6))
    assert rec.started.wait(3)
    with client.as_current(), pytest.raises(GlobalContextError, match="overloaded") as info:
        add(1, 2)
    assert "max_concurrent_calls" in str(info.value)
    assert served_count(ctrl) == 2  # the refused call came on a second channel, served too
    assert rec.threads == [SERVED_THREAD]  # and did not run
    assert not rec.finished.is_set()
    assert slow.done.wait(3)
    assert slow.error is None, repr(slow.error)
    assert slow.value == SERVED_THREAD
    assert run(client, add, 1, 2) == 3  # accepted again once the first is done
    assert rec.threads[-1] == SERVED_THREAD


@pytest.mark.parametrize("backend", BACKENDS)
def test_broadcast_runs_its_calls_at_once(net: Net, backend: str) -> None:
    rec, other_rec = Recorder(), Recorder()
    ctrl = start_controller(net, {"who": rec.who_cb("ctrl", 0.3)}, backend=backend)
    net.node("other", {"who": other_rec.who_cb("other", 0.3)}, backend=backend)
    client = net.node("client", backend=backend)
    wait_offered(client, "who", {"ctrl", "other"})
    for _ in range(3):
        t0 = time.monotonic()
        assert run(client, who) == {"ctrl": "ctrl", "other": "other"}
        elapsed = time.monotonic() - t0
        assert elapsed < 0.5, f"two calls of 0.3 s took {elapsed:.2f} s: not at once"
    assert len(rec.threads) == 3
    assert len(other_rec.threads) == 3
    assert served_count(ctrl) == 1
    served_link(ctrl)
    assert len(pool_of(client)._all) == 1


# ---------------------------------------------------------------- raw channels


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_served_channel_answers_inline_and_loop_routed_calls(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, client = ctrl_and_client(net, backend, {"add": rec.add_cb(), "ping": ping_cb})
    with attached(ctrl, client) as sock:
        # three calls in one write: the thread leaves the buffered ones to the loop
        calls = [
            Call(1, "add", encoded_args(20, 22), "client"),
            Call(2, "ping", encoded_args(), "client"),
            Call(3, "nothing_here", encoded_args(), "client"),
        ]
        sock.sendall(b"".join(encode_frame(call) for call in calls))
        replies = {reply.id: reply for reply in (read_reply(sock) for _ in calls)}
        assert decoded(replies[1]) == 42
        assert decoded(replies[2]) == "pong"
        assert isinstance(replies[3], Error), repr(replies[3])
        assert replies[3].error.kind == "UnableToFindCandidate"
        # a cancel of no call is harmless; a lone call then runs in the thread
        sock.sendall(encode_frame(Cancel(99, "client")))
        sock.sendall(encode_frame(Call(4, "add", encoded_args(1, 1), "client")))
        reply = read_reply(sock)
        assert reply.id == 4
        assert decoded(reply) == 2
        assert rec.threads[-1] == SERVED_THREAD
        assert len(rec.threads) == 2
    assert wait_until(lambda: served_count(ctrl) == 0)
    assert run(client, add, 2, 2) == 4


BAD_FRAMES: dict[str, tuple[bytes | bytearray, str]] = {
    "ping": (encode_frame(Ping()), "unexpected Ping on a call channel"),
    "register": (encode_frame(Register()), "unexpected Register on a call channel"),
    "forged-source": (
        encode_frame(Call(8, "add", encoded_args(1, 1), "someone-else")),
        "claiming to be from 'someone-else'",
    ),
    "undecodable": (b"\x00\x00\x00\x03\xc1\xc1\xc1", "undecodable frame"),
    "oversized": ((1 << 31).to_bytes(4, "big"), "over the limit"),
}


@pytest.mark.parametrize("frame", list(BAD_FRAMES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_frame_closes_only_that_served_channel(
    net: Net, backend: str, frame: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="daffi.controller")
    rec = Recorder()
    ctrl, client = ctrl_and_client(net, backend, {"add": rec.add_cb()})
    assert run(client, add, 1, 2) == 3
    own = served_link(ctrl)
    peer = controller_of(ctrl).peers["client"]
    data, reason = BAD_FRAMES[frame]
    with attached(ctrl, client) as sock:
        assert served_count(ctrl) == 2
        sock.sendall(data)
        assert closed_by_peer(sock)
    assert wait_until(lambda: served_count(ctrl) == 1)
    assert served_links(ctrl) == [own]

    def logged() -> bool:
        return any(
            record.name == "daffi.controller" and reason in record.getMessage()
            for record in caplog.records
            if record.levelno >= logging.ERROR
        )

    assert wait_until(logged), caplog.text
    assert controller_of(ctrl).peers["client"] is peer  # the node's session is unharmed
    assert run(client, add, 2, 3) == 5
    bystander = net.node("bystander", backend=backend)
    bystander.wait_function("add", timeout=5)
    assert run(bystander, add, 3, 4) == 7
    assert rec.threads == [SERVED_THREAD] * 3
    assert served_count(ctrl) == 2


# ---------------------------------------------------------------- ordering and flow


@pytest.mark.parametrize("served", [True, False], ids=["served", "loop-served"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_call_sent_with_the_attach_is_answered_after_the_welcome(
    net: Net, backend: str, served: bool
) -> None:
    """A call channel's first frame back is its Welcome, even for a caller that sends its
    first Call right behind the Attach (one write)."""
    ctrl, client = ctrl_and_client(net, backend, {"add": add_cb if served else add_async_cb})
    token = pool_of(client)._token
    with raw_connect(ctrl) as sock:
        sock.sendall(
            encode_frame(Attach(PROTOCOL_VERSION, "client", token))
            + encode_frame(Call(7, "add", encoded_args(20, 22), "client"))
        )
        first, second = read_frame(sock), read_frame(sock)
        assert served_count(ctrl) == (1 if served else 0)
    assert isinstance(first, Welcome), f"first frame: {first!r}, then {second!r}"
    assert isinstance(second, Result), repr(second)
    assert second.id == 7
    assert decoded(second) == 42


#: the local node's echo callback: run by a served channel's thread, left by it to the loop
#: (the channel is served: the node has a def callback), or a loop-served channel
ECHO_SETUPS: dict[str, dict[str, Callable[..., Any]]] = {
    "served-def": {"echo": echo_cb},
    "served-async": {"echo": echo_async_cb, "add": add_cb},
    "loop-served": {"echo": echo_async_cb},
}


@pytest.mark.parametrize("setup", ["served-def", "loop-served"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sync_broadcast_of_a_large_payload_does_not_hang(
    net: Net, backend: str, setup: str
) -> None:
    """A sync broadcast writes its calls (2 MiB each, one for "ctrl" then one per other node:
    the targets are sorted) before it reads a reply. The served thread runs the first one,
    or leaves it to the loop; either way a 2 MiB reply is ready to write while calls remain
    to be read (with three other nodes, always)."""
    ctrl = start_controller(net, ECHO_SETUPS[setup], backend=backend)
    others = {f"other{k}" for k in range(3)}
    for name in others:
        net.node(name, {"echo": echo_cb}, backend=backend)
    client = net.node("client", backend=backend)
    wait_offered(client, "echo", {"ctrl", *others})
    assert run(client, echo_everywhere, b"small") == dict.fromkeys({"ctrl", *others}, b"small")
    assert served_count(ctrl) == (0 if setup == "loop-served" else 1)
    data = os.urandom(2 * MIB)
    outcome = Outcome(lambda: run(client, echo_everywhere, data))
    assert outcome.done.wait(1.5), "a broadcast with a 0.5 s timeout still hangs after 1.5 s"
    assert outcome.error is None, repr(outcome.error)
    assert outcome.value == dict.fromkeys({"ctrl", *others}, data)


@pytest.mark.parametrize(
    "setup",
    ["served-def", "served-async", "loop-served"],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_channel_reads_calls_while_a_large_reply_waits_to_be_written(
    net: Net, backend: str, setup: str
) -> None:
    """A raw caller writes a second large call before it reads the first one's reply, as a
    sync broadcast does: deterministic, unlike the broadcast above."""
    ctrl, client = ctrl_and_client(net, backend, ECHO_SETUPS[setup])
    token = pool_of(client)._token
    data = os.urandom(2 * MIB)
    with raw_connect(ctrl) as sock:
        sock.sendall(encode_frame(Attach(PROTOCOL_VERSION, "client", token)))
        assert isinstance(read_frame(sock), Welcome)
        assert served_count(ctrl) == (0 if setup == "loop-served" else 1)
        sock.sendall(encode_frame(Call(1, "echo", encoded_args(data), "client")))
        # the first reply is on its way (and, unread, fills the socket buffers)
        assert select.select([sock], [], [], 3)[0]
        time.sleep(0.1)
        sock.settimeout(1)
        try:
            sock.sendall(encode_frame(Call(2, "echo", encoded_args(data), "client")))
        except TimeoutError:
            blocked = True
        else:
            blocked = False
        assert not blocked, "the controller stopped reading the channel while writing a reply"
        replies = [read_reply(sock, timeout=5) for _ in range(2)]
    assert sorted(reply.id for reply in replies) == [1, 2]
    assert all(decoded(reply) == data for reply in replies)


# ---------------------------------------------------------------- no thread to spare


class _NoChannelThreads(threading.Thread):
    """Channel threads cannot start, as when the process has reached its thread limit
    (the others still can: the patch replaces ``threading.Thread`` for everyone)."""

    def start(self) -> None:
        if self.name == SERVED_THREAD:
            raise RuntimeError("can't start new thread")
        super().start()


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_thread_for_the_channel_closes_it_and_calls_go_through_the_loop(
    net: Net, backend: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """If the channel's thread cannot start, the channel ends before its Welcome: the client
    gives up channels for the session and its calls take the loop path, still answered."""
    rec = Recorder()
    ctrl, client = ctrl_and_client(net, backend, {"add": rec.add_cb()})
    monkeypatch.setattr("daffi._served.threading.Thread", _NoChannelThreads)
    with caplog.at_level(logging.WARNING, logger="daffi.controller"):
        assert [run(client, add, i, 1) for i in range(3)] == [1, 2, 3]
    assert "can't start new thread" in caplog.text
    assert SERVED_THREAD not in rec.threads
    assert all(POOL_THREAD.match(name) for name in rec.threads), rec.threads
    assert wait_until(lambda: served_count(ctrl) == 0)
    assert pool_of(client).disabled


# ---------------------------------------------------------------- nested calls


@fetcher
def relay(x):
    pass


@pytest.mark.parametrize("backend", BACKENDS)
def test_callback_run_by_the_channel_thread_can_call_another_node(net: Net, backend: str) -> None:
    """A ``def`` callback the channel's thread runs makes a sync call of its own (to another
    node, through the controller's loop): no deadlock, both answers right."""
    threads: list[str] = []
    other_rec = Recorder()
    ctrl: Global | None = None

    def relay_cb(x: int) -> int:
        threads.append(threading.current_thread().name)
        assert ctrl is not None
        return run(ctrl, remote_add, x, 1) * 10

    ctrl, client = ctrl_and_client(net, backend, {"relay": relay_cb})
    net.node("other", {"remote_add": other_rec.add_cb()}, backend=backend)
    client.wait_function("relay", timeout=5)
    ctrl.wait_function("remote_add", timeout=5)
    assert [run(client, relay, x) for x in range(5)] == [10, 20, 30, 40, 50]
    assert threads == [SERVED_THREAD] * 5
    assert len(other_rec.threads) == 5
