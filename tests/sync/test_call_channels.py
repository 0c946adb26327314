"""Call channels: sync callers of a node with a remote controller use blocking sockets.

A ``def`` fetcher called from a plain thread borrows a call channel from ``node.channels``
(opened with an ``Attach`` frame carrying the session's token) and reads its reply itself,
without a hand-off to daffi's event loop. These tests run Globals in background threads
over a Unix socket (and TCP), like ``test_sync_face.py``, and look at the pool and at the
controller's side of the channels.
"""

from __future__ import annotations

import builtins
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import pytest

from daffi import BROADCAST, FG, Global
from daffi._channel import ChannelPool
from daffi._codec import default_codec
from daffi._frames import encode_frame
from daffi._protocol import (
    PROTOCOL_VERSION,
    Attach,
    Call,
    Error,
    Message,
    Register,
    Reject,
    Result,
    Welcome,
)
from daffi.decorators import alias, fetcher
from daffi.exceptions import (
    RemoteCallError,
    RemoteStoppedUnexpectedly,
    UnableToFindCandidate,
)
from daffi.exceptions import TimeoutError as DaffiTimeoutError
from daffi.registry import CallbackRegistry

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
    registry_with,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)

BACKENDS = ["asyncio", "trio"]


# ---------------------------------------------------------------- fetchers and callbacks


@fetcher
def add(a, b):
    pass


@fetcher
def sleepy():
    pass


@fetcher
def explode():
    pass


@fetcher
def phantom(a, b):
    pass


@fetcher(BROADCAST)
def who():
    pass


@alias("who")
@fetcher(BROADCAST(timeout=0.5))
def who_with_timeout():
    pass


def add_cb(a: int, b: int) -> int:
    return a + b


def explode_cb() -> None:
    raise ValueError("boom")


def returns(name: str) -> Callable[[], str]:
    def who_cb() -> str:
        return name

    return who_cb


