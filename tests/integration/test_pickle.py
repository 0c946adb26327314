"""The pickle codec: used only when both ends of a call allow it (``allow_pickle=True``).

In-process nodes on the memory transport (and on a Unix socket where a test speaks the wire
protocol by hand, or walks the sync caller's call channel paths), on asyncio and trio. A
value msgspec cannot encode and cattrs cannot unstructure (:class:`Opaque`) travels pickled
only when caller and callee allow pickle; otherwise the call fails, with an error saying so,
at the end that refused. Payloads whose unpickling would leave a file behind
(:class:`Tripwire`) prove that a node that did not opt in never unpickles what it receives.
"""

from __future__ import annotations

import importlib.util
import pickle
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from daffi import BG, BROADCAST, Global
from daffi._codec import PayloadEncodeError
from daffi._protocol import Call, CallbackInfo, Error, ParamInfo, Result
from daffi.decorators import alias, fetcher
from daffi.exceptions import GlobalContextError, InitializationError, RemoteCallError
from daffi.registry import CallbackRegistry

from ._raw import RawPeer
from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class Opaque:
    """A value the normal codec cannot send: msgspec does not know it and cattrs hands it
    back unchanged."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Opaque({self.value})"


def _touch(path: str) -> str:
    Path(path).write_text("unpickled")
    return "touched"


class Tripwire:
    """Unpickling it writes a file at ``path``: proof that a payload was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.path,))


def pickled_payload(value: Any) -> msgspec.Raw:
    """A pickled payload as a node that allows pickle makes it (a msgpack ``bin``)."""
    return msgspec.Raw(msgspec.msgpack.encode(pickle.dumps(value, protocol=5)))


# ---------------------------------------------------------------- callbacks and fetchers


def double_cb(x: Any) -> Opaque:
    return Opaque(x.value * 2)


async def double_async_cb(x: Any) -> Opaque:
    return Opaque(x.value * 2)


def type_of_cb(x: Any) -> str:
    return type(x).__name__


def adder_cb(n: int) -> Callable[[int], int]:
    return lambda y: y + n  # a closure: cloudpickle sends it by value


def opaque_values_cb(n: int) -> Iterator[Opaque]:
    yield Opaque(n)


@fetcher
async def double(x):
    pass


@alias("double")
@fetcher
def double_blocking(x):
    pass


@fetcher
async def type_of(x):
    pass


@fetcher
async def adder(n):
    pass


@fetcher
async def opaque_values(n):
    pass


@alias("type_of")
@fetcher
async def type_of_streamed():
    yield Opaque(1)


# ---------------------------------------------------------------- both ends allow pickle


@pytest.mark.parametrize("topology", ["ctrl-apart", "ctrl-in-callee", "ctrl-in-caller"])
@pytest.mark.parametrize("kind", ["def", "async"])
async def test_unencodable_values_travel_pickled_when_both_ends_allow_it(
    address: str, anyio_backend: str, topology: str, kind: str
) -> None:
    registry = CallbackRegistry()
    registry.add(double_cb if kind == "def" else double_async_cb, "double")
    registry.add(type_of_cb, "type_of")
    registry.add(adder_cb, "adder")
    with anyio.fail_after(20):
        async with _memory_network(topology, address, registry) as caller:
            await caller.wait_function_async("adder", timeout=5)
            with caller.as_current():
                assert await double(Opaque(21)) == Opaque(42)  # pickled both ways
                assert await type_of(Opaque(1)) == "Opaque"  # the object itself arrived
                add_two = await adder(2)  # a lambda, returned by value
                assert add_two(40) == 42
                # a def fetcher from a thread (the in-process link's lock, or a call channel)
                got = await anyio.to_thread.run_sync(double_blocking, Opaque(5))
                assert got == Opaque(10)
                # values msgpack carries still travel as msgpack (and are decoded as such)
                assert await type_of((1, 2)) == "list"


@asynccontextmanager
async def _memory_network(
    topology: str, address: str, registry: CallbackRegistry
) -> AsyncIterator[Global]:
    """A callee offering ``registry`` and a caller, both allowing pickle; the controller in a
    Global of its own, or in the callee's or the caller's process (whose node then talks to
    it over the in-process link). Yields the caller."""
    callee = dict(process_name="callee", address=address, registry=registry, allow_pickle=True)
    caller = dict(
        process_name="caller", address=address, registry=CallbackRegistry(), allow_pickle=True
    )
    if topology == "ctrl-in-callee":
        async with Global(init_controller=True, **callee), Global(**caller) as g:
            yield g
    elif topology == "ctrl-in-caller":
        async with Global(init_controller=True, **caller) as g, Global(**callee):
            yield g
    else:
        async with (
            Global("ctrl", init_controller=True, init_node=False, address=address),
            Global(**callee),
            Global(**caller) as g,
        ):
            yield g


