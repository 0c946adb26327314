"""What a caller sees when things go wrong: remote exceptions, bad calls, lost nodes."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from daffi import FG
from daffi.decorators import fetcher
from daffi.exceptions import (
    ArgumentsError,
    RemoteCallError,
    RemoteStoppedUnexpectedly,
    UnableToFindCandidate,
)

from .conftest import NodeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.fabrics("memory", "nats")]


class InventoryError(Exception):
    """A user exception type that exists only on the callee's side as far as daffi knows."""


@fetcher
async def explode(x):
    pass


@fetcher
async def custom_failure():
    pass


@fetcher
async def nobody_offers_this():
    pass


@fetcher
async def add(a, b, *, scale=1):
    pass


@fetcher
async def echo(x):
    pass


@fetcher
async def sleepy():
    pass


@fetcher
async def unencodable_result():
    pass


def explode_cb(x: Any) -> None:
    raise ValueError(f"bad value {x!r}")


def custom_failure_cb() -> None:
    raise InventoryError("out of widgets")


def add_cb(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


def echo_cb(x: Any) -> Any:
    return x


# ---------------------------------------------------------------- remote exceptions


async def test_remote_builtin_exception(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"explode": explode_cb}), make_node("caller") as caller:
            await caller.wait_function_async("explode", timeout=5)
            with caller.as_current():
                with pytest.raises(ValueError, match="bad value 42") as info:
                    await explode(42)
                # the node keeps working after a remote failure
                with pytest.raises(ValueError, match="bad value 'again'"):
                    await explode("again")
    err = info.value
    assert isinstance(err, RemoteCallError)
    assert err.remote_type == "ValueError"
    assert err.remote_message == "bad value 42"
    assert err.process_name == "worker"
    text = str(err)
    assert "ValueError" in text
    assert "bad value 42" in text
    assert "worker" in text
    assert "explode_cb" in err.remote_traceback


async def test_remote_custom_exception(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"custom_failure": custom_failure_cb}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("custom_failure", timeout=5)
            with caller.as_current(), pytest.raises(RemoteCallError) as info:
                await custom_failure()
    err = info.value
    assert err.remote_type == "InventoryError"
    assert err.remote_message == "out of widgets"
    assert err.process_name == "worker"
    assert "InventoryError" in str(err)
    assert "custom_failure_cb" in err.remote_traceback
    assert not isinstance(err, InventoryError)  # the caller's type is never guessed from a name


async def test_remote_async_callback_exception(make_node: NodeFactory) -> None:
    async def explode_async(x: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise KeyError(x)

    with anyio.fail_after(10):
        async with make_node("worker", {"explode": explode_async}), make_node("caller") as caller:
            await caller.wait_function_async("explode", timeout=5)
            with caller.as_current(), pytest.raises(KeyError) as info:
                await explode("missing")
    assert isinstance(info.value, RemoteCallError)
    assert "explode_async" in info.value.remote_traceback


# ---------------------------------------------------------------- bad calls


async def test_unknown_callback_fails_at_once(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"echo": echo_cb}), make_node("caller") as caller:
            await caller.wait_function_async("echo", timeout=5)
            with caller.as_current():
                t0 = time.monotonic()
                with pytest.raises(UnableToFindCandidate, match="nobody_offers_this"):
                    await nobody_offers_this()
                with pytest.raises(UnableToFindCandidate):
                    await echo.call(1, exec_modifier=FG(receiver="no-such-process"))
                with pytest.raises(UnableToFindCandidate):
                    await nobody_offers_this.call(exec_modifier=FG(receiver="worker"))
                assert time.monotonic() - t0 < 0.5
                assert await echo(1) == 1


async def test_bad_arguments_fail_before_sending(make_node: NodeFactory) -> None:
    calls: list[Any] = []

    def add_recorded(a: int, b: int, *, scale: int = 1) -> int:
        calls.append((a, b, scale))
        return add_cb(a, b, scale=scale)

    with anyio.fail_after(10):
        async with make_node("worker", {"add": add_recorded}), make_node("caller") as caller:
            await caller.wait_function_async("add", timeout=5)
            with caller.as_current():
                with pytest.raises(ArgumentsError) as too_many:
                    await add(1, 2, 3)
                with pytest.raises(TypeError):  # ArgumentsError is a TypeError too
                    await add(1)
                with pytest.raises(ArgumentsError):
                    await add(1, 2, colour="red")
                assert calls == []  # nothing reached the callee
                assert await add(1, 2, scale=3) == 9
    text = str(too_many.value)
    assert "add" in text
    assert "(a, b, *, scale" in text


async def test_unencodable_argument(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"echo": echo_cb}), make_node("caller") as caller:
            await caller.wait_function_async("echo", timeout=5)
            with caller.as_current():
                with pytest.raises(TypeError, match="argument 0 of type object") as info:
                    await echo(object())
                assert not isinstance(info.value, RemoteCallError)
                # the node keeps working
                assert await echo([1, 2]) == [1, 2]
                assert await echo("fine") == "fine"


async def test_unencodable_result_is_an_error_not_a_hang(make_node: NodeFactory) -> None:
    def unencodable_result_cb() -> object:
        return object()

    with anyio.fail_after(10):
        async with (
            make_node("worker", {"unencodable_result": unencodable_result_cb, "echo": echo_cb}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("unencodable_result", timeout=5)
            with caller.as_current():
                with anyio.fail_after(3), pytest.raises(RemoteCallError, match="object"):
                    await unencodable_result()
                assert await echo("still here") == "still here"


# ---------------------------------------------------------------- lost nodes


async def test_callee_leaving_during_a_call(make_node: NodeFactory) -> None:
    entered = anyio.Event()
    stop_worker = anyio.Event()
    stopped_at: list[float] = []

    async def sleepy_cb() -> str:
        entered.set()
        await anyio.sleep(30)
        return "woke up"

    async def run_worker() -> None:
        async with make_node("worker", {"sleepy": sleepy_cb}):
            await stop_worker.wait()

    async def stop_when_running() -> None:
        await entered.wait()
        stopped_at.append(time.monotonic())
        stop_worker.set()  # leave `async with worker` while its callback sleeps

    with anyio.fail_after(10):
        async with make_node("caller") as caller, anyio.create_task_group() as tg:
            tg.start_soon(run_worker)
            await caller.wait_function_async("sleepy", timeout=5)
            tg.start_soon(stop_when_running)
            with caller.as_current(), pytest.raises(RemoteStoppedUnexpectedly, match="worker"):
                await sleepy()
            assert time.monotonic() - stopped_at[0] < 2


async def test_callee_stopped_from_outside_its_block(make_node: NodeFactory) -> None:
    entered = anyio.Event()

    async def sleepy_cb() -> str:
        entered.set()
        await anyio.sleep(30)
        return "woke up"

    with anyio.fail_after(10):
        async with make_node("worker", {"sleepy": sleepy_cb}) as worker, make_node("c") as c:
            await c.wait_function_async("sleepy", timeout=5)

            async def stop_when_running() -> None:
                await entered.wait()
                await worker.stop_async()

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_when_running)
                t0 = time.monotonic()
                with c.as_current(), pytest.raises(RemoteStoppedUnexpectedly):
                    await sleepy()
                assert time.monotonic() - t0 < 2