class Sleeper:
    """An ``async def`` callback that sleeps and records how its execution ended."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()
        self.finished = threading.Event()
        self.cancelled = threading.Event()

    def callback(self) -> Callable[[], Any]:
        async def sleepy_cb() -> str:
            self.started.set()
            try:
                await anyio.sleep(self.seconds)
            except anyio.get_cancelled_exc_class():
                self.cancelled.set()
                raise
            self.finished.set()
            return "slept"

        return sleepy_cb


# ---------------------------------------------------------------- fixtures and helpers


def wait_busy_channel(pool: ChannelPool, timeout: float = 3.0) -> None:
    """Wait until a caller holds a channel (it is open and not idle)."""
    assert wait_until(lambda: len(pool._all) > len(pool._idle), timeout)


def call_add(g: Global, a: int, b: int) -> int:
    with g.as_current():
        return add(a, b)


# ---------------------------------------------------------------- channels are used and reused


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sync_call_uses_one_channel_and_reuses_it(net: Net, backend: str, transport: str) -> None:
    ctrl = net.start_controller({"add": add_cb}, backend=backend, transport=transport)
    client = net.node("client", backend=backend)
    client.wait_function("add", timeout=5)
    pool = pool_of(client)
    assert pool._all == set()
    assert not pool.disabled

    assert call_add(client, 1, 2) == 3
    assert len(pool._all) == 1
    assert pool._idle == list(pool._all)  # given back after the call
    peer = controller_of(ctrl).peers["client"]
    assert len(peer.channels) == 1
    assert peer.channel_token is not None
    assert len(peer.channel_token) >= 16

    (channel,) = pool._all
    for i in range(50):
        assert call_add(client, i, 1) == i + 1
    assert pool._all == {channel}
    assert pool._idle == [channel]
    assert len(peer.channels) == 1
    assert not pool.disabled


def test_calls_from_many_threads(net: Net) -> None:
    net.start_controller({"add": add_cb})
    client = net.node("client")
    client.wait_function("add", timeout=5)
    threads, calls = 8, 20
    barrier = threading.Barrier(threads)

    def worker(k: int) -> list[tuple[int, int]]:
        barrier.wait(timeout=5)
        out = []
        with client.as_current():
            for i in range(calls):
                out.append((add(k * 1000, i), k * 1000 + i))
        return out

    outcomes = [Outcome(lambda k=k: worker(k)) for k in range(threads)]
    for outcome in outcomes:
        assert outcome.done.wait(10)
        assert outcome.error is None, repr(outcome.error)
        assert len(outcome.value) == calls
        for got, expected in outcome.value:
            assert got == expected
    pool = pool_of(client)
    assert 1 <= len(pool._all) <= threads
    assert sorted(map(id, pool._idle)) == sorted(map(id, pool._all))
    assert not pool.disabled
    assert net.controller is not None
    assert len(controller_of(net.controller).peers["client"].channels) == len(pool._all)


# ---------------------------------------------------------------- timeouts and cancellation


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_cancels_remote_execution(net: Net, backend: str) -> None:
    sleeper = Sleeper(3)
    net.start_controller({"sleepy": sleeper.callback(), "add": add_cb}, backend=backend)
    client = net.node("client", backend=backend)
    client.wait_function("sleepy", timeout=5)
    assert call_add(client, 1, 1) == 2  # the channel is open before the slow call
    pool = pool_of(client)
    (channel,) = pool._all

    t0 = time.monotonic()
    with client.as_current(), pytest.raises(DaffiTimeoutError, match=r"timed out after 0\.5 s"):
        sleepy.call(exec_modifier=FG(timeout=0.5))
    assert time.monotonic() - t0 < 1.5
    assert sleeper.started.is_set()
    assert sleeper.cancelled.wait(2), "the remote execution was not cancelled"
    time.sleep(0.1)
    assert not sleeper.finished.is_set()
    # the channel, in an unknown state after the timeout, was closed and dropped
    assert channel not in pool._all
    assert channel._closed
    assert not pool.disabled

    assert call_add(client, 2, 3) == 5
    assert len(pool._all) == 1


@pytest.mark.parametrize("path", ["channel", "loop"])
def test_timeout_is_daffi_timeout_error(net: Net, path: str) -> None:
    """A sync call's timeout raises daffi's TimeoutError, with or without a channel."""
    sleeper = Sleeper(3)
    net.start_controller({"sleepy": sleeper.callback(), "add": add_cb})
    client = net.node("client")
    client.wait_function("sleepy", timeout=5)
    pool = pool_of(client)
    if path == "loop":
        pool.disabled = True
    t0 = time.monotonic()
    with client.as_current(), pytest.raises(builtins.TimeoutError) as info:
        sleepy.call(exec_modifier=FG(timeout=0.5))
    assert time.monotonic() - t0 < 1.5
    assert sleeper.cancelled.wait(2)
    if path == "loop":
        assert pool._all == set()  # no channel was used
    assert isinstance(info.value, DaffiTimeoutError), repr(info.value)
    assert "timed out after 0.5 s" in str(info.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_closing_a_busy_channel_cancels_the_remote_call(net: Net, backend: str) -> None:
    """No timeout on the call: only the channel's end tells the controller to cancel."""
    sleeper = Sleeper(10)
    ctrl = net.start_controller({"sleepy": sleeper.callback(), "add": add_cb}, backend=backend)
    client = net.node("client", backend=backend)
    client.wait_function("sleepy", timeout=5)
    pool = pool_of(client)

    def call() -> Any:
        with client.as_current():
            return sleepy()

    outcome = Outcome(call)
    assert sleeper.started.wait(3)
    wait_busy_channel(pool)
    (busy,) = pool._all
    busy.shutdown()  # as if the caller had been interrupted
    assert outcome.done.wait(3)
    assert isinstance(outcome.error, RemoteStoppedUnexpectedly), repr(outcome.error)
    assert sleeper.cancelled.wait(2), "the controller did not cancel the channel's call"
    assert not sleeper.finished.is_set()
    assert wait_until(lambda: not controller_of(ctrl).peers["client"].channels)
    assert call_add(client, 4, 4) == 8


# ---------------------------------------------------------------- errors through the channel


def test_remote_error_comes_back_on_the_channel(net: Net) -> None:
    net.start_controller({"explode": explode_cb, "add": add_cb})
    client = net.node("client")
    client.wait_function("explode", timeout=5)
    with client.as_current(), pytest.raises(ValueError, match="boom") as info:
        explode()
    assert isinstance(info.value, RemoteCallError)
    assert info.value.remote_type == "ValueError"
    pool = pool_of(client)
    assert len(pool._all) == 1
    assert len(pool._idle) == 1
    assert call_add(client, 1, 2) == 3
    assert len(pool._all) == 1


