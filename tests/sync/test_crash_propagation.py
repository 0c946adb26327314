"""A crash inside daffi is not swallowed.

An error in one of daffi's own tasks (injected here by replacing an internal coroutine of the
node or the controller with one that raises when the test says so) stops the Global. Then:

* ``join()`` / ``join_async()`` raise ``GlobalContextError`` whose ``__cause__`` is the crash;
* every later call raises ``GlobalContextError`` caused by the crash;
* peers see a crash, not a clean leave (no ``Bye``);
* under ``async with``, leaving the block raises the same error (if the body did not raise).

The sync-face tests are plain functions (each Global runs in its own background thread, on
the backend given); the async-face tests run on asyncio and trio.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import anyio
import pytest

from daffi import BG, Global
from daffi._controller import Controller
from daffi._session import Session
from daffi.decorators import fetcher
from daffi.exceptions import GlobalContextError
from daffi.registry import CallbackRegistry

BACKENDS = ["asyncio", "trio"]

pytestmark = pytest.mark.timeout(60)


class InjectedCrash(RuntimeError):
    """The error an internal task of daffi raises in these tests."""


@fetcher
def echo(x):
    pass


@pytest.fixture
def sock_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="daffi-c-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def trigger() -> Iterator[threading.Event]:
    """Set it to make the patched internal task crash (set at the end in any case, so no
    thread is left waiting on it)."""
    event = threading.Event()
    try:
        yield event
    finally:
        event.set()


def crash_on(trigger: threading.Event) -> Callable[..., Coroutine[Any, Any, None]]:
    """An internal coroutine's stand-in: waits for ``trigger``, then raises InjectedCrash."""

    async def crashing(self: object, *args: object) -> None:
        await anyio.to_thread.run_sync(trigger.wait, abandon_on_cancel=True)
        raise InjectedCrash(f"injected crash in {type(self).__name__}")

    return crashing


def registry(**callbacks: Callable[..., Any]) -> CallbackRegistry:
    made = CallbackRegistry()
    for name, fn in callbacks.items():
        made.add(fn, name)
    return made


def assert_caused_by_crash(error: BaseException, owner: str) -> None:
    assert isinstance(error, GlobalContextError), repr(error)
    assert isinstance(error.__cause__, InjectedCrash), repr(error.__cause__)
    assert str(error.__cause__) == f"injected crash in {owner}"
    assert "stopped because of an error" in str(error)


def wait_logged(caplog: pytest.LogCaptureFixture, logger: str, text: str) -> None:
    """Wait (at most 5 s) until ``logger`` has logged ``text``; records come from threads."""
    done = threading.Event()
    for _ in range(500):
        if any(r.name == logger and r.getMessage() == text for r in caplog.records):
            return
        done.wait(0.01)
    pytest.fail(f"{logger} did not log {text!r}: {[r.getMessage() for r in caplog.records]}")


# ---------------------------------------------------------------- sync face


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_node_crash_is_raised_by_join_and_by_every_later_call(
    sock_dir: str,
    backend: str,
    trigger: threading.Event,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="daffi")
    ctrl = Global(
        "ctrl",
        init_controller=True,
        unix_sock_path=sock_dir,
        backend=backend,
        registry=registry(echo=lambda x: x),
    )
    try:
        monkeypatch.setattr(Session, "_heartbeat", crash_on(trigger))
        node = Global("n", unix_sock_path=sock_dir, backend=backend, registry=registry())
        node.wait_function("echo", timeout=5)
        with node.as_current():
            assert echo(1) == 1  # it works until the crash
        trigger.set()

        with pytest.raises(GlobalContextError) as joined:
            node.join()
        assert_caused_by_crash(joined.value, "Session")
        with pytest.raises(GlobalContextError) as again:
            node.join()  # every time, not once
        assert_caused_by_crash(again.value, "Session")

        later_calls: list[Callable[[], object]] = [
            lambda: node.wait_process("ctrl", timeout=1),
            lambda: node.get_scheduled_tasks("ctrl"),
            lambda: echo(2),
            lambda: echo.call(3, exec_modifier=BG),
        ]
        for call in later_calls:
            with node.as_current(), pytest.raises(GlobalContextError) as later:
                call()
            assert_caused_by_crash(later.value, "Session")

        async def join_async() -> None:
            await node.join_async()

        with pytest.raises(GlobalContextError) as joined_async:
            anyio.run(join_async, backend=backend)
        assert_caused_by_crash(joined_async.value, "Session")

        node.stop()  # stopping a crashed Global is not an error
        # A crash is not a clean leave: the controller saw the node disconnect.
        wait_logged(caplog, "daffi.controller", "node 'n' disconnected")
        assert not any(r.getMessage() == "node 'n' left" for r in caplog.records)
    finally:
        ctrl.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_controller_crash_is_raised_by_join(
    sock_dir: str, backend: str, trigger: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Controller, "_reap_silent_peers", crash_on(trigger))
    ctrl = Global(
        "ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir, backend=backend
    )
    trigger.set()
    with pytest.raises(GlobalContextError) as joined:
        ctrl.join()
    assert_caused_by_crash(joined.value, "Controller")
    assert ctrl.registered_callbacks == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_without_a_crash_lets_join_return(sock_dir: str, backend: str) -> None:
    ctrl = Global(
        "ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir, backend=backend
    )
    stopper = threading.Timer(0.1, ctrl.stop)
    stopper.start()
    try:
        ctrl.join()  # returns: asked to stop, nothing crashed
    finally:
        stopper.cancel()
        stopper.join()
    with pytest.raises(GlobalContextError) as later:
        ctrl.wait_process("x", timeout=1)
    assert later.value.__cause__ is None
    assert "because it was stopped" in str(later.value)


# ---------------------------------------------------------------- async face


@pytest.mark.anyio
async def test_a_crash_under_async_with_is_raised_when_the_block_is_left(
    sock_dir: str, trigger: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir):
        monkeypatch.setattr(Session, "_heartbeat", crash_on(trigger))
        body_done = False

        async def use_node() -> None:
            nonlocal body_done
            async with Global("n", unix_sock_path=sock_dir, registry=registry()) as node:
                trigger.set()
                with pytest.raises(GlobalContextError) as joined:
                    await node.join_async()
                assert_caused_by_crash(joined.value, "Session")
                with pytest.raises(GlobalContextError) as later:
                    await node.wait_process_async("ctrl", timeout=1)
                assert_caused_by_crash(later.value, "Session")
                body_done = True

        with anyio.fail_after(10):
            with pytest.raises(GlobalContextError) as left:
                await use_node()
        assert body_done
        assert_caused_by_crash(left.value, "Session")


@pytest.mark.anyio
async def test_the_body_error_wins_over_a_crash_when_both_happen(
    sock_dir: str, trigger: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    class AppError(Exception):
        pass

    async with Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir):
        monkeypatch.setattr(Session, "_heartbeat", crash_on(trigger))

        async def use_node() -> None:
            async with Global("n", unix_sock_path=sock_dir, registry=registry()) as node:
                trigger.set()
                with pytest.raises(GlobalContextError):
                    await node.join_async()
                raise AppError("the app's own error")

        with anyio.fail_after(10):
            with pytest.raises(AppError):
                await use_node()
