"""BG calls between nodes: AsyncResult at once, concurrency, errors, timeouts, eta, sync face."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from daffi import BG, AsyncResult, Global
from daffi.decorators import alias, fetcher
from daffi.exceptions import GlobalContextError, RemoteCallError, UnableToFindCandidate
from daffi.exceptions import TimeoutError as DaffiTimeoutError
from daffi.registry import CallbackRegistry

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.fabrics("memory", "nats")]


# ---------------------------------------------------------------- fetchers used by the tests


@fetcher(BG)
async def nap(x):
    pass


@alias("nap")
@fetcher(BG(timeout=0.3))
async def nap_with_timeout(x):
    pass


@alias("nap")
@fetcher(BG)
def nap_blocking(x):
    pass


@fetcher(BG)
async def fail(x):
    pass


@fetcher(BG(eta=0.2))
async def stamp():
    pass


@alias("stamp")
@fetcher(BG(return_result=False))
async def stamp_forget():
    pass


@alias("slow")
@fetcher(BG)
def slow_blocking():
    pass


@fetcher(BG)
async def whoami():
    pass


@fetcher(BG)
async def nobody_offers_this():
    pass


# ---------------------------------------------------------------- callbacks


def make_nap(delay: float) -> Any:
    async def nap_cb(x: Any) -> Any:
        await anyio.sleep(delay)
        return {"echo": x}

    return nap_cb


def fail_cb(x: Any) -> None:
    raise ValueError(f"bad value {x!r}")


def returns(value: str) -> Any:
    def whoami_cb() -> str:
        return value

    return whoami_cb


# ---------------------------------------------------------------- in-process (async with)


async def test_bg_returns_at_once_and_runs_concurrently(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"nap": make_nap(0.3)}), make_node("caller") as caller:
            await caller.wait_function_async("nap", timeout=5)
            with caller.as_current():
                t0 = time.monotonic()
                results = [await nap(i) for i in range(3)]
                started = time.monotonic() - t0
                assert all(isinstance(r, AsyncResult) for r in results)
                assert not any(r.ready for r in results)
                assert all(r.error is None for r in results)  # still running: no error
                assert started < 0.15, f"BG waited for the call ({started:.2f} s)"
                values = [await r.get_async() for r in results]
                elapsed = time.monotonic() - t0
    assert values == [{"echo": 0}, {"echo": 1}, {"echo": 2}]
    # one after the other would take 0.9 s
    assert 0.28 <= elapsed < 0.7, f"three BG calls took {elapsed:.2f} s"
    assert all(r.ready and r.error is None for r in results)


async def test_result_can_be_read_many_times(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"nap": make_nap(0.05)}), make_node("caller") as caller:
            await caller.wait_function_async("nap", timeout=5)
            with caller.as_current():
                result = await nap([1, 2])
                first = await result.get_async()
                second = await result.get_async()
                third = await result  # AsyncResult is awaitable
                with_timeout = await result.get_async(timeout=1)
    assert first == second == third == with_timeout == {"echo": [1, 2]}
    assert result.ready
    assert result.error is None


async def test_error_result_raises_the_remote_error_every_time(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"fail": fail_cb}), make_node("caller") as caller:
            await caller.wait_function_async("fail", timeout=5)
            with caller.as_current():
                result = await fail(7)  # the error is in the result, not raised here
                raised: list[BaseException] = []
                for _ in range(2):
                    with pytest.raises(ValueError, match="bad value 7") as info:
                        await result.get_async()
                    raised.append(info.value)
                with pytest.raises(RemoteCallError):
                    await result
    assert result.ready
    error = result.error
    assert isinstance(error, RemoteCallError)
    assert isinstance(error, ValueError)
    assert error.remote_type == "ValueError"
    assert error.process_name == "worker"
    assert raised[0] is error
    assert raised[1] is error


async def test_bg_timeout_raises_timeout_error_from_get_async(make_node: NodeFactory) -> None:
    cancelled = anyio.Event()

    async def slow_nap(x: Any) -> Any:
        try:
            await anyio.sleep(5)
        finally:
            cancelled.set()
        return x

    with anyio.fail_after(10):
        async with make_node("worker", {"nap": slow_nap}), make_node("caller") as caller:
            await caller.wait_function_async("nap", timeout=5)
            with caller.as_current():
                t0 = time.monotonic()
                result = await nap_with_timeout(1)
                with pytest.raises(DaffiTimeoutError):
                    await result.get_async()
                elapsed = time.monotonic() - t0
                assert isinstance(result.error, DaffiTimeoutError)
                # the timeout of the call cancels the remote execution too
                with anyio.fail_after(2):
                    await cancelled.wait()
    assert 0.25 <= elapsed < 1.5


async def test_get_async_timeout_does_not_cancel_the_call(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"nap": make_nap(0.4)}), make_node("caller") as caller:
            await caller.wait_function_async("nap", timeout=5)
            with caller.as_current():
                result = await nap("x")
                with pytest.raises(DaffiTimeoutError, match="not ready"):
                    await result.get_async(timeout=0.05)
                assert not result.ready
                assert await result.get_async() == {"echo": "x"}


async def test_eta_delays_the_send(make_node: NodeFactory) -> None:
    started_at: list[float] = []

    def stamp_cb() -> float:
        started_at.append(time.monotonic())
        return started_at[-1]

    with anyio.fail_after(10):
        async with make_node("worker", {"stamp": stamp_cb}), make_node("caller") as caller:
            await caller.wait_function_async("stamp", timeout=5)
            with caller.as_current():
                t0 = time.monotonic()
                result = await stamp()
                assert time.monotonic() - t0 < 0.15  # eta does not delay the caller
                assert not result.ready
                value = await result.get_async()
    assert started_at == [value]
    assert started_at[0] - t0 >= 0.2


async def test_return_result_false_is_fire_and_forget(make_node: NodeFactory) -> None:
    ran = anyio.Event()

    async def stamp_cb() -> str:
        ran.set()
        return "ignored"

    with anyio.fail_after(10):
        async with make_node("worker", {"stamp": stamp_cb}), make_node("caller") as caller:
            await caller.wait_function_async("stamp", timeout=5)
            with caller.as_current():
                assert await stamp_forget() is None
                await ran.wait()


async def test_bg_receiver_pins_the_process(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with (
            make_node("a", {"whoami": returns("a")}),
            make_node("b", {"whoami": returns("b")}),
            make_node("caller") as caller,
        ):
            await caller.wait_process_async("a", timeout=5)
            await caller.wait_process_async("b", timeout=5)
            with caller.as_current():
                pinned = [await whoami.call(exec_modifier=BG(receiver="b")) for _ in range(4)]
                spread = [await whoami() for _ in range(4)]
                pinned_values = [await r.get_async() for r in pinned]
                spread_values = sorted([await r.get_async() for r in spread])
    assert pinned_values == ["b"] * 4
    assert spread_values == ["a", "a", "b", "b"]


async def test_unknown_callback_raises_at_once(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"nap": make_nap(0)}), make_node("caller") as caller:
            await caller.wait_function_async("nap", timeout=5)
            with caller.as_current():
                with pytest.raises(UnableToFindCandidate):
                    await nobody_offers_this()
                with pytest.raises(UnableToFindCandidate):
                    await nap.call(1, exec_modifier=BG(receiver="nobody"))
                with pytest.raises(TypeError):  # does not bind nap(x): raised before sending
                    await nap(1, 2)


async def test_blocking_get_on_the_loop_thread_names_get_async(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"nap": make_nap(0.05)}), make_node("caller") as caller:
            await caller.wait_function_async("nap", timeout=5)
            with caller.as_current():
                result = nap_blocking(3)  # BG `def` fetcher: does not block, even here
                assert isinstance(result, AsyncResult)
                with pytest.raises(GlobalContextError, match="get_async"):
                    result.get()
                assert await result.get_async() == {"echo": 3}
                # from a worker thread the blocking face works
                assert await anyio.to_thread.run_sync(result.get, 5) == {"echo": 3}


# ---------------------------------------------------------------- sync face (background thread)


@dataclass
class BackgroundPair:
    """A controller+worker Global and a caller Global, each in its own background thread."""

    server: Global
    caller: Global
    slow_started: threading.Event
    slow_cancelled: threading.Event


@pytest.fixture
def background_pair() -> Iterator[BackgroundPair]:
    """Both Globals talk over a Unix socket in a short private directory."""
    directory = tempfile.mkdtemp(prefix="dbg", dir="/tmp")
    slow_started = threading.Event()
    slow_cancelled = threading.Event()

    async def slow_cb() -> None:
        slow_started.set()
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            slow_cancelled.set()
            raise

    registry = CallbackRegistry()
    registry.add(make_nap(0.2), "nap")
    registry.add(fail_cb, "fail")
    registry.add(slow_cb, "slow")
    globals_: list[Global] = []
    try:
        server = Global(
            "bg-server", init_controller=True, unix_sock_path=directory, registry=registry
        )
        globals_.append(server)
        caller = Global("bg-caller", unix_sock_path=directory, registry=CallbackRegistry())
        globals_.append(caller)
        caller.wait_function("nap", timeout=5)
        yield BackgroundPair(server, caller, slow_started, slow_cancelled)
    finally:
        for g in reversed(globals_):
            g.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.timeout(30)
def test_sync_face_bg_from_plain_threads(background_pair: BackgroundPair) -> None:
    caller = background_pair.caller
    values: dict[int, Any] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with caller.as_current():
                result = nap_blocking(i)
                assert isinstance(result, AsyncResult)
                values[i] = (result.get(timeout=5), result.get(timeout=5))
        except BaseException as exc:
            errors.append(exc)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    with caller.as_current():
        main_result = nap_blocking("main")
        assert main_result.get(timeout=5) == {"echo": "main"}
    for t in threads:
        t.join(timeout=10)
    elapsed = time.monotonic() - t0
    assert not errors, errors
    assert values == {i: ({"echo": i}, {"echo": i}) for i in range(3)}
    assert elapsed < 0.55, f"four concurrent BG calls of 0.2 s took {elapsed:.2f} s"

    # a blocking get with a timeout that is too short: TimeoutError, and the call goes on
    with caller.as_current():
        result = nap_blocking("late")
    with pytest.raises(DaffiTimeoutError):
        result.get(timeout=0.01)
    assert result.get(timeout=5) == {"echo": "late"}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_get_async_from_a_foreign_loop(background_pair: BackgroundPair, backend: str) -> None:
    caller = background_pair.caller

    async def main() -> tuple[Any, Any, BaseException | None]:
        with anyio.fail_after(10), caller.as_current():
            result = await nap("foreign")
            assert isinstance(result, AsyncResult)
            first = await result.get_async()
            second = await result
            failing = await fail(1)
            with pytest.raises(ValueError, match="bad value 1"):
                await failing.get_async()
            return first, second, failing.error

    first, second, error = anyio.run(main, backend=backend)
    assert first == second == {"echo": "foreign"}
    assert isinstance(error, RemoteCallError)


@pytest.mark.timeout(30)
def test_sync_face_cancel_stops_the_remote_call(background_pair: BackgroundPair) -> None:
    with background_pair.caller.as_current():
        result = slow_blocking()
    assert background_pair.slow_started.wait(5)
    assert not result.ready
    assert result.cancel()
    assert background_pair.slow_cancelled.wait(2), "the remote execution was not cancelled"
    assert result.ready
    with pytest.raises(GlobalContextError, match="cancelled"):
        result.get(timeout=1)
