"""The cells of the parity matrix: one network per cell, and callers of every kind.

A cell is a topology, a backend, a kind of callee (``def`` / ``async def`` callbacks) and a
kind of caller: a plain thread calling a ``def`` fetcher (``sync``), an ``async def`` fetcher
awaited on the caller's own loop (``async``: ``async with Global``), or an ``async def``
fetcher awaited on the test's loop through a Global whose loop runs in a thread of its own
(``other-loop``: the daffi-2-style app, whose calls go out from the awaiting loop's
thread). Every network runs over a Unix socket in a private temp directory, so the socket
paths (call channels, work channels, served channel threads) are exercised; the memory
transport would skip them.

Topologies (where the controller runs):

- ``ctrl-in-callee``: ``Global(init_controller=True)`` offers the callbacks; the caller is a
  node with a remote controller (sync callers: call channel served by a ``daffi-channel``
  thread of the controller's process; async callers: the controller's task route).
- ``ctrl-in-caller``: the caller's Global is the controller; the callee is a node with a
  remote controller (sync callers: the lock on the main connection, no channel; callee:
  work channel thread or worker pool).
- ``ctrl-apart``: a controller-only Global, a callee node and a caller node (sync callers:
  call channel routed by the controller's loop; callee: work channel thread or pool).

The callee (and the controller, when apart) are ``async with`` Globals on the test's own
loop (asyncio or trio). A sync caller is a Global with the sync face (built outside any
event loop, in a worker thread, with ``backend=`` the test's backend); an async caller is an
``async with`` Global on the test's loop.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from daffi import Global
from daffi._controller import Controller
from daffi.registry import CallbackRegistry

TOPOLOGIES = ["ctrl-in-callee", "ctrl-in-caller", "ctrl-apart"]
CALLEE_KINDS = ["def", "async"]
CALLER_KINDS = ["sync", "async", "other-loop"]


def registry_with(callbacks: dict[str, Callable[..., Any]]) -> CallbackRegistry:
    registry = CallbackRegistry()
    for name, func in callbacks.items():
        registry.add(func, name)
    return registry


@dataclass
class Net:
    topology: str
    backend: str
    caller_kind: str
    caller: Global
    callee: Global
    controller: Global

    def controller_core(self) -> Controller:
        assert self.controller._runtime.controller is not None
        return self.controller._runtime.controller

    def caller_pending(self) -> dict[int, Any]:
        """The caller node's table of calls waiting for a reply (private: ``CallTable.pending``,
        read on purpose, to check that no abandoned call leaves an entry behind)."""
        assert self.caller._runtime.node is not None
        return self.caller._runtime.node.table.pending

    def routes_of_caller(self) -> list[tuple[str, int]]:
        """The controller's in-flight routes of calls made by the caller (private:
        ``Controller.router``, keyed by ``(caller, call id)``)."""
        return [key for key in list(self.controller_core().router) if key[0] == "caller"]


def _sync_global(**options: Any) -> Global:
    return Global(**options)


@asynccontextmanager
async def _caller(
    kind: str, backend: str, sock_dir: str, *, init_controller: bool, **options: Any
) -> AsyncIterator[Global]:
    kwargs: dict[str, Any] = dict(
        process_name="caller",
        init_controller=init_controller,
        unix_sock_path=sock_dir,
        connect_timeout=5,
        registry=registry_with(options.pop("callbacks", {})),
        **options,
    )
    if kind == "async":
        async with Global(**kwargs) as g:
            yield g
        return
    # Built in a worker thread: outside any event loop, so it takes the sync face and runs
    # its own loop (of the test's backend) in a background thread.
    g = await anyio.to_thread.run_sync(lambda: _sync_global(backend=backend, **kwargs))
    try:
        yield g
    finally:
        await anyio.to_thread.run_sync(g.stop)


@asynccontextmanager
async def network(
    sock_dir: str,
    topology: str,
    backend: str,
    caller_kind: str,
    callbacks: dict[str, Callable[..., Any]],
    *,
    workers: int = 40,
    caller_callbacks: dict[str, Callable[..., Any]] | None = None,
    settle: bool = True,
) -> AsyncIterator[Net]:
    """Start the cell's Globals; the caller has seen every callback of the callee, and (with
    ``settle``) the callee's work channel is attached, when this yields."""
    callee_options: dict[str, Any] = dict(
        process_name="callee",
        unix_sock_path=sock_dir,
        connect_timeout=5,
        registry=registry_with(callbacks),
        workers=workers,
    )
    caller_options: dict[str, Any] = {"callbacks": caller_callbacks or {}, "workers": workers}

    async def ready(caller: Global, controller: Global, settle: bool = True) -> None:
        for name in callbacks:
            if caller_kind == "async":
                await caller.wait_function_async(name, timeout=5)
            else:
                # The sync face's blocking twin, from a thread: awaiting the ``_async`` twin
                # of a trio sync-face Global from a trio loop fails today ("this is a
                # blocking function; call it from a thread"), which is not what this
                # matrix is about.
                await anyio.to_thread.run_sync(caller.wait_function, name, 5)
        plain_def = any(
            not inspect.iscoroutinefunction(fn)
            and not inspect.isgeneratorfunction(fn)
            and not inspect.isasyncgenfunction(fn)
            for fn in callbacks.values()
        )
        if settle and plain_def and topology != "ctrl-in-callee":
            # A callee with a remote controller and a plain def callback attaches a work
            # channel shortly after it joins; until then its pool has one thread fewer
            # (test_workers.py checks that window on its own). Wait for it (private:
            # ``_Peer.work``).
            core = controller._runtime.controller
            assert core is not None
            await wait_until(lambda: bool(core.peers["callee"].work), 3.0)

    if topology == "ctrl-in-callee":
        async with (
            Global(init_controller=True, **callee_options) as callee,
            _caller(
                caller_kind, backend, sock_dir, init_controller=False, **caller_options
            ) as caller,
        ):
            await ready(caller, callee, settle)
            yield Net(topology, backend, caller_kind, caller, callee, callee)
    elif topology == "ctrl-in-caller":
        async with (
            _caller(
                caller_kind, backend, sock_dir, init_controller=True, **caller_options
            ) as caller,
            Global(**callee_options) as callee,
        ):
            await ready(caller, caller, settle)
            yield Net(topology, backend, caller_kind, caller, callee, caller)
    else:
        async with (
            Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir) as ctrl,
            Global(**callee_options) as callee,
            _caller(
                caller_kind, backend, sock_dir, init_controller=False, **caller_options
            ) as caller,
        ):
            await ready(caller, ctrl, settle)
            yield Net(topology, backend, caller_kind, caller, callee, ctrl)