@pytest.mark.parametrize("pinned", [True, False])
def test_unable_to_find_candidate_comes_back_on_the_channel(net: Net, pinned: bool) -> None:
    """The node's directory is made stale so that only the controller can tell."""
    ctrl = net.start_controller({"add": add_cb})
    client = net.node("client")
    client.wait_function("add", timeout=5)
    node = node_of(client)
    info = node.peers["ctrl"]["add"]

    def make_stale() -> None:
        if pinned:
            node.peers["ghost"] = {"add": info}
        else:
            node.directory._offers["phantom"] = {"ctrl": info}

    assert client._runtime.portal is not None
    client._runtime.portal.call(make_stale)
    pool = pool_of(client)
    acquired = []
    real_acquire = pool.acquire

    def counting_acquire() -> Any:
        channel = real_acquire()
        acquired.append(channel)
        return channel

    pool.acquire = counting_acquire  # type: ignore[method-assign]
    call: Callable[[], Any] = (
        (lambda: add.call(1, 2, exec_modifier=FG(receiver="ghost")))
        if pinned
        else (lambda: phantom(1, 2))
    )
    with client.as_current(), pytest.raises(UnableToFindCandidate) as exc_info:
        call()
    error = exc_info.value
    assert type(error) is UnableToFindCandidate
    assert len(acquired) == 1
    assert acquired[0] is not None
    if pinned:
        assert "'ghost' is not connected" in str(error)
    else:
        assert "no other process offers callback 'phantom'" in str(error)
    assert pool._idle == [acquired[0]]  # an error reply leaves the channel usable
    assert len(controller_of(ctrl).peers["client"].channels) == 1
    assert call_add(client, 1, 2) == 3


# ---------------------------------------------------------------- forged channels


FORGED = pytest.mark.parametrize(
    ("name", "token", "version"),
    [
        ("client", b"x" * 16, PROTOCOL_VERSION),
        ("nobody", b"x" * 16, PROTOCOL_VERSION),
        ("ctrl", b"x" * 16, PROTOCOL_VERSION),  # the in-process node has no token at all
        ("client", None, PROTOCOL_VERSION + 1),  # the right token, another protocol version
    ],
    ids=["wrong-token", "unknown-node", "in-process-node", "wrong-version"],
)


def attach_forged(
    net: Net, backend: str, name: str, token: bytes | None, version: int
) -> tuple[Message | None, bool]:
    """Attach with a bad name/token/version: (the controller's answer, closed after it)."""
    ctrl = net.start_controller({"add": add_cb}, backend=backend)
    client = net.node("client", backend=backend)
    client.wait_function("add", timeout=5)
    assert call_add(client, 1, 2) == 3
    peer = controller_of(ctrl).peers["client"]
    assert peer.channel_token is not None
    with raw_connect(ctrl) as sock:
        sock.sendall(encode_frame(Attach(version, name, token or peer.channel_token)))
        answer = read_frame(sock)
        closed = answer is None or closed_by_peer(sock)
    assert len(peer.channels) == 1  # only the client's own channel
    assert controller_of(ctrl).peers["client"] is peer
    assert call_add(client, 5, 6) == 11
    return answer, closed


@FORGED
@pytest.mark.parametrize("backend", BACKENDS)
def test_forged_attach_gets_no_channel(
    net: Net, backend: str, name: str, token: bytes | None, version: int
) -> None:
    answer, closed = attach_forged(net, backend, name, token, version)
    assert not isinstance(answer, Welcome)
    assert answer is None or isinstance(answer, Reject), repr(answer)
    assert closed


@FORGED
@pytest.mark.parametrize(
    "backend",
    [
        "asyncio",
        "trio",
    ],
)
def test_forged_attach_is_answered_with_reject(
    net: Net, backend: str, name: str, token: bytes | None, version: int
) -> None:
    answer, closed = attach_forged(net, backend, name, token, version)
    assert isinstance(answer, Reject), repr(answer)
    assert answer.reason == "unknown node or channel token"
    assert answer.kind == "InitializationError"
    assert closed


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_attached_channel_serves_calls_but_not_forged_sources(net: Net, transport: str) -> None:
    ctrl = net.start_controller({"add": add_cb}, transport=transport)
    client = net.node("client")
    client.wait_function("add", timeout=5)
    peer = controller_of(ctrl).peers["client"]
    assert peer.channel_token is not None
    with raw_connect(ctrl) as sock:
        sock.sendall(encode_frame(Attach(PROTOCOL_VERSION, "client", peer.channel_token)))
        assert isinstance(read_frame(sock), Welcome)
        assert wait_until(lambda: len(peer.channels) == 1)
        # a proper call is answered on this connection
        sock.sendall(encode_frame(Call(7, "add", encoded_args(20, 22), "client")))
        reply = read_frame(sock)
        assert isinstance(reply, Result), repr(reply)
        assert reply.id == 7
        assert default_codec.decode_value(reply.payload) == 42
        # a call claiming another source ends the channel
        sock.sendall(encode_frame(Call(8, "add", encoded_args(1, 1), "someone-else")))
        assert closed_by_peer(sock)
    assert wait_until(lambda: not peer.channels)
    assert controller_of(ctrl).peers["client"] is peer  # the node's session is unharmed
    assert call_add(client, 1, 2) == 3


