"""``transfer_and_call``: a function run on another process, only if that process allows it.

In-process nodes on the memory transport, on asyncio and trio, with sync callers (a blocking
call from a worker thread) and async callers. A node created without ``allow_transfer=True``
refuses transferred functions without unpickling them: the payload's arguments include a
:class:`Tripwire`, whose unpickling would write a file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from daffi import Global
from daffi.decorators import alias, fetcher
from daffi.exceptions import (
    ArgumentsError,
    GlobalContextError,
    RemoteCallError,
    UnableToFindCandidate,
)

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def _touch(path: str) -> str:
    Path(path).write_text("unpickled")
    return path


class Tripwire:
    """Unpickling it writes a file at ``path`` (and gives the path back)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.path,))


class Opaque:
    """A value msgpack cannot carry (see test_pickle.py)."""

    def __init__(self, value: int) -> None:
        self.value = value


class Custom(Exception):
    pass


def where(tripwire: Any = None) -> tuple[str, Any]:
    """Runs there: which thread ran it, and what the argument became."""
    return threading.current_thread().name, tripwire


async def where_async(delay: float = 0.0) -> str:
    await anyio.sleep(delay)
    return threading.current_thread().name


async def transfer(caller: Global, caller_kind: str, remote: str, func: Any, *args: Any) -> Any:
    """``caller.transfer_and_call`` from a worker thread (sync), or its async twin."""
    if caller_kind == "sync":
        return await anyio.to_thread.run_sync(lambda: caller.transfer_and_call(remote, func, *args))
    return await caller.transfer_and_call_async(remote, func, *args)


CALLER_KINDS = ["sync", "async"]


@pytest.mark.parametrize("caller_kind", CALLER_KINDS)
async def test_refused_by_default_and_never_unpickled(
    make_node: NodeFactory, tmp_path: Path, caller_kind: str
) -> None:
    refused = tmp_path / "refused"
    with anyio.fail_after(10):
        async with make_node("callee"), make_node("caller") as caller:
            await caller.wait_process_async("callee", timeout=5)
            with pytest.raises(GlobalContextError) as info:
                await transfer(caller, caller_kind, "callee", where, Tripwire(str(refused)))
            text = str(info.value)
            assert "process 'callee' does not run transferred functions" in text
            assert "allow_transfer=True" in text
            assert not refused.exists()
            # A node that allows it unpickles the same payload (the proof is live), and runs
            # the function.
            async with make_node("trusting", allow_transfer=True):
                await caller.wait_process_async("trusting", timeout=5)
                trusted = tmp_path / "trusted"
                _, arrived = await transfer(
                    caller, caller_kind, "trusting", where, Tripwire(str(trusted))
                )
            assert arrived == str(trusted)
            assert trusted.read_text() == "unpickled"


@pytest.mark.parametrize("caller_kind", CALLER_KINDS)
async def test_def_async_def_lambdas_and_closures_run_there(
    make_node: NodeFactory, caller_kind: str
) -> None:
    offset = 40
    with anyio.fail_after(10):
        async with (
            make_node("callee", allow_transfer=True),
            make_node("caller", allow_transfer=True) as caller,
        ):
            await caller.wait_process_async("callee", timeout=5)
            # a def function: in one of the callee's executor threads
            thread, _ = await transfer(caller, caller_kind, "callee", where)
            assert thread.startswith("daffi-callee-")
            # an async def function: on the callee's loop (this test's thread)
            ran_on = await transfer(caller, caller_kind, "callee", where_async)
            assert ran_on == threading.current_thread().name
            # a lambda and a closure travel by value
            assert await transfer(caller, caller_kind, "callee", lambda x: x * 2, 21) == 42
            assert await transfer(caller, caller_kind, "callee", lambda: offset + 2) == 42
            # keyword arguments go to the function
            result = await caller.transfer_and_call_async("callee", lambda a, *, b: [a, b], 1, b=2)
            assert result == [1, 2]
            # the caller's own process, when it allows transfer too
            assert await caller.transfer_and_call_async("caller", os.getpid) == os.getpid()


