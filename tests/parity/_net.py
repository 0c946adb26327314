"""The cells of the parity matrix: one network per cell, and callers of every kind.

A cell is a wire, a topology, a backend, a kind of callee (``def`` / ``async def``
callbacks) and a kind of caller: a plain thread calling a ``def`` fetcher (``sync``), an
``async def`` fetcher awaited on the caller's own loop (``async``: ``async with Global``), or
an ``async def`` fetcher awaited on the test's loop through a Global whose loop runs in a
thread of its own (``other-loop``: the daffi-2-style app, whose calls go out from the
awaiting loop's thread).

Wires (how the cell's Globals connect; the ``wire`` fixture of ``conftest.py`` gives a
:class:`Wire`, which makes each Global's connection options):

- ``unix``: a Unix socket in a private temp directory, plaintext.
- ``tls``: TCP on 127.0.0.1 with mutual TLS (a CA, a server certificate for 127.0.0.1 and a
  client certificate, made with ``trustme`` once per session) and an ``auth_token`` on every
  Global. The controller's Global starts first and picks a free port; the others connect to
  it.

Both wires are sockets, so the socket paths (direct writes from threads, the asyncio direct
reader, call channels, work channels, served channel threads) are exercised; the memory
transport would skip them. The ``tls`` wire is there because daffi applies TLS itself on
every one of those paths (``daffi/_cipher.py``: each seals what it writes and opens what it
reads) instead of giving them up: it checks that every fast path keeps its meaning under
TLS (timeouts, cancels, the ``workers`` bound and nested chains behave as on the plain wire).
``test_wire.py`` checks that the cells do take those paths on both wires, and that on the
``tls`` wire every remote connection is sealed and every join authenticated.

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
WIRES = ["unix", "tls"]
#: the shared secret of every Global on the ``tls`` wire
AUTH_TOKEN = "parity-matrix-token"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Pki:
    """PEM files for the ``tls`` wire, each holding a private key and its certificate."""

    #: the CA that signed both certificates (the controller's ``ssl_ca`` and the nodes')
    ca: str
    #: the controller's certificate, for 127.0.0.1
    server: str
    #: the nodes' client certificate (mutual TLS)
    client: str


@dataclass(frozen=True)
class Wire:
    """How a cell's Globals connect: the connection options of each Global.

    ``unix`` (``Wire.unix``): a Unix socket in ``sock_dir``. ``tls`` (``Wire.tls``): TCP on
    127.0.0.1, mutual TLS with the files of ``pki`` and ``AUTH_TOKEN`` on every Global; the
    controller picks a free port, which the nodes are given (so the controller's Global must
    be started first).
    """

    name: str
    sock_dir: str | None = None
    pki: Pki | None = None

    @classmethod
    def unix(cls, sock_dir: str) -> Wire:
        return cls("unix", sock_dir=sock_dir)

    @classmethod
    def tls(cls, pki: Pki) -> Wire:
        return cls("tls", pki=pki)

    def controller_options(self) -> dict[str, Any]:
        """Options of a Global that runs the controller (with or without a node)."""
        if self.pki is None:
            return self._unix_options()
        return {
            "host": LOOPBACK,
            "ssl_certificate": self.pki.server,
            "ssl_key": self.pki.server,
            "ssl_ca": self.pki.ca,
            "auth_token": AUTH_TOKEN,
        }

    def node_options(self, controller: Global) -> dict[str, Any]:
        """Options of a node-only Global whose controller runs in ``controller`` (started)."""
        if self.pki is None:
            return self._unix_options()
        assert controller.port, f"the controller {controller.process_name!r} has no port yet"
        return {
            "host": LOOPBACK,
            "port": controller.port,
            "ssl_ca": self.pki.ca,
            "ssl_certificate": self.pki.client,
            "ssl_key": self.pki.client,
            "auth_token": AUTH_TOKEN,
        }

    def options(self, *, init_controller: bool, controller: Global | None) -> dict[str, Any]:
        """The controller's options if ``init_controller``, else a node's of ``controller``."""
        if init_controller:
            return self.controller_options()
        assert controller is not None, "a node needs its controller's Global started first"
        return self.node_options(controller)

    def _unix_options(self) -> dict[str, Any]:
        assert self.sock_dir is not None, f"the {self.name} wire has no socket directory"
        return {"unix_sock_path": self.sock_dir}


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
    kind: str,
    backend: str,
    wire: Wire,
    *,
    init_controller: bool,
    controller: Global | None = None,
    **options: Any,
) -> AsyncIterator[Global]:
    """The cell's caller Global (``process_name="caller"``) of ``kind``: the controller if
    ``init_controller``, else a node of ``controller``'s (already started)."""
    kwargs: dict[str, Any] = dict(
        process_name="caller",
        init_controller=init_controller,
        connect_timeout=5,
        registry=registry_with(options.pop("callbacks", {})),
        **wire.options(init_controller=init_controller, controller=controller),
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
    wire: Wire,
    topology: str,
    backend: str,
    caller_kind: str,
    callbacks: dict[str, Callable[..., Any]],
    *,
    workers: int = 40,
    caller_callbacks: dict[str, Callable[..., Any]] | None = None,
    settle: bool = True,
    callee_extra: dict[str, Any] | None = None,
) -> AsyncIterator[Net]:
    """Start the cell's Globals over ``wire``, the controller's first (the others connect
    to it: on the ``tls`` wire, to the port it picked); the caller has seen every callback of
    the callee, and (with ``settle``) the callee's work channel is attached, when this
    yields. ``callee_extra``: more options of the callee's Global."""
    callee_options: dict[str, Any] = dict(
        process_name="callee",
        connect_timeout=5,
        registry=registry_with(callbacks),
        workers=workers,
        **(callee_extra or {}),
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
            assert await wait_until(lambda: bool(core.peers["callee"].work), 3.0), (
                "the callee's work channel was not attached within 3 s"
            )

    if topology == "ctrl-in-callee":
        async with (
            Global(init_controller=True, **wire.controller_options(), **callee_options) as callee,
            _caller(
                caller_kind,
                backend,
                wire,
                init_controller=False,
                controller=callee,
                **caller_options,
            ) as caller,
        ):
            await ready(caller, callee, settle)
            yield Net(topology, backend, caller_kind, caller, callee, callee)
    elif topology == "ctrl-in-caller":
        async with (
            _caller(caller_kind, backend, wire, init_controller=True, **caller_options) as caller,
            Global(**wire.node_options(caller), **callee_options) as callee,
        ):
            await ready(caller, caller, settle)
            yield Net(topology, backend, caller_kind, caller, callee, caller)
    else:
        async with (
            Global(
                "ctrl", init_controller=True, init_node=False, **wire.controller_options()
            ) as ctrl,
            Global(**wire.node_options(ctrl), **callee_options) as callee,
            _caller(
                caller_kind,
                backend,
                wire,
                init_controller=False,
                controller=ctrl,
                **caller_options,
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