async def test_only_the_caller_allowing_pickle_changes_nothing_for_encodable_values(
    make_node: NodeFactory,
) -> None:
    # The callee refuses every pickled payload: that its calls succeed shows nothing of
    # them was pickled, since msgpack could carry it.
    with anyio.fail_after(10):
        async with (
            make_node("callee", {"type_of": type_of_cb, "double": double_cb}),
            make_node("caller", allow_pickle=True) as caller,
        ):
            await caller.wait_function_async("type_of", timeout=5)
            with caller.as_current():
                assert await type_of({"a": [1, 2]}) == "dict"
                assert await type_of(b"bytes") == "bytes"
                assert await anyio.to_thread.run_sync(type_of_blocking, 3) == "int"


@alias("type_of")
@fetcher
def type_of_blocking(x):
    pass


# ---------------------------------------------------------------- one end only


async def test_refused_when_only_the_callee_allows_pickle(make_node: NodeFactory) -> None:
    ran: list[Any] = []

    def record_cb(x: Any) -> str:
        ran.append(x)
        return "ran"

    def unencodable_cb() -> Opaque:
        return Opaque(1)

    with anyio.fail_after(10):
        async with (
            make_node(
                "callee", {"type_of": record_cb, "opaque": unencodable_cb}, allow_pickle=True
            ),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("opaque", timeout=5)
            with caller.as_current():
                # the caller cannot encode it and may not pickle it: nothing is sent
                with pytest.raises(
                    PayloadEncodeError, match=r"allow_pickle=True\) on both"
                ) as info:
                    await type_of(Opaque(1))
                assert isinstance(info.value, TypeError)
                assert not isinstance(info.value, RemoteCallError)
                assert ran == []
                # the callee may pickle its result, but the caller did not say it accepts it
                with pytest.raises(
                    RemoteCallError, match=r"the caller 'caller' does not \(allow_pickle=False"
                ):
                    await opaque_fetcher()
                assert await type_of(2) == "ran"  # both still work


@alias("opaque")
@fetcher
async def opaque_fetcher():
    pass


@pytest.mark.parametrize("kind", ["def", "async"])
async def test_refused_when_only_the_caller_allows_pickle(
    make_node: NodeFactory, kind: str
) -> None:
    ran: list[Any] = []

    def record_cb(x: Any) -> str:
        ran.append(x)
        return "ran"

    async def record_async_cb(x: Any) -> str:
        return record_cb(x)

    def unencodable_cb() -> Opaque:
        return Opaque(1)

    callbacks = {"type_of": record_cb if kind == "def" else record_async_cb}
    callbacks["opaque"] = unencodable_cb
    with anyio.fail_after(10):
        async with (
            make_node("callee", callbacks),
            make_node("caller", allow_pickle=True) as caller,
        ):
            await caller.wait_function_async("opaque", timeout=5)
            with caller.as_current():
                with pytest.raises(
                    GlobalContextError,
                    match=r"process 'callee' refused the pickled arguments of 'type_of'.*"
                    r"allow_pickle=True",
                ):
                    await type_of(Opaque(1))
                assert ran == []
                # the callee does not pickle: today's encoding error, which names the switch
                with pytest.raises(RemoteCallError, match=r"Global\(allow_pickle=True\)"):
                    await opaque_fetcher()
                assert await type_of(2) == "ran"


# ---------------------------------------------------------------- forged payloads


async def test_a_forged_pickled_call_is_refused_and_never_unpickled(
    sock_dir: str, tmp_path: Path
) -> None:
    echo = CallbackInfo("echo", (ParamInfo("x", 1),))
    registry = CallbackRegistry()
    registry.add(lambda x: x, "echo")
    trusting = CallbackRegistry()
    trusting.add(lambda x: x, "echo")
    with anyio.fail_after(20):
        async with (
            Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir),
            Global("victim", registry=registry, unix_sock_path=sock_dir),
            Global("trusting", registry=trusting, unix_sock_path=sock_dir, allow_pickle=True),
        ):
            attacker = await RawPeer.join(sock_dir, "attacker", (echo,))
            try:
                refused = tmp_path / "refused"
                await attacker.send(
                    Call(
                        1,
                        "echo",
                        pickled_payload(((Tripwire(str(refused)),), {})),
                        "attacker",
                        "victim",
                        pickled=True,
                    )
                )
                error = await attacker.receive_until(Error)
                assert error.id == 1
                assert error.error.kind == "GlobalContextError"
                assert "process 'victim' refused the pickled arguments" in error.error.message
                assert "allow_pickle=True" in error.error.message
                # The same bytes without the flag are not msgpack call arguments: refused too.
                await attacker.send(
                    Call(
                        2,
                        "echo",
                        pickled_payload(((Tripwire(str(refused)),), {})),
                        "attacker",
                        "victim",
                    )
                )
                error = await attacker.receive_until(Error)
                assert error.id == 2
                assert "cannot decode call arguments" in error.error.message
                assert not refused.exists()
                # The payload is live: a node that allows pickle unpickles it.
                trusted = tmp_path / "trusted"
                await attacker.send(
                    Call(
                        3,
                        "echo",
                        pickled_payload(((Tripwire(str(trusted)),), {})),
                        "attacker",
                        "trusting",
                        pickled=True,
                    )
                )
                result = await attacker.receive_until(Result)
                assert result.id == 3
                assert msgspec.msgpack.decode(result.payload) == "touched"
                assert trusted.read_text() == "unpickled"
            finally:
                await attacker.aclose()


