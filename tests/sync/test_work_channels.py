"""Work channels: a node's ``def`` callbacks run in a thread that reads calls off a socket.

A node with a remote controller that offers a plain ``def`` callback opens one *work
channel* (an ``Attach(..., work=True)`` connection) served by a thread named
``daffi-<name>-work``. The controller sends a call of such a callback there while the
channel is idle, and through the node's connection (and its worker pool) otherwise. These
tests run Globals in background threads over a Unix socket (and TCP), like
``test_call_channels.py``, and look at both ends of the channel.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest

from daffi import BG, BROADCAST, FG, Global
from daffi._admission import Peer
from daffi._channel import SyncChannel
from daffi._codec import default_codec
from daffi._frames import encode_frame
from daffi._protocol import (
    PROTOCOL_VERSION,
    Attach,
    Call,
    Cancel,
    Error,
    Message,
    Ping,
    Register,
    Reject,
    Result,
    Welcome,
)
from daffi.decorators import alias, fetcher
from daffi.exceptions import (
    ArgumentsError,
    RemoteCallError,
    RemoteStoppedUnexpectedly,
    daffi_error_info,
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

#: the threads of a node's worker pool are named daffi-<node>-<n> (see daffi/_dispatch.py)
POOL_THREAD = re.compile(r"^daffi-worker-\d+$")
WORK_THREAD = "daffi-worker-work"


# ---------------------------------------------------------------- fetchers and callbacks


@fetcher
def add(a, b):
    pass


@alias("add")
@fetcher
async def add_async(a, b):
    pass


@fetcher
def nap(seconds):
    pass


@fetcher
def echo(data):
    pass


@fetcher
def fatal():
    pass


@fetcher
def explode():
    pass


@fetcher
def ping():
    pass


@fetcher(BROADCAST)
def who():
    pass


class Recorder:
    """``def`` callbacks that record the name of the thread each call ran in."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.started = threading.Event()
        self.finished = threading.Event()

    def _enter(self) -> None:
        with self._lock:
            self.threads.append(threading.current_thread().name)
            self.running += 1
            self.peak = max(self.peak, self.running)

    def _leave(self) -> None:
        with self._lock:
            self.running -= 1

    def add_cb(self) -> Callable[[int, int], int]:
        def add_cb(a: int, b: int) -> int:
            self._enter()
            self._leave()
            return a + b

        return add_cb

    def nap_cb(self) -> Callable[[float], str]:
        def nap_cb(seconds: float) -> str:
            self._enter()
            self.started.set()
            try:
                time.sleep(seconds)
            finally:
                self._leave()
            self.finished.set()
            return threading.current_thread().name

        return nap_cb

    def explode_cb(self) -> Callable[[], None]:
        def explode_cb() -> None:
            self._enter()
            self._leave()
            raise ValueError("boom")

        return explode_cb

    def echo_cb(self) -> Callable[[bytes], bytes]:
        def echo_cb(data: bytes) -> bytes:
            self._enter()
            self._leave()
            return data[::-1]

        return echo_cb

    def fatal_cb(self) -> Callable[[], None]:
        def fatal_cb() -> None:
            self._enter()
            self._leave()
            raise Fatal("not an Exception")

        return fatal_cb

    def who_cb(self, name: str) -> Callable[[], str]:
        def who_cb() -> str:
            self._enter()
            self._leave()
            return name

        return who_cb


class Fatal(BaseException):
    """Raised by a callback: a BaseException that is not an Exception."""


async def ping_cb() -> str:
    await anyio.lowlevel.checkpoint()
    return "pong"


def count_cb(n: int) -> Iterator[int]:
    yield from range(n)


# ---------------------------------------------------------------- fixtures and helpers


def work_ready(ctrl: Global, node: Global, timeout: float = 3.0) -> tuple[Peer, SyncChannel]:
    """Wait until ``node`` has its work channel, idle on the controller's side."""
    name = node.process_name

    def opened() -> bool:
        pool = node_of(node).channels  # None while the node reconnects
        return pool is not None and len(pool._work) == 1

    assert wait_until(opened, timeout), "no work channel"

    def idle() -> bool:
        peer = controller_of(ctrl).peers.get(name)
        return peer is not None and len(peer.work) == 1 and len(peer.work_idle) == 1

    assert wait_until(idle, timeout), "the controller has no idle work channel"
    (channel,) = pool_of(node)._work
    return controller_of(ctrl).peers[name], channel