def test_only_calls_and_cancels_are_allowed_on_a_channel(net: Net) -> None:
    ctrl = net.start_controller({"add": add_cb})
    client = net.node("client")
    client.wait_function("add", timeout=5)
    peer = controller_of(ctrl).peers["client"]
    assert peer.channel_token is not None
    with raw_connect(ctrl) as sock:
        sock.sendall(encode_frame(Attach(PROTOCOL_VERSION, "client", peer.channel_token)))
        assert isinstance(read_frame(sock), Welcome)
        sock.sendall(encode_frame(Register()))  # would wipe the node's callbacks
        assert closed_by_peer(sock)
    assert "add" in controller_of(ctrl).peers["ctrl"].callbacks
    assert call_add(client, 2, 2) == 4


def test_unknown_callback_on_a_raw_channel_gets_an_error_reply(net: Net) -> None:
    ctrl = net.start_controller({"add": add_cb})
    client = net.node("client")
    client.wait_function("add", timeout=5)
    peer = controller_of(ctrl).peers["client"]
    assert peer.channel_token is not None
    with raw_connect(ctrl) as sock:
        sock.sendall(encode_frame(Attach(PROTOCOL_VERSION, "client", peer.channel_token)))
        assert isinstance(read_frame(sock), Welcome)
        sock.sendall(encode_frame(Call(3, "nothing_here", encoded_args(), "client")))
        reply = read_frame(sock)
        assert isinstance(reply, Error), repr(reply)
        assert reply.id == 3
        assert reply.error.kind == "UnableToFindCandidate"


def test_node_session_end_closes_its_channels(net: Net) -> None:
    ctrl = net.start_controller({"add": add_cb})
    client = net.node("client")
    client.wait_function("add", timeout=5)
    peer = controller_of(ctrl).peers["client"]
    assert peer.channel_token is not None
    with raw_connect(ctrl) as sock:
        sock.sendall(encode_frame(Attach(PROTOCOL_VERSION, "client", peer.channel_token)))
        assert isinstance(read_frame(sock), Welcome)
        client.stop()
        assert closed_by_peer(sock, timeout=3)
    assert "client" not in controller_of(ctrl).peers


# ---------------------------------------------------------------- peers stopping mid-call


@pytest.mark.parametrize("backend", BACKENDS)
def test_callee_node_stopped_mid_call(net: Net, backend: str) -> None:
    sleeper = Sleeper(10)
    net.start_controller({"add": add_cb}, backend=backend)
    worker = net.node("worker", {"sleepy": sleeper.callback()}, backend=backend)
    client = net.node("client", backend=backend)
    client.wait_function("sleepy", timeout=5)

    def call() -> Any:
        with client.as_current():
            return sleepy()

    outcome = Outcome(call)
    assert sleeper.started.wait(3)
    wait_busy_channel(pool_of(client))
    t0 = time.monotonic()
    worker.stop()
    assert outcome.done.wait(3), "the caller is still blocked after the callee stopped"
    assert outcome.ended_at is not None
    assert outcome.ended_at - t0 < 3
    assert isinstance(outcome.error, RemoteStoppedUnexpectedly), repr(outcome.error)
    assert "worker" in str(outcome.error)
    assert not sleeper.finished.is_set()
    assert call_add(client, 1, 2) == 3
    assert not pool_of(client).disabled


@pytest.mark.parametrize("backend", BACKENDS)
def test_client_stopped_while_a_thread_waits_on_a_channel(net: Net, backend: str) -> None:
    sleeper = Sleeper(10)
    ctrl = net.start_controller({"sleepy": sleeper.callback()}, backend=backend)
    client = net.node("client", backend=backend)
    client.wait_function("sleepy", timeout=5)

    def call() -> Any:
        with client.as_current():
            return sleepy()

    outcome = Outcome(call)
    assert sleeper.started.wait(3)
    wait_busy_channel(pool_of(client))
    t0 = time.monotonic()
    client.stop()
    assert time.monotonic() - t0 < 3, "stop() waited for the blocked caller"
    assert outcome.done.wait(3), "the caller is still blocked after its Global stopped"
    assert outcome.ended_at is not None
    assert outcome.ended_at - t0 < 3
    assert isinstance(outcome.error, RemoteStoppedUnexpectedly), repr(outcome.error)
    assert sleeper.cancelled.wait(2), "the call of a departed node kept running"
    assert not sleeper.finished.is_set()
    assert wait_until(lambda: "client" not in controller_of(ctrl).peers)