@alias("give")
@fetcher
async def give():
    pass


@alias("give")
@fetcher
def give_blocking():
    pass


@pytest.mark.parametrize("caller_kind", ["async", "sync"])
async def test_a_pickled_result_is_never_unpickled_by_a_caller_that_did_not_allow_it(
    sock_dir: str, tmp_path: Path, caller_kind: str
) -> None:
    tripped = tmp_path / "tripped"
    with anyio.fail_after(20):
        async with (
            Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir),
            Global("caller", registry=CallbackRegistry(), unix_sock_path=sock_dir) as caller,
        ):
            liar = await RawPeer.join(sock_dir, "liar", (CallbackInfo("give"),))
            try:
                await caller.wait_function_async("give", timeout=5)

                async def answer() -> None:
                    call = await liar.receive_until(Call)
                    assert not call.accepts_pickle  # the caller never said it accepts pickle
                    await liar.send(
                        Result(
                            call.id, call.src, pickled_payload(Tripwire(str(tripped))), pickled=True
                        )
                    )

                async with anyio.create_task_group() as tg:
                    tg.start_soon(answer)
                    with caller.as_current():
                        if caller_kind == "async":
                            with pytest.raises(GlobalContextError) as info:
                                await give()
                        else:
                            # a def fetcher from a thread: the call channel's reader
                            with pytest.raises(GlobalContextError) as info:
                                await anyio.to_thread.run_sync(_current(caller, give_blocking))
                assert "process 'caller' received a pickled result" in str(info.value)
                assert "allow_pickle=True" in str(info.value)
                assert not tripped.exists()
            finally:
                await liar.aclose()


