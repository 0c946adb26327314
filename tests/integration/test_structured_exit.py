"""Leaving ``async with Global(...)`` for any reason is a clean, complete exit.

Whatever ends the block (its end, an exception, a cancellation from ``move_on_after`` /
``fail_after`` or a cancelled task group), the Global that leaves:

* says ``Bye``: the controller logs that the node *left* (not *disconnected*), other nodes
  get ``NodeDown(clean=True)`` (their log says so) and run ``on_node_disconnect``;
* leaves no task of its own running in the loop;
* leaves no socket of its own open;
* leaves no ``daffi-*`` thread it started running (waited for, at most 2 s).

The same holds for a controller that leaves: its nodes hear its ``Bye``.

Every test runs on asyncio and trio, over Unix sockets (in a temp dir) and the memory
transport, all Globals in the test's own loop.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
import sniffio

from daffi import Global
from daffi.decorators import alias, fetcher
from daffi.exceptions import RemoteStoppedUnexpectedly
from daffi.registry import CallbackRegistry

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

EXIT_MODES = ["normal", "error", "move_on_after", "fail_after", "cancelled_task_group"]
SETTLE = 2.0  # seconds a leftover (thread, socket) may take to go away after the exit


class Boom(Exception):
    """The error a test raises inside ``async with``."""


@alias("ping")
@fetcher
def ping_blocking(x):
    pass


@alias("work")
@fetcher
async def work(x):
    pass


@fetcher
async def slow():
    pass


# ---------------------------------------------------------------- what is running


def socket_fds() -> set[str]:
    """The sockets this process has open (``socket:[inode]`` per fd, from /proc/self/fd)."""
    found: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        with_target = os.path.join("/proc/self/fd", fd)
        try:
            target = os.readlink(with_target)
        except OSError:
            continue  # closed meanwhile (the listing's own fd, or another thread's)
        if target.startswith("socket:"):
            found.add(f"{fd}:{target}")
    return found


def daffi_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("daffi-") and t.is_alive()}


def running_tasks() -> set[object]:
    """Every task alive in the current event loop, except the caller's own."""
    if sniffio.current_async_library() == "trio":
        import trio

        tasks: set[object] = set()
        todo = [trio.lowlevel.current_root_task()]
        while todo:
            task = todo.pop()
            if task is None:
                continue
            tasks.add(task)
            for nursery in task.child_nurseries:
                todo.extend(nursery.child_tasks)
        tasks.discard(trio.lowlevel.current_task())
        return tasks
    import asyncio

    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current and not task.done()}


async def settled(check: Callable[[], bool], timeout: float = SETTLE) -> bool:
    """Whether ``check()`` holds now or becomes true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.02)
    return True


# ---------------------------------------------------------------- the network


@pytest.fixture(params=["unix", "memory"])
def where(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Where the test's controller listens: a Unix socket in a fresh temp dir, or memory."""
    if request.param == "memory":
        yield {"address": f"memory://daffi-exit-{uuid.uuid4().hex}"}
        return
    directory = tempfile.mkdtemp(prefix="dse-", dir="/tmp")
    try:
        yield {"unix_sock_path": directory}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def registry(**callbacks: Callable[..., Any]) -> CallbackRegistry:
    made = CallbackRegistry()
    for name, fn in callbacks.items():
        made.add(fn, name)
    return made


class Watcher:
    """A node's ``on_node_disconnect`` hook: which processes it saw leave."""

    def __init__(self) -> None:
        self.left: list[str] = []
        self._changed = anyio.Event()

    async def hook(self, g: Global, name: str) -> None:
        self.left.append(name)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_left(self, name: str, timeout: float = 5) -> None:
        with anyio.fail_after(timeout):
            while name not in self.left:
                await self._changed.wait()


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


async def leave(mode: str, make: Callable[[], Global], body: Callable[[Global], Awaitable[None]]):
    """Enter ``make()``, run ``body`` in it, then leave the block the way ``mode`` says."""
    if mode == "normal":
        async with make() as g:
            await body(g)
    elif mode == "error":

        async def fail() -> None:
            async with make() as g:
                await body(g)
                raise Boom("the app failed")

        with pytest.raises(Boom):
            await fail()
    elif mode in ("move_on_after", "fail_after"):
        # The deadline is set once the body is done, so a slow machine cannot cut it short.
        if mode == "move_on_after":
            with anyio.move_on_after(math.inf) as scope:
                async with make() as g:
                    await body(g)
                    scope.deadline = anyio.current_time() + 0.05
                    await anyio.sleep_forever()
            assert scope.cancelled_caught
        else:

            async def time_out() -> None:
                with anyio.fail_after(math.inf) as scope:
                    async with make() as g:
                        await body(g)
                        scope.deadline = anyio.current_time() + 0.05
                        await anyio.sleep_forever()

            with pytest.raises(TimeoutError):
                await time_out()
    elif mode == "cancelled_task_group":
        ready = anyio.Event()

        async def run() -> None:
            async with make() as g:
                await body(g)
                ready.set()
                await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await ready.wait()
            tg.cancel_scope.cancel()
    else:
        raise AssertionError(mode)


# ---------------------------------------------------------------- a node leaves


