"""A Global constructed inside a running loop and never entered (daffi 2 style async apps).

It runs its core in a task of that loop, on the loop's own library, started by the
constructor: it serves its callbacks once the app awaits anything, with no daffi call made
first (a blocking daffi call made first runs it in a thread of its own instead, on the same
library); ``stop_async()`` returns once it has said ``Bye``; a stop before it started means it
never starts; ``async with`` right after the constructor runs it in the caller's task group
as usual. Every test runs on asyncio and trio, over the memory transport.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import sniffio

from daffi import BG, Global
from daffi.decorators import alias, fetcher
from daffi.exceptions import GlobalContextError
from daffi.registry import CallbackRegistry

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@alias("where")
@fetcher
async def where() -> Any: ...


@alias("where")
@fetcher
def where_blocking() -> Any: ...


def registry(**callbacks: Callable[..., Any]) -> CallbackRegistry:
    made = CallbackRegistry()
    for name, fn in callbacks.items():
        made.add(fn, name)
    return made


def daffi_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("daffi-") and t.is_alive()}


async def where_cb() -> list[Any]:
    return [sniffio.current_async_library(), threading.get_ident()]


async def test_it_serves_on_the_apps_own_loop_without_a_call_of_its_own(
    address: str, controller: Global, anyio_backend: str
) -> None:
    threads_before = daffi_threads()
    served = Global("served", address=address, registry=registry(where=where_cb))
    # No daffi call from `served`: awaiting anything lets its loop start it.
    async with Global("caller", address=address, registry=registry()) as caller:
        await caller.wait_function_async("where", timeout=5)
        with caller.as_current():
            library, thread = await where()
    assert library == anyio_backend
    assert thread == threading.get_ident()
    assert daffi_threads() <= threads_before  # no thread runs its core
    await served.stop_async()
    assert "stopped" in repr(served)


async def test_stop_async_returns_once_it_said_bye(
    address: str, controller: Global, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="daffi")
    gone = anyio.Event()

    async def on_disconnect(g: Global, name: str) -> None:
        if name == "leaver":
            gone.set()

    g = Global("leaver", address=address, registry=registry(where=where_cb))
    async with Global(
        "peer", address=address, registry=registry(), on_node_disconnect=on_disconnect
    ) as peer:
        await peer.wait_process_async("leaver", timeout=5)
        await g.stop_async()
        assert "stopped" in repr(g)
        with anyio.fail_after(5):
            await gone.wait()
    said = [r.getMessage() for r in caplog.records if r.name == "daffi.controller"]
    assert "node 'leaver' left" in said
    with pytest.raises(GlobalContextError, match="stopped"), g.as_current():
        await where()


async def test_join_async_waits_for_a_stop_from_a_task(address: str, controller: Global) -> None:
    g = Global("joined", address=address, registry=registry(where=where_cb))
    async with Global("peer", address=address, registry=registry()) as peer:
        await peer.wait_process_async("joined", timeout=5)

    async def stop_later() -> None:
        await anyio.sleep(0.1)
        g.stop()  # from the loop's own thread: requests the stop

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_later)
        with anyio.fail_after(5):
            await g.join_async()
    assert "stopped" in repr(g)


async def test_a_stop_before_it_started_means_it_never_starts(
    address: str, controller: Global
) -> None:
    threads_before = daffi_threads()
    g = Global("never", address=address, registry=registry(where=where_cb))
    g.stop()
    async with Global("peer", address=address, registry=registry()) as peer:
        with pytest.raises(TimeoutError):
            await peer.wait_process_async("never", timeout=0.3)
    assert "stopped" in repr(g)
    assert daffi_threads() <= threads_before
    with pytest.raises(GlobalContextError, match="stopped"):
        await g.wait_function_async("where", timeout=1)
    await g.stop_async()  # stopping again is harmless


async def test_async_with_right_after_the_constructor_runs_it_in_the_callers_group(
    address: str, controller: Global
) -> None:
    async with Global("entered", address=address, registry=registry(where=where_cb)) as g:
        assert g._runtime._host is not None
        assert not g._runtime._host.runs_core
        await g.wait_process_async("entered", timeout=5)
    assert "stopped" in repr(g)


async def test_a_blocking_call_from_its_loop_is_refused_with_the_async_way(
    address: str, controller: Global
) -> None:
    g = Global("app", address=address, registry=registry())
    try:
        async with Global("server", address=address, registry=registry(where=where_cb)):
            await g.wait_function_async("where", timeout=5)
            with g.as_current():
                with pytest.raises(GlobalContextError, match="async def"):
                    where_blocking()
                # The same call from a worker thread works.
                library, _ = await anyio.to_thread.run_sync(where_blocking)
            assert library == sniffio.current_async_library()
    finally:
        await g.stop_async()


async def test_a_blocking_call_before_it_started_runs_it_in_a_thread_on_this_library(
    sock_dir: str, anyio_backend: str
) -> None:
    """daffi 2's model, for daffi 2 programs that call blocking methods right after the
    constructor: the core starts at once in a thread of its own, on the loop's library, and
    blocking calls from the loop work (they block it while they wait)."""

    def make_controller() -> Global:  # outside any loop: in its own thread
        return Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir)

    ctrl = await anyio.to_thread.run_sync(make_controller)
    try:
        early = Global("early", unix_sock_path=sock_dir, registry=registry(where=where_cb))
        try:
            early.wait_process("early", timeout=5)
            library, thread = early.call.where().fg(timeout=5, receiver="early")
            assert library == anyio_backend
            assert thread != threading.get_ident()
        finally:
            await early.stop_async()
    finally:
        await anyio.to_thread.run_sync(ctrl.stop)


async def test_a_blocking_call_once_it_runs_in_the_loop_says_how_to_wait(
    address: str, controller: Global
) -> None:
    g = Global("early", address=address, registry=registry(where=where_cb))
    try:
        await g.wait_process_async("early", timeout=5)  # its loop has started it
        with pytest.raises(GlobalContextError, match=r"wait_function_async"):
            g.wait_function("where", timeout=1)
    finally:
        await g.stop_async()


async def test_a_failed_start_is_raised_by_the_next_call(anyio_backend: str) -> None:
    address = "memory://nobody-listens-here"
    g = Global("orphan", address=address, connect_timeout=0.2)
    with pytest.raises(GlobalContextError) as caught:
        await g.wait_function_async("where", timeout=1)
    assert caught.value.__cause__ is not None
    assert "stopped" in repr(g)


async def test_a_background_call_while_it_starts_in_the_loop_says_to_await_the_start(
    anyio_backend: str,
) -> None:
    """Made from the loop while the core is still starting there (no controller yet): not
    taken for a Global without a node, or a stopped one."""
    g = Global("early", address="memory://nobody-listens-for-early", connect_timeout=0.5)
    try:
        await anyio.sleep(0.05)  # the loop has started the core, which waits for a controller
        assert not g._runtime.started
        with pytest.raises(GlobalContextError, match="while this Global is starting"):
            g.call.where() & BG
    finally:
        await g.stop_async()
    with pytest.raises(GlobalContextError):
        await g.join_async()  # the start failed: no controller within connect_timeout