async def test_the_callers_own_process_refuses_unless_it_allows(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("lonely") as lonely:
            with pytest.raises(GlobalContextError, match="process 'lonely' does not run"):
                await lonely.transfer_and_call_async("lonely", os.getpid)


@pytest.mark.parametrize("caller_kind", CALLER_KINDS)
async def test_exceptions_reach_the_caller_as_remote_errors(
    make_node: NodeFactory, caller_kind: str
) -> None:
    def fails() -> None:
        raise ValueError("bad value over there")

    async def fails_async() -> None:
        raise Custom("custom over there")

    with anyio.fail_after(10):
        async with (
            make_node("callee", allow_transfer=True),
            make_node("caller") as caller,
        ):
            await caller.wait_process_async("callee", timeout=5)
            with pytest.raises(ValueError, match="bad value over there") as info:
                await transfer(caller, caller_kind, "callee", fails)
            assert isinstance(info.value, RemoteCallError)
            assert info.value.process_name == "callee"
            with pytest.raises(RemoteCallError, match="custom over there") as remote:
                await transfer(caller, caller_kind, "callee", fails_async)
            assert remote.value.remote_type.endswith("Custom")
            # the callee keeps working
            assert await transfer(caller, caller_kind, "callee", lambda: "fine") == "fine"


@pytest.mark.parametrize("caller_kind", CALLER_KINDS)
async def test_checked_before_sending(make_node: NodeFactory, caller_kind: str) -> None:
    def numbers() -> Iterator[int]:
        yield 1

    with anyio.fail_after(10):
        async with (
            make_node("callee", allow_transfer=True),
            make_node("caller") as caller,
        ):
            await caller.wait_process_async("callee", timeout=5)
            with pytest.raises(UnableToFindCandidate, match="'nowhere' is not connected"):
                await transfer(caller, caller_kind, "nowhere", os.getpid)
            with pytest.raises(ArgumentsError, match="generator function"):
                await transfer(caller, caller_kind, "callee", numbers)
            with pytest.raises(ArgumentsError, match="needs a function"):
                await transfer(caller, caller_kind, "callee", 42)
            with pytest.raises(ArgumentsError, match="expects"):
                await transfer(caller, caller_kind, "callee", lambda a: a, 1, 2)
            with pytest.raises(TypeError, match="pickling it with its arguments failed"):
                await transfer(caller, caller_kind, "callee", where, threading.Lock())


async def test_the_result_travels_pickled_only_if_both_allow_pickle(
    make_node: NodeFactory,
) -> None:
    def make_opaque() -> Opaque:
        return Opaque(7)

    with anyio.fail_after(10):
        async with (
            make_node("strict", allow_transfer=True),
            make_node("lenient", allow_transfer=True, allow_pickle=True),
            make_node("caller", allow_pickle=True) as caller,
            make_node("plain") as plain,
        ):
            await caller.wait_process_async("lenient", timeout=5)
            await caller.wait_process_async("strict", timeout=5)
            await plain.wait_process_async("lenient", timeout=5)
            # the function runs, but its result cannot be sent: msgpack only there
            with pytest.raises(RemoteCallError, match=r"Global\(allow_pickle=True\)"):
                await caller.transfer_and_call_async("strict", make_opaque)
            # both allow pickle: it is
            result = await caller.transfer_and_call_async("lenient", make_opaque)
            assert isinstance(result, Opaque)
            assert result.value == 7
            # the caller does not: it is not
            with pytest.raises(RemoteCallError, match=r"the caller 'plain' does not"):
                await plain.transfer_and_call_async("lenient", make_opaque)


@alias("hold")
@fetcher
async def hold_fetcher():
    pass


class Probe:
    """State a test shares with the functions it transfers: they run in this process, and
    module-level objects travel by reference (a lock or an event would not pickle)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.holding = threading.Event()
        self.cancelled = threading.Event()
        self.order: list[str] = []


PROBE = Probe()


@pytest.fixture
def probe() -> Iterator[Probe]:
    global PROBE
    PROBE = Probe()
    try:
        yield PROBE
    finally:
        PROBE.release.set()


def hold_cb() -> str:
    PROBE.holding.set()
    PROBE.release.wait(10)
    PROBE.order.append("callback")
    return "held"


def after_hold() -> str:
    PROBE.order.append("transferred")
    return "after"


async def until_cancelled() -> None:
    try:
        await anyio.sleep(30)
    except anyio.get_cancelled_exc_class():
        PROBE.cancelled.set()
        raise


async def test_def_functions_take_the_executors_slots(make_node: NodeFactory, probe: Probe) -> None:
    """With ``workers=1``, a transferred ``def`` function waits for the slot a callback
    holds: it runs through the node's one executor."""
    with anyio.fail_after(20):
        async with (
            make_node("callee", {"hold": hold_cb}, allow_transfer=True, workers=1) as callee,
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("hold", timeout=5)
            results: dict[str, Any] = {}

            async def call_hold() -> None:
                with caller.as_current():
                    results["hold"] = await hold_fetcher()

            async def call_after() -> None:
                results["after"] = await caller.transfer_and_call_async("callee", after_hold)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call_hold)
                assert await anyio.to_thread.run_sync(probe.holding.wait, 5)
                tg.start_soon(call_after)
                await anyio.sleep(0.3)
                assert probe.order == []  # queued behind the callback: one slot
                assert callee._runtime.node is not None
                assert callee._runtime.node.dispatch.executor.running == 1
                probe.release.set()
            assert results == {"hold": "held", "after": "after"}
            assert probe.order == ["callback", "transferred"]


async def test_the_callers_deadline_cancels_the_remote_run(
    make_node: NodeFactory, probe: Probe
) -> None:
    with anyio.fail_after(20):
        async with (
            make_node("callee", allow_transfer=True),
            make_node("caller") as caller,
        ):
            await caller.wait_process_async("callee", timeout=5)
            with anyio.move_on_after(0.3) as scope:
                await caller.transfer_and_call_async("callee", until_cancelled)
            assert scope.cancelled_caught
            assert await anyio.to_thread.run_sync(probe.cancelled.wait, 5)