@pytest.mark.parametrize("backend", BACKENDS)
def test_controller_stopped_while_a_thread_waits_on_a_channel(net: Net, backend: str) -> None:
    sleeper = Sleeper(10)
    ctrl = net.start_controller({}, backend=backend)
    net.node("worker", {"sleepy": sleeper.callback()}, backend=backend)
    client = net.node("client", backend=backend)
    client.wait_function("sleepy", timeout=5)

    def call() -> Any:
        with client.as_current():
            return sleepy()

    outcome = Outcome(call)
    assert sleeper.started.wait(3)
    wait_busy_channel(pool_of(client))
    t0 = time.monotonic()
    ctrl.stop()
    assert outcome.done.wait(3), "the caller is still blocked after the controller stopped"
    assert outcome.ended_at is not None
    assert outcome.ended_at - t0 < 3
    assert isinstance(outcome.error, RemoteStoppedUnexpectedly), repr(outcome.error)
    assert not sleeper.finished.is_set()


def test_channels_come_back_after_the_controller_restarts(net: Net) -> None:
    ctrl = net.start_controller({"add": add_cb})
    client = net.node("client")
    client.wait_function("add", timeout=5)
    assert call_add(client, 1, 1) == 2
    old_pool = pool_of(client)
    (old_channel,) = old_pool._all
    ctrl.stop()
    assert wait_until(lambda: node_of(client).channels is not old_pool)
    assert old_pool._all == set()
    assert old_channel._closed
    net.start_controller({"add": add_cb})
    client.wait_function("add", timeout=5)
    assert call_add(client, 2, 2) == 4
    new_pool = pool_of(client)
    assert new_pool is not old_pool
    assert len(new_pool._all) == 1
    assert not new_pool.disabled


# ---------------------------------------------------------------- fallback to the loop