@pytest.mark.parametrize("mode", EXIT_MODES)
async def test_a_node_leaving_says_bye_and_leaves_nothing_behind(
    where: dict[str, Any], mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="daffi")
    slow_running = threading.Event()
    outcome: list[BaseException] = []

    async def ping_cb(x: int) -> int:
        return x

    def work_cb(x: int) -> int:
        return x + 1

    def slow_cb() -> str:
        slow_running.set()
        time.sleep(0.5)  # user code still running in a daffi thread when its node leaves
        return "done"

    watcher = Watcher()
    with anyio.fail_after(30):
        async with (
            Global("ctrl", init_controller=True, registry=registry(ping=ping_cb), **where) as ctrl,
            Global("watcher", registry=registry(), on_node_disconnect=watcher.hook, **where),
        ):
            tasks_before = running_tasks()
            sockets_before = socket_fds()
            threads_before = daffi_threads()

            async def call_slow() -> None:
                with ctrl.as_current():
                    try:
                        await slow()
                    except Exception as exc:
                        outcome.append(exc)

            def make() -> Global:
                return Global("leaver", registry=registry(work=work_cb, slow=slow_cb), **where)

            async def body(g: Global) -> None:
                def call_from_a_thread() -> Any:
                    with g.as_current():
                        return ping_blocking(41)

                # A call from a plain thread (over a call channel, with a socket) and calls
                # into the leaving node's `def` callbacks (they run in its threads).
                assert await anyio.to_thread.run_sync(call_from_a_thread) == 41
                await ctrl.wait_function_async("slow", timeout=5)
                with ctrl.as_current():
                    assert await work(1) == 2
                calls.start_soon(call_slow)
                assert await anyio.to_thread.run_sync(slow_running.wait, 5)
                # The checks below are not vacuous: the node runs tasks and threads of its
                # own, and holds sockets when it has some.
                assert running_tasks() - tasks_before
                assert {t.name for t in daffi_threads() - threads_before} & {
                    "daffi-leaver-work",
                    "daffi-leaver-0",
                }
                if "unix_sock_path" in where:
                    assert socket_fds() - sockets_before

            async with anyio.create_task_group() as calls:
                await leave(mode, make, body)
            # Its threads were joined before the exit returned: none is left, not even the
            # one that ran the def callback it was serving when it left.
            assert not [t.name for t in daffi_threads() - threads_before if "leaver" in t.name]

            # Its peers recorded a clean leave, and so did the caller of the call it left.
            await watcher.wait_left("leaver")
            assert "node 'leaver' left" in messages(caplog, "daffi.controller")
            assert "node 'leaver' disconnected" not in messages(caplog, "daffi.controller")
            assert "node 'watcher': process 'leaver' left" in messages(caplog, "daffi.node")
            assert len(outcome) == 1
            assert isinstance(outcome[0], RemoteStoppedUnexpectedly), outcome
            assert "process 'leaver' left while running 'slow'" in str(outcome[0])

            # Nothing of it is left running or open.
            leftover_tasks = running_tasks() - tasks_before
            assert not leftover_tasks, leftover_tasks
            assert await settled(lambda: socket_fds() <= sockets_before), (
                socket_fds() - sockets_before
            )
            assert await settled(lambda: daffi_threads() <= threads_before), [
                t.name for t in daffi_threads() - threads_before
            ]


# ---------------------------------------------------------------- a controller leaves


@pytest.mark.parametrize("mode", EXIT_MODES)
async def test_a_controller_leaving_says_bye_to_its_nodes(
    where: dict[str, Any], mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="daffi")

    async def ping_cb(x: int) -> int:
        return x

    watcher = Watcher()
    node_started = anyio.Event()
    node_done = anyio.Event()
    with anyio.fail_after(30):
        tasks_before = running_tasks()
        sockets_before = socket_fds()
        threads_before = daffi_threads()
        async with anyio.create_task_group() as tg:

            async def node() -> None:
                async with Global(
                    "watcher",
                    registry=registry(ping=ping_cb),
                    on_node_disconnect=watcher.hook,
                    **where,
                ):
                    node_started.set()
                    await node_done.wait()

            def make() -> Global:
                return Global("ctrl", init_controller=True, init_node=False, **where)

            async def body(ctrl: Global) -> None:
                tg.start_soon(node)
                await node_started.wait()  # connected (entering waits for the handshake)

            await leave(mode, make, body)

            # The node heard the controller's goodbye, and lost it cleanly.
            await watcher.wait_left("watcher")
            assert "node 'watcher': the controller is stopping (controller stopping)" in (
                messages(caplog, "daffi.node")
            )
            node_done.set()

        leftover_tasks = running_tasks() - tasks_before
        assert not leftover_tasks, leftover_tasks
        assert await settled(lambda: socket_fds() <= sockets_before), socket_fds() - sockets_before
        assert await settled(lambda: daffi_threads() <= threads_before), [
            t.name for t in daffi_threads() - threads_before
        ]


async def test_a_crash_of_the_core_reaches_the_block_as_the_error_not_a_cancellation() -> None:
    """When daffi's core fails inside ``async with``, its task group cancels the block; what
    leaves the block is ``GlobalContextError`` caused by the failure, never a bare
    cancellation that would leak past the caller's own cancel scopes."""
    from daffi.exceptions import GlobalContextError

    address = f"memory://structured-exit-{uuid.uuid4().hex}"
    failure = RuntimeError("internal failure")

    async def crash() -> None:
        raise failure

    async def crashing_node() -> None:
        async with Global("w", address=address, registry=CallbackRegistry()) as g:
            tg = g._runtime.task_group
            assert tg is not None
            tg.start_soon(crash)
            await anyio.sleep(5)  # cancelled by the crash

    with anyio.fail_after(10):
        async with Global("ctrl", init_controller=True, init_node=False, address=address):
            with pytest.raises(GlobalContextError, match="stopped because of an error") as caught:
                await crashing_node()
            assert caught.value.__cause__ is failure