def worker_and_client(
    net: Net, backend: str, callbacks: dict[str, Callable[..., Any]], name: str
) -> tuple[Global, Global, Global, Peer, SyncChannel]:
    """A controller, a "worker" offering ``callbacks`` with its work channel ready, and a
    "client" that sees ``name`` offered."""
    ctrl = net.start_controller({}, backend=backend)
    worker = net.node("worker", callbacks, backend=backend)
    client = net.node("client", backend=backend)
    peer, channel = work_ready(ctrl, worker)
    client.wait_function(name, timeout=5)
    return ctrl, worker, client, peer, channel


def all_idle(ctrl: Global, peer: Peer) -> bool:
    return peer.work_idle == list(peer.work) and not controller_of(ctrl).channels.on_work


def encoded_value(value: Any) -> msgspec.Raw:
    return msgspec.Raw(default_codec.encode_value(value))


def call_add(g: Global, a: int, b: int) -> int:
    with g.as_current():
        return add(a, b)


def call_nap(g: Global, seconds: float) -> str:
    with g.as_current():
        return nap(seconds)


# ---------------------------------------------------------------- who gets a work channel


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_node_offering_a_def_callback_opens_one_work_channel(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl = net.start_controller({"add": rec.add_cb()}, backend=backend)
    worker = net.node("worker", {"add": rec.add_cb(), "ping": ping_cb}, backend=backend)
    async_only = net.node("async_only", {"ping": ping_cb}, backend=backend)
    gen_only = net.node("gen_only", {"count": count_cb}, backend=backend)
    client = net.node("client", backend=backend)
    controller = controller_of(ctrl)

    peer, channel = work_ready(ctrl, worker)
    assert node_of(worker).session._work_started
    assert isinstance(channel, SyncChannel)
    assert not channel._closed
    assert pool_of(worker)._all == set()  # a work channel is not a call channel
    assert len(peer.work) == 1
    assert peer.work_idle == list(peer.work)
    assert not peer.channels
    time.sleep(0.3)  # and it stays one
    assert pool_of(worker)._work == {channel}
    assert len(peer.work) == 1

    for g in (async_only, gen_only, client):
        name = g.process_name
        assert wait_until(lambda name=name: name in controller.peers)
        assert not node_of(g).session._work_started, name
        assert pool_of(g)._work == set(), name
        assert controller.peers[name].work == set(), name
        assert controller.peers[name].work_idle == [], name

    # the controller's own node has no channels at all, work channels included
    assert node_of(ctrl).channels is None
    assert not node_of(ctrl).session._work_started
    assert controller.peers["ctrl"].channel_token is None
    assert controller.peers["ctrl"].work == set()
    assert controller.channels.on_work == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_def_callback_of_the_in_process_node_does_not_run_on_a_work_thread(
    net: Net, backend: str
) -> None:
    rec = Recorder()
    ctrl = net.start_controller({"add": rec.add_cb()}, backend=backend)
    client = net.node("client", backend=backend)
    client.wait_function("add", timeout=5)
    for i in range(5):
        assert call_add(client, i, 1) == i + 1
    assert len(rec.threads) == 5
    assert not any(name.endswith("-work") for name in rec.threads), rec.threads
    assert controller_of(ctrl).peers["ctrl"].work == set()


# ---------------------------------------------------------------- calls on the work channel


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sequential_calls_run_on_the_work_thread(net: Net, backend: str, transport: str) -> None:
    rec = Recorder()
    ctrl = net.start_controller({}, backend=backend, transport=transport)
    worker = net.node("worker", {"add": rec.add_cb()}, backend=backend)
    client = net.node("client", backend=backend)
    peer, channel = work_ready(ctrl, worker)
    client.wait_function("add", timeout=5)

    for i in range(200):
        assert call_add(client, i, 7) == i + 7
    with client.as_current():  # pinned to the node: the same path
        assert add.call(40, 2, exec_modifier=FG(receiver="worker")) == 42
    assert len(rec.threads) == 201
    assert set(rec.threads) == {WORK_THREAD}
    assert all(name.endswith("-work") for name in rec.threads)
    assert wait_until(lambda: all_idle(ctrl, peer))
    assert len(peer.work) == 1
    assert pool_of(worker)._work == {channel}  # the same channel all along
    assert len(pool_of(client)._all) == 1  # and the caller's single call channel


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_calls_still_run_at_once(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, _worker, client, peer, _ = worker_and_client(net, backend, {"nap": rec.nap_cb()}, "nap")
    callers = 6
    # open the caller's call channels beforehand, so that the calls start together
    pool = pool_of(client)
    opened = [pool.acquire() for _ in range(callers)]
    for channel in opened:
        assert channel is not None
        pool.release(channel)
    barrier = threading.Barrier(callers + 1)

    def call() -> tuple[str, float]:
        barrier.wait(timeout=5)
        thread = call_nap(client, 0.5)
        return thread, time.monotonic()

    outcomes = [Outcome(call) for _ in range(callers)]
    barrier.wait(timeout=5)
    t0 = time.monotonic()
    for outcome in outcomes:
        assert outcome.done.wait(10)
    elapsed = max(outcome.value[1] for outcome in outcomes if outcome.error is None) - t0
    for outcome in outcomes:
        assert outcome.error is None, repr(outcome.error)
    threads = [outcome.value[0] for outcome in outcomes]
    assert sorted(threads) == sorted(rec.threads)
    assert elapsed < 1.5, f"6 calls of 0.5 s took {elapsed:.2f} s: they did not run at once"
    assert rec.peak == callers, f"at most {rec.peak} calls ran at once"
    on_work = [name for name in threads if name == WORK_THREAD]
    assert len(on_work) <= 1, threads
    others = [name for name in threads if name != WORK_THREAD]
    assert len(others) >= callers - 1
    assert all(POOL_THREAD.match(name) for name in others), threads
    assert len(set(others)) == len(others)  # one pool thread each
    assert wait_until(lambda: all_idle(ctrl, peer))


@pytest.mark.parametrize("backend", BACKENDS)
def test_busy_work_channel_sends_calls_through_the_pool(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, worker, client, peer, channel = worker_and_client(
        net, backend, {"nap": rec.nap_cb(), "add": rec.add_cb()}, "nap"
    )
    client.wait_function("add", timeout=5)

    slow = Outcome(lambda: call_nap(client, 1.0))
    assert rec.started.wait(3)
    assert rec.threads == [WORK_THREAD]
    assert peer.work_idle == []
    assert list(controller_of(ctrl).channels.on_work.values()) == list(peer.work)
    for i in range(5):
        assert call_add(client, i, i) == 2 * i
    assert len(rec.threads) == 6
    assert all(POOL_THREAD.match(name) for name in rec.threads[1:]), rec.threads
    assert slow.done.wait(5)
    assert slow.error is None, repr(slow.error)
    assert slow.value == WORK_THREAD
    assert wait_until(lambda: all_idle(ctrl, peer))
    assert call_add(client, 1, 2) == 3
    assert rec.threads[-1] == WORK_THREAD
    assert pool_of(worker)._work == {channel}


@pytest.mark.parametrize("backend", BACKENDS)
def test_def_callback_registered_later_opens_the_work_channel(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl = net.start_controller({}, backend=backend)
    worker = net.node("worker", {"ping": ping_cb}, backend=backend)
    client = net.node("client", backend=backend)
    client.wait_function("ping", timeout=5)
    controller = controller_of(ctrl)
    with client.as_current():
        assert ping() == "pong"
    time.sleep(0.2)
    assert not node_of(worker).session._work_started
    assert pool_of(worker)._work == set()
    assert controller.peers["worker"].work == set()

    worker.registry.add(rec.add_cb(), "add")
    peer, _ = work_ready(ctrl, worker)
    assert node_of(worker).session._work_started
    client.wait_function("add", timeout=5)
    for i in range(20):
        assert call_add(client, i, 100) == i + 100
    assert set(rec.threads) == {WORK_THREAD}
    with client.as_current():
        assert ping() == "pong"  # the async callback still goes through the connection
    assert wait_until(lambda: all_idle(ctrl, peer))
    # another def callback does not open a second channel
    worker.registry.add(rec.explode_cb(), "explode")
    client.wait_function("explode", timeout=5)
    time.sleep(0.2)
    assert len(pool_of(worker)._work) == 1
    assert len(peer.work) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_remote_exception_on_the_work_channel(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, worker, client, peer, channel = worker_and_client(
        net, backend, {"explode": rec.explode_cb(), "add": rec.add_cb()}, "explode"
    )
    for _ in range(3):
        with client.as_current(), pytest.raises(ValueError, match="boom") as info:
            explode()
        assert isinstance(info.value, RemoteCallError)
        assert info.value.remote_type == "ValueError"
        assert info.value.process_name == "worker"
        assert wait_until(lambda: all_idle(ctrl, peer))
    assert call_add(client, 2, 3) == 5
    assert rec.threads == [WORK_THREAD] * 4
    assert pool_of(worker)._work == {channel}  # the channel was reused
    assert peer.work == set(peer.work_idle)
    assert len(peer.work) == 1


@pytest.mark.parametrize("path", ["loop", "async", "controller-node"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_not_on_a_call_channel_use_the_work_thread_too(
    net: Net, backend: str, path: str
) -> None:
    """Calls that reach the controller through a node's connection are routed the same way."""
    rec = Recorder()
    ctrl, _worker, client, peer, _ = worker_and_client(net, backend, {"add": rec.add_cb()}, "add")
    ctrl.wait_function("add", timeout=5)
    calls = 20
    if path == "loop":
        pool_of(client).disabled = True  # sync calls go through the node's connection
        results = [call_add(client, i, 1) for i in range(calls)]
        assert pool_of(client)._all == set()
    elif path == "async":

        async def main() -> list[int]:
            with anyio.fail_after(20), client.as_current():
                return [await add_async(i, 1) for i in range(calls)]

        results = anyio.run(main)
    else:
        results = [call_add(ctrl, i, 1) for i in range(calls)]
    assert results == [i + 1 for i in range(calls)]
    assert rec.threads == [WORK_THREAD] * calls
    assert wait_until(lambda: all_idle(ctrl, peer))
    assert not controller_of(ctrl).router


@pytest.mark.parametrize("backend", BACKENDS)
def test_fire_and_forget_calls_do_not_take_the_work_channel(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, _worker, client, peer, _ = worker_and_client(net, backend, {"add": rec.add_cb()}, "add")
    with client.as_current():
        for i in range(3):
            assert add.call(i, i, exec_modifier=BG(return_result=False)) is None
    assert wait_until(lambda: len(rec.threads) == 3)
    assert all(POOL_THREAD.match(name) for name in rec.threads), rec.threads
    assert all_idle(ctrl, peer)
    assert call_add(client, 1, 1) == 2
    assert rec.threads[-1] == WORK_THREAD


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_threads_many_calls_no_lost_or_duplicated_replies(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, worker, client, peer, channel = worker_and_client(
        net, backend, {"add": rec.add_cb()}, "add"
    )
    threads, calls = 8, 40
    barrier = threading.Barrier(threads)

    def hammer(k: int) -> list[tuple[int, int]]:
        barrier.wait(timeout=5)
        with client.as_current():
            return [(add(k * 1000, i), k * 1000 + i) for i in range(calls)]

    outcomes = [Outcome(lambda k=k: hammer(k)) for k in range(threads)]
    for outcome in outcomes:
        assert outcome.done.wait(30)
        assert outcome.error is None, repr(outcome.error)
        assert len(outcome.value) == calls
        for got, expected in outcome.value:
            assert got == expected
    assert len(rec.threads) == threads * calls  # every call ran exactly once
    assert WORK_THREAD in rec.threads
    assert all(name == WORK_THREAD or POOL_THREAD.match(name) for name in rec.threads)
    assert wait_until(lambda: all_idle(ctrl, peer)), (
        peer.work_idle,
        controller_of(ctrl).channels.on_work,
    )
    assert len(peer.work_idle) == 1  # given back once per call: no duplicate
    assert not controller_of(ctrl).router
    assert pool_of(worker)._work == {channel}


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_large_payloads_on_the_work_channel(net: Net, backend: str, transport: str) -> None:
    rec = Recorder()
    ctrl = net.start_controller({}, backend=backend, transport=transport)
    worker = net.node("worker", {"echo": rec.echo_cb()}, backend=backend)
    client = net.node("client", backend=backend)
    peer, _ = work_ready(ctrl, worker)
    client.wait_function("echo", timeout=5)
    data = bytes(range(256)) * (3 * 1024 * 1024 // 256)
    with client.as_current():
        for _ in range(3):
            assert echo(data) == data[::-1]
    assert rec.threads == [WORK_THREAD] * 3
    assert wait_until(lambda: all_idle(ctrl, peer))


@pytest.mark.parametrize("backend", BACKENDS)
def test_caller_leaving_mid_call_frees_the_work_channel(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl = net.start_controller({}, backend=backend)
    worker = net.node("worker", {"nap": rec.nap_cb(), "add": rec.add_cb()}, backend=backend)
    leaver = net.node("leaver", backend=backend)
    stayer = net.node("stayer", backend=backend)
    peer, channel = work_ready(ctrl, worker)
    leaver.wait_function("nap", timeout=5)
    stayer.wait_function("add", timeout=5)
    controller = controller_of(ctrl)

    outcome = Outcome(lambda: call_nap(leaver, 1.5))
    assert rec.started.wait(3)
    assert rec.threads == [WORK_THREAD]
    t0 = time.monotonic()
    leaver.stop()
    assert time.monotonic() - t0 < 3
    assert outcome.done.wait(3)
    assert isinstance(outcome.error, RemoteStoppedUnexpectedly), repr(outcome.error)
    assert wait_until(lambda: "leaver" not in controller.peers)
    assert wait_until(lambda: not any(key[0] == "leaver" for key in controller.router))
    assert rec.finished.wait(3)
    assert wait_until(lambda: all_idle(ctrl, peer)), (peer.work_idle, controller.channels.on_work)
    assert call_add(stayer, 3, 4) == 7
    assert rec.threads[-1] == WORK_THREAD
    assert pool_of(worker)._work == {channel}


@pytest.mark.parametrize("backend", BACKENDS)
def test_base_exception_in_a_callback_on_the_work_channel(net: Net, backend: str) -> None:
    """A BaseException that is not an Exception is the call's failure, like any other."""
    rec = Recorder()
    ctrl, worker, client, peer, channel = worker_and_client(
        net, backend, {"fatal": rec.fatal_cb(), "add": rec.add_cb()}, "fatal"
    )
    t0 = time.monotonic()
    with client.as_current(), pytest.raises(RemoteCallError) as caught:
        fatal.call(exec_modifier=FG(timeout=5))
    assert time.monotonic() - t0 < 2
    assert caught.value.remote_type == "Fatal"
    assert rec.threads == [WORK_THREAD]
    # the work channel survives and answers the next call
    assert wait_until(lambda: all_idle(ctrl, peer))
    assert len(peer.work) == 1
    assert call_add(client, 1, 2) == 3
    assert rec.threads[-1] == WORK_THREAD
    assert pool_of(worker)._work == {channel}


@pytest.mark.parametrize("backend", BACKENDS)
def test_base_exception_in_a_callback_on_the_pool_path(net: Net, backend: str) -> None:
    """The same callback as above, while the work channel is busy: it runs in the pool."""
    rec = Recorder()
    _ctrl, _worker, client, _, _ = worker_and_client(
        net, backend, {"fatal": rec.fatal_cb(), "nap": rec.nap_cb()}, "fatal"
    )
    busy = Outcome(lambda: call_nap(client, 3))
    assert rec.started.wait(3)
    t0 = time.monotonic()
    error: Exception | None = None
    try:
        with client.as_current():
            fatal.call(exec_modifier=FG(timeout=2))
    except Exception as exc:  # which error comes back, and when, is the point
        error = exc
    elapsed = time.monotonic() - t0
    assert busy.done.wait(5)
    assert len(rec.threads) == 2
    assert POOL_THREAD.match(rec.threads[1]), rec.threads
    assert isinstance(error, RemoteCallError), f"{error!r} after {elapsed:.2f} s"
    assert error.remote_type == "Fatal"
    assert elapsed < 1.5


# ---------------------------------------------------------------- timeouts and failures


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_frees_the_work_channel_once_the_callback_returns(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, worker, client, peer, channel = worker_and_client(
        net, backend, {"nap": rec.nap_cb(), "add": rec.add_cb()}, "nap"
    )
    controller = controller_of(ctrl)

    t0 = time.monotonic()
    with client.as_current(), pytest.raises(DaffiTimeoutError, match=r"timed out after 0\.3 s"):
        nap.call(1.5, exec_modifier=FG(timeout=0.3))
    assert time.monotonic() - t0 < 1.0
    assert rec.started.is_set()
    assert rec.threads == [WORK_THREAD]
    # the callback cannot be interrupted: its channel stays busy until it returns
    assert not rec.finished.is_set()
    assert peer.work_idle == []
    assert len(controller.channels.on_work) == 1
    assert rec.finished.wait(3)
    assert wait_until(lambda: all_idle(ctrl, peer)), (peer.work_idle, controller.channels.on_work)
    assert controller.channels.on_work == {}
    assert call_add(client, 20, 22) == 42
    assert rec.threads[-1] == WORK_THREAD
    assert pool_of(worker)._work == {channel}


@pytest.mark.parametrize("backend", BACKENDS)
def test_worker_stopped_while_its_work_thread_runs_a_call(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, worker, client, _, _ = worker_and_client(net, backend, {"nap": rec.nap_cb()}, "nap")

    outcome = Outcome(lambda: call_nap(client, 3))
    assert rec.started.wait(3)
    assert rec.threads == [WORK_THREAD]
    t0 = time.monotonic()
    stopper = Outcome(worker.stop)
    assert outcome.done.wait(4), "the caller is still blocked after the callee stopped"
    assert outcome.ended_at is not None
    assert outcome.ended_at - t0 < 4
    assert isinstance(outcome.error, RemoteStoppedUnexpectedly), repr(outcome.error)
    assert "worker" in str(outcome.error)
    assert stopper.done.wait(10), "worker.stop() did not return"
    assert stopper.error is None, repr(stopper.error)
    controller = controller_of(ctrl)
    assert wait_until(lambda: "worker" not in controller.peers)
    assert wait_until(lambda: not controller.channels.on_work)
    assert wait_until(lambda: not any(key[0] == "client" for key in controller.router))


@pytest.mark.parametrize("backend", BACKENDS)
def test_work_socket_dying_mid_call_fails_only_that_call(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, worker, client, peer, channel = worker_and_client(
        net, backend, {"nap": rec.nap_cb(), "add": rec.add_cb()}, "nap"
    )
    controller = controller_of(ctrl)

    outcome = Outcome(lambda: call_nap(client, 2))
    assert rec.started.wait(3)
    assert rec.threads == [WORK_THREAD]
    t0 = time.monotonic()
    channel.sock.shutdown(socket.SHUT_RDWR)
    assert outcome.done.wait(3)
    assert outcome.ended_at is not None
    assert outcome.ended_at - t0 < 1.5, "the caller waited for the callback to end"
    assert isinstance(outcome.error, RemoteStoppedUnexpectedly), repr(outcome.error)
    assert "work connection" in str(outcome.error)
    assert "'nap'" in str(outcome.error)
    assert wait_until(lambda: not peer.work)
    assert peer.work_idle == []
    assert controller.channels.on_work == {}
    # the node's session is unharmed; its work thread ends once the callback returns
    assert controller.peers["worker"] is peer
    assert rec.finished.wait(3)
    assert wait_until(lambda: pool_of(worker)._work == set())
    assert wait_until(lambda: channel._closed)  # its thread closes it on the way out
    for i in range(5):
        assert call_add(client, i, 3) == i + 3
    assert all(POOL_THREAD.match(name) for name in rec.threads[1:]), rec.threads
    assert len(rec.threads) == 6
    assert call_nap(client, 0) != WORK_THREAD


@pytest.mark.parametrize("backend", BACKENDS)
def test_work_channel_comes_back_after_the_controller_restarts(net: Net, backend: str) -> None:
    rec = Recorder()
    ctrl, worker, client, _, old_channel = worker_and_client(
        net, backend, {"add": rec.add_cb()}, "add"
    )
    assert call_add(client, 1, 1) == 2
    old_pool = pool_of(worker)
    ctrl.stop()
    assert wait_until(lambda: node_of(worker).channels is not old_pool)
    assert wait_until(lambda: old_pool._work == set())
    assert wait_until(lambda: old_channel._closed)  # its thread closes it on the way out
    ctrl = net.start_controller({}, backend=backend)
    peer, new_channel = work_ready(ctrl, worker, timeout=10)
    assert new_channel is not old_channel
    client.wait_function("add", timeout=10)
    assert call_add(client, 2, 2) == 4
    assert rec.threads == [WORK_THREAD, WORK_THREAD]
    assert wait_until(lambda: all_idle(ctrl, peer))


# ---------------------------------------------------------------- the controller's side


FORGED = pytest.mark.parametrize(
    ("name", "token", "version"),
    [
        ("worker", b"x" * 16, PROTOCOL_VERSION),
        ("nobody", b"x" * 16, PROTOCOL_VERSION),
        ("ctrl", b"x" * 16, PROTOCOL_VERSION),  # the in-process node has no token at all
        ("worker", None, PROTOCOL_VERSION + 1),  # the right token, another protocol version
    ],
    ids=["wrong-token", "unknown-node", "in-process-node", "wrong-version"],
)


@FORGED
@pytest.mark.parametrize("backend", BACKENDS)
def test_forged_work_attach_is_rejected(
    net: Net, backend: str, name: str, token: bytes | None, version: int
) -> None:
    rec = Recorder()
    ctrl = net.start_controller({"add": rec.add_cb()}, backend=backend)
    worker = net.node("worker", {"add": rec.add_cb()}, backend=backend)
    peer, _ = work_ready(ctrl, worker)
    assert peer.channel_token is not None
    before = set(peer.work)
    with raw_connect(ctrl) as sock:
        sock.sendall(encode_frame(Attach(version, name, token or peer.channel_token, True)))
        answer = read_frame(sock)
        assert isinstance(answer, Reject), repr(answer)
        assert answer.reason == "unknown node or channel token"
        assert closed_by_peer(sock)
    controller = controller_of(ctrl)
    assert peer.work == before
    assert peer.work_idle == list(before)
    assert controller.peers["ctrl"].work == set()
    assert "nobody" not in controller.peers
    assert controller.peers["worker"] is peer


@pytest.mark.parametrize(
    "frame",
    [
        Call(1, "add", encoded_args(1, 2), "worker"),
        Cancel(1, "worker"),
        Register(),
        Ping(),
    ],
    ids=["call", "cancel", "register", "ping"],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_work_channel_sending_other_than_replies_is_closed(
    net: Net, backend: str, frame: Message
) -> None:
    rec = Recorder()
    ctrl = net.start_controller({}, backend=backend)
    worker = net.node("worker", {"add": rec.add_cb()}, backend=backend)
    client = net.node("client", backend=backend)
    peer, channel = work_ready(ctrl, worker)
    assert peer.channel_token is not None
    with raw_connect(ctrl) as sock:
        sock.sendall(encode_frame(Attach(PROTOCOL_VERSION, "worker", peer.channel_token, True)))
        assert isinstance(read_frame(sock), Welcome)
        assert wait_until(lambda: len(peer.work) == 2 and len(peer.work_idle) == 2)
        sock.sendall(encode_frame(frame))
        assert closed_by_peer(sock)
    assert wait_until(lambda: len(peer.work) == 1)
    assert peer.work_idle == list(peer.work)
    assert controller_of(ctrl).peers["worker"] is peer  # the node's session is unharmed
    assert "add" in peer.callbacks
    client.wait_function("add", timeout=5)
    assert call_add(client, 3, 4) == 7
    assert rec.threads == [WORK_THREAD]
    assert pool_of(worker)._work == {channel}


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_work_channel_gets_calls_and_its_replies_reach_the_caller(
    net: Net, backend: str
) -> None:
    """The real work channel is kept busy, so the controller picks the raw one."""
    rec = Recorder()
    ctrl = net.start_controller({}, backend=backend)
    worker = net.node("worker", {"nap": rec.nap_cb(), "add": rec.add_cb()}, backend=backend)
    client = net.node("client", backend=backend)
    peer, _ = work_ready(ctrl, worker)
    assert peer.channel_token is not None
    client.wait_function("add", timeout=5)
    controller = controller_of(ctrl)
    busy = Outcome(lambda: call_nap(client, 3))
    assert rec.started.wait(3)
    assert peer.work_idle == []
    with raw_connect(ctrl) as sock:
        sock.sendall(encode_frame(Attach(PROTOCOL_VERSION, "worker", peer.channel_token, True)))
        assert isinstance(read_frame(sock), Welcome)
        assert wait_until(lambda: len(peer.work_idle) == 1)
        (raw,) = peer.work_idle

        # a Result answers the call
        first = Outcome(lambda: call_add(client, 1, 2))
        call = read_frame(sock)
        assert isinstance(call, Call), repr(call)
        assert call.name == "add"
        assert call.src == "client"
        assert default_codec.decode_args(call.payload) == ([1, 2], {})
        assert peer.work_idle == []
        assert controller.channels.on_work[("client", call.id)] is raw
        sock.sendall(encode_frame(Result(call.id, "client", encoded_value(99))))
        assert first.done.wait(3)
        assert first.error is None, repr(first.error)
        assert first.value == 99
        assert wait_until(lambda: peer.work_idle == [raw])

        # an Error too, and its type comes back
        second = Outcome(lambda: call_add(client, 5, 6))
        call = read_frame(sock)
        assert isinstance(call, Call), repr(call)
        info = daffi_error_info("ArgumentsError", "raw says no", "worker")
        sock.sendall(encode_frame(Error(call.id, "client", info)))
        assert second.done.wait(3)
        assert isinstance(second.error, ArgumentsError), repr(second.error)
        assert "raw says no" in str(second.error)
        assert wait_until(lambda: peer.work_idle == [raw])

        # the channel closing with a call on it fails that call
        third = Outcome(lambda: call_add(client, 7, 8))
        call = read_frame(sock)
        assert isinstance(call, Call), repr(call)
    assert third.done.wait(3)
    assert isinstance(third.error, RemoteStoppedUnexpectedly), repr(third.error)
    assert "lost its work connection while running 'add'" in str(third.error)
    assert wait_until(lambda: raw not in peer.work)
    assert rec.threads == [WORK_THREAD]  # none of those reached the node
    assert busy.done.wait(5)
    assert busy.error is None, repr(busy.error)
    assert wait_until(lambda: all_idle(ctrl, peer))
    assert call_add(client, 2, 2) == 4
    assert rec.threads == [WORK_THREAD, WORK_THREAD]


# ---------------------------------------------------------------- broadcast


@pytest.mark.parametrize("backend", BACKENDS)
def test_broadcast_runs_on_the_work_threads_of_remote_nodes(net: Net, backend: str) -> None:
    recs = {name: Recorder() for name in ("ctrl", "worker1", "worker2")}
    ctrl = net.start_controller({"who": recs["ctrl"].who_cb("ctrl")}, backend=backend)
    workers = [
        net.node(name, {"who": recs[name].who_cb(name)}, backend=backend)
        for name in ("worker1", "worker2")
    ]
    client = net.node("client", backend=backend)
    peers = [work_ready(ctrl, g)[0] for g in workers]
    assert wait_until(lambda: set(node_of(client).directory._offers.get("who", {})) == set(recs))
    for _ in range(10):
        with client.as_current():
            result = who()
        assert result == {"ctrl": "ctrl", "worker1": "worker1", "worker2": "worker2"}
    for name in ("worker1", "worker2"):
        assert recs[name].threads == [f"daffi-{name}-work"] * 10, recs[name].threads
    assert len(recs["ctrl"].threads) == 10
    assert not any(name.endswith("-work") for name in recs["ctrl"].threads)
    for peer in peers:
        assert wait_until(lambda peer=peer: all_idle(ctrl, peer))