@pytest.mark.parametrize("failure", ["refused", "rejected"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fallback_to_the_loop_when_no_channel_opens(net: Net, backend: str, failure: str) -> None:
    ctrl = net.start_controller({"add": add_cb, "explode": explode_cb}, backend=backend)
    client = net.node("client", backend=backend)
    client.wait_function("explode", timeout=5)
    pool = pool_of(client)
    if failure == "refused":

        def refuse(timeout: float) -> socket.socket:
            raise ConnectionRefusedError("no channel for you")

        pool._open_socket = refuse
    else:
        pool._token = b"y" * 16  # the controller answers Reject

    assert call_add(client, 3, 4) == 7
    assert pool.disabled
    assert pool._all == set()
    assert pool.acquire() is None
    assert not controller_of(ctrl).peers["client"].channels
    # the loop path keeps working, errors included
    for i in range(5):
        assert call_add(client, i, i) == 2 * i
    with client.as_current(), pytest.raises(ValueError, match="boom"):
        explode()


# ---------------------------------------------------------------- broadcast


def test_broadcast_from_a_sync_fetcher_uses_a_channel(net: Net) -> None:
    ctrl = net.start_controller({"who": returns("ctrl")})
    net.node("n1", {"who": returns("n1")})
    n2 = net.node("n2", {"who": returns("n2")})
    client = net.node("client", {"who": returns("client")})  # the caller is left out
    for name in ("ctrl", "n1", "n2"):
        client.wait_process(name, timeout=5)
    assert wait_until(
        lambda: set(node_of(client).directory._offers.get("who", {})) >= {"ctrl", "n1", "n2"}
    )
    with client.as_current():
        result = who()
    assert result == {"ctrl": "ctrl", "n1": "n1", "n2": "n2"}
    assert list(result) == ["ctrl", "n1", "n2"]
    pool = pool_of(client)
    assert len(pool._all) == 1
    assert len(pool._idle) == 1
    assert len(controller_of(ctrl).peers["client"].channels) == 1
    n2.stop()  # a node leaving is left out of the next broadcast
    assert wait_until(lambda: "n2" not in node_of(client).directory._offers.get("who", {}))
    with client.as_current():
        assert who() == {"ctrl": "ctrl", "n1": "n1"}
    assert len(pool._all) == 1


def test_broadcast_with_a_failing_node_keeps_the_other_results(net: Net) -> None:
    def broken() -> str:
        raise ValueError("n2 is broken")

    net.start_controller({"who": returns("ctrl")})
    net.node("n1", {"who": returns("n1")})
    net.node("n2", {"who": broken})
    client = net.node("client")
    assert wait_until(
        lambda: set(node_of(client).directory._offers.get("who", {})) == {"ctrl", "n1", "n2"}
    )
    with client.as_current(), pytest.raises(RemoteCallError) as info:
        who()
    error = info.value
    assert isinstance(error, ValueError)  # every failure is a ValueError
    assert error.results == {"ctrl": "ctrl", "n1": "n1"}
    assert list(error.results) == ["ctrl", "n1"]
    assert list(error.errors) == ["n2"]
    node_error = error.errors["n2"]
    assert isinstance(node_error, RemoteCallError)
    assert isinstance(node_error, ValueError)
    assert node_error.remote_type == "ValueError"
    assert node_error.process_name == "n2"
    assert "n2 is broken" in str(node_error)
    pool = pool_of(client)
    assert len(pool._all) == 1
    assert len(pool._idle) == 1


@pytest.mark.parametrize(
    "path",
    [
        "channel",
        "loop",
    ],
)
def test_broadcast_timeout_reports_the_slow_node(net: Net, path: str) -> None:
    """As in tests/integration/test_broadcast.py: the others' results, the slow one's error."""
    sleeper = Sleeper(5)
    net.start_controller({"who": returns("ctrl"), "add": add_cb})
    net.node("n1", {"who": returns("n1")})
    net.node("slow", {"who": sleeper.callback()})
    client = net.node("client")
    assert wait_until(
        lambda: set(node_of(client).directory._offers.get("who", {})) == {"ctrl", "n1", "slow"}
    )
    assert call_add(client, 1, 1) == 2
    pool = pool_of(client)
    assert len(pool._all) == 1  # a channel is open and idle
    if path == "loop":
        pool.disabled = True
    t0 = time.monotonic()
    with client.as_current(), pytest.raises((RemoteCallError, builtins.TimeoutError)) as info:
        who_with_timeout()
    assert time.monotonic() - t0 < 1.5
    assert sleeper.cancelled.wait(2)
    assert not sleeper.finished.is_set()
    assert call_add(client, 2, 2) == 4
    error = info.value
    assert isinstance(error, RemoteCallError), repr(error)
    assert error.results == {"ctrl": "ctrl", "n1": "n1"}
    assert list(error.errors) == ["slow"]
    assert isinstance(error.errors["slow"], DaffiTimeoutError)


# ---------------------------------------------------------------- where there are no channels


def test_in_process_controller_node_has_no_channels(net: Net) -> None:
    ctrl = net.start_controller({"add": add_cb})
    client = net.node("client", {"add": add_cb})
    ctrl.wait_process("client", timeout=5)
    assert node_of(ctrl).channels is None
    assert controller_of(ctrl).peers["ctrl"].channel_token is None
    assert controller_of(ctrl).peers["client"].channel_token is not None
    with ctrl.as_current():
        assert add(1, 2) == 3  # ctrl's only other provider is client: through the loop
    assert node_of(ctrl).channels is None
    assert not controller_of(ctrl).peers["ctrl"].channels
    assert pool_of(client)._all == set()  # serving a call does not open channels


def test_memory_transport_has_no_channels() -> None:
    """The memory transport has no blocking sockets: sync calls go through the loop."""
    address = f"memory://daffi-ch-{uuid.uuid4().hex}"

    async def main() -> None:
        with anyio.fail_after(10):
            async with (
                Global(
                    "ctrl",
                    init_controller=True,
                    address=address,
                    registry=registry_with({"add": add_cb}),
                ) as ctrl,
                Global("client", address=address, registry=CallbackRegistry()) as client,
            ):
                await client.wait_function_async("add", timeout=5)
                assert await anyio.to_thread.run_sync(call_add, client, 1, 2) == 3
                assert await anyio.to_thread.run_sync(call_add, client, 3, 4) == 7
                pool = node_of(client).channels
                assert pool is None or (pool.disabled and not pool._all)
                assert not controller_of(ctrl).peers["client"].channels

    anyio.run(main)