class Outcome:
    """Runs ``fn`` in a daemon thread; keeps its value or exception and when it ended
    (as ``tests/sync/_helpers.Outcome``, plus the start time)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self.value: Any = None
        self.error: BaseException | None = None
        self.started_at = time.monotonic()
        self.ended_at: float | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="parity-caller")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.value = self._fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.done.set()

    @property
    def elapsed(self) -> float:
        assert self.ended_at is not None
        return self.ended_at - self.started_at


@dataclass
class Called:
    """What one call gave: its value or error, and how long the caller was held."""

    value: Any
    error: BaseException | None
    elapsed: float


async def wait_event(event: threading.Event, timeout: float) -> bool:
    """Wait for a threading.Event without blocking the test's loop (bounded)."""
    return await anyio.to_thread.run_sync(event.wait, timeout)


async def call_sync(caller: Global, fn: Callable[[], Any], bound: float) -> Called:
    """Run ``fn`` (a ``def`` fetcher call) in a plain thread through ``caller``; fail if it
    holds the thread longer than ``bound`` seconds."""

    def run() -> Any:
        with caller.as_current():
            return fn()

    outcome = Outcome(run)
    if not await wait_event(outcome.done, bound):
        raise AssertionError(f"the sync caller was still blocked after {bound} s (hang)")
    return Called(outcome.value, outcome.error, outcome.elapsed)


async def call_async(caller: Global, fn: Callable[[], Any], bound: float) -> Called:
    """Await ``fn()`` (an ``async def`` fetcher call) through ``caller``; fail if it takes
    longer than ``bound`` seconds."""
    started = time.monotonic()
    value: Any = None
    error: BaseException | None = None
    with anyio.move_on_after(bound) as scope:
        with caller.as_current():
            try:
                value = await fn()
            except Exception as exc:
                error = exc
    if scope.cancelled_caught:
        raise AssertionError(f"the async caller was still waiting after {bound} s (hang)")
    return Called(value, error, time.monotonic() - started)


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await anyio.sleep(0.01)
    return predicate()