def _current(g: Global, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with g.as_current():
            return fn()

    return run


# ---------------------------------------------------------------- streams stay msgpack


async def test_streams_carry_msgpack_only(make_node: NodeFactory) -> None:
    received: list[Any] = []

    def type_of_recording(x: Any) -> str:
        received.append(x)
        return type(x).__name__

    with anyio.fail_after(10):
        async with (
            make_node(
                "callee",
                {"opaque_values": opaque_values_cb, "type_of": type_of_recording},
                allow_pickle=True,
            ),
            make_node("caller", allow_pickle=True) as caller,
        ):
            await caller.wait_function_async("opaque_values", timeout=5)
            with caller.as_current():
                # a generator callback's values
                with pytest.raises(RemoteCallError, match=r"not streams"):
                    [x async for x in await opaque_values(1)]
                # a generator fetcher's items
                with pytest.raises(PayloadEncodeError, match=r"not streams"):
                    await type_of_streamed()
                assert received == []


# ---------------------------------------------------------------- without cloudpickle


@pytest.mark.parametrize("switch", ["allow_pickle", "allow_transfer"])
def test_the_switches_need_cloudpickle(monkeypatch: pytest.MonkeyPatch, switch: str) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "cloudpickle" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(InitializationError, match=r"pip install 'daffi\[pickle\]'"):
        Global("needs-cloudpickle", address="memory://unused", **{switch: True})


# ---------------------------------------------------------------- a sync caller's paths


@pytest.mark.parametrize("topology", ["ctrl-in-callee", "ctrl-in-caller", "ctrl-apart"])
@pytest.mark.parametrize("kind", ["def", "async"])
@pytest.mark.parametrize("callee_allows", [True, False], ids=["both", "caller-only"])
async def test_every_path_of_a_sync_caller_keeps_the_pickle_rule(
    sock_dir: str, anyio_backend: str, topology: str, kind: str, callee_allows: bool
) -> None:
    """A sync-face caller (its loop in a thread of its own) over a Unix socket: FG from a
    thread (a call channel served by a thread of the callee's process, the lock on the
    in-process link, or a channel routed by the controller's loop; the callee's work
    channel), BG (a future), BROADCAST, and an async fetcher awaited on another loop."""
    threads: list[str] = []

    def double_here(x: Any) -> Opaque:
        threads.append(threading.current_thread().name)
        return Opaque(x.value * 2)

    async def double_here_async(x: Any) -> Opaque:
        return double_here(x)

    registry = CallbackRegistry()
    registry.add(double_here if kind == "def" else double_here_async, "double")
    callee_options: dict[str, Any] = dict(
        process_name="callee",
        registry=registry,
        unix_sock_path=sock_dir,
        allow_pickle=callee_allows,
        init_controller=topology == "ctrl-in-callee",
    )
    with anyio.fail_after(40):
        async with _sync_caller_network(topology, anyio_backend, sock_dir, callee_options) as (
            caller,
            controller,
        ):
            await anyio.to_thread.run_sync(caller.wait_function, "double", 5)
            if kind == "def" and topology != "ctrl-in-callee":
                # the callee's work channel attaches shortly after it joins (private:
                # the controller's ``_Peer.work``)
                core = controller._runtime.controller
                assert core is not None
                assert await wait_until(lambda: bool(core.peers["callee"].work), 3.0)

            def fg() -> Any:
                return double_blocking(Opaque(1))

            def bg() -> Any:
                return double_blocking.call(Opaque(2), exec_modifier=BG).get(timeout=5)

            def broadcast() -> Any:
                return double_blocking.call(Opaque(3), exec_modifier=BROADCAST)

            if callee_allows:
                assert await anyio.to_thread.run_sync(_current(caller, fg)) == Opaque(2)
                if kind == "def":
                    served = topology == "ctrl-in-callee"
                    # the path this cell is about: the served channel's thread, or the work
                    # channel's
                    assert threads == ["daffi-channel" if served else "daffi-callee-work"]
                assert await anyio.to_thread.run_sync(_current(caller, bg)) == Opaque(4)
                assert await anyio.to_thread.run_sync(_current(caller, broadcast)) == {
                    "callee": Opaque(6)
                }
                with caller.as_current():
                    assert await double(Opaque(4)) == Opaque(8)  # from this loop
                return
            refused = r"process 'callee' refused the pickled arguments of 'double'"
            for call in (fg, bg):
                with pytest.raises(GlobalContextError, match=refused):
                    await anyio.to_thread.run_sync(_current(caller, call))
            with pytest.raises(RemoteCallError) as info:
                await anyio.to_thread.run_sync(_current(caller, broadcast))
            assert isinstance(info.value.errors["callee"], GlobalContextError)
            assert "refused the pickled arguments" in str(info.value.errors["callee"])
            with caller.as_current(), pytest.raises(GlobalContextError, match=refused):
                await double(Opaque(4))
            assert threads == []


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Whether ``predicate()`` holds within ``timeout`` seconds (checked every 10 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await anyio.sleep(0.01)
    return predicate()


@asynccontextmanager
async def _sync_caller_network(
    topology: str, backend: str, sock_dir: str, callee_options: dict[str, Any]
) -> AsyncIterator[tuple[Global, Global]]:
    """The callee (and the controller, when apart) in this loop; the caller, allowing pickle,
    a sync-face Global built in a worker thread (its loop in a thread of its own)."""
    caller_options: dict[str, Any] = dict(
        process_name="caller",
        registry=CallbackRegistry(),
        unix_sock_path=sock_dir,
        allow_pickle=True,
        backend=backend,
        connect_timeout=5,
        init_controller=topology == "ctrl-in-caller",
    )

    @asynccontextmanager
    async def sync_caller() -> AsyncIterator[Global]:
        g = await anyio.to_thread.run_sync(lambda: Global(**caller_options))
        try:
            yield g
        finally:
            await anyio.to_thread.run_sync(g.stop)

    if topology == "ctrl-in-callee":
        async with Global(**callee_options) as callee, sync_caller() as caller:
            yield caller, callee
    elif topology == "ctrl-in-caller":
        async with sync_caller() as caller, Global(**callee_options):
            yield caller, caller
    else:
        async with (
            Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir) as c,
            Global(**callee_options),
            sync_caller() as caller,
        ):
            yield caller, c
