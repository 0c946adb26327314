"""The runtime of a Global: its event loop, and the bridge to it from other threads and loops.

Three ways to run (see docs/design.md):

* constructed outside an event loop: at once, in a background daemon thread of its own that
  runs the async core, reached through a ``BlockingPortal`` (:meth:`Runtime.start_in_thread`);
  stopped at exit;
* ``async with``: in the caller's loop and task group (:meth:`Runtime.enter`);
* constructed inside a running loop (daffi 2 style async apps): a controller binds its
  address in the constructor; the core runs in a task of that loop, on its library (asyncio
  or trio), from the first time the creating code awaits, unless ``async with`` enters the
  Global first (:meth:`Runtime.start_in_running_loop`). A synchronous daffi call made from
  that loop before then (``g.wait_process(...)``, ``g.call.f() & FG``, as daffi 2 programs
  do) starts the core at once in a background thread on the same library instead, as daffi 2
  ran it (:meth:`Runtime.ensure_started_sync`).

The bridge (:class:`daffi._loop_bridge.LoopBridge`, its base: ``blocking``, ``run_on_loop``,
``spawn``) runs coroutines on that loop from any thread or loop. An error that ends the core is kept
(:meth:`LoopBridge.crashed`) and raised by later calls as the cause of their error.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import anyio.abc
from anyio.from_thread import BlockingPortal

from daffi._components import Components
from daffi._context import Target, current_var, forget, remember
from daffi._crossloop import Portal, spawn_in_running_loop
from daffi._link import cancelled_from_outside
from daffi._loop_bridge import Host, LoopBridge, ThreadStarted
from daffi._node import Node
from daffi._settings import Configured, Hook
from daffi.exceptions import GlobalContextError

if TYPE_CHECKING:
    from daffi._controller import Controller
    from daffi._schedule_host import ScheduleReports

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["Owner", "Runtime"]

logger = logging.getLogger("daffi.global")

T = TypeVar("T")


class Owner(Configured, Target, Protocol):
    """The Global a runtime runs: its settings, and what its hooks and fetchers are given."""


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Runtime(LoopBridge):
    """Runs a Global's controller and node on an event loop, and lets any thread use it."""

    def __init__(self, owner: Owner, schedule_reports: ScheduleReports):
        self.owner = owner
        self.process_name = owner.process_name
        #: the library of the loop the core runs on in its own thread
        self.backend = owner.backend
        self.components = Components(owner, self._node_event, schedule_reports)
        self.portal: Portal | None = None
        self.loop_thread: int | None = None
        self.thread: threading.Thread | None = None
        self.stop_event: anyio.Event | None = None
        self.task_group: anyio.abc.TaskGroup | None = None
        self.done = threading.Event()
        self._start_lock = threading.Lock()
        self.started = False
        self.stopped = False
        self._in_loop: tuple[BlockingPortal, anyio.abc.TaskGroup] | None = None
        self._context_token: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._host: Host | None = None

    @property
    def node(self) -> Node | None:
        return self.components.node

    @property
    def controller(self) -> Controller | None:
        return self.components.controller

    def require_node(self) -> Node:
        return self.components.require_node()

    # ------------------------------------------------------------------ the async core

    async def run_core(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Run the controller and/or node until stopped, then say goodbye and unwind.

        Once started, the core is shielded from cancellations of the scopes around it: it
        ends when :meth:`stop` (or leaving ``async with``, which always happens, whatever
        ends the block) sets the stop event, so ``Bye`` is sent on every exit. An error in
        one of its tasks ends it too; it is kept in ``crash`` and raised by later calls
        (as their cause) and by :meth:`join`.
        """
        owner = self.owner
        # The core's tasks (and the threads they start) run with this Global as current:
        # get_g() in a callback returns the Global running it.
        current_var.set(owner)
        self.stop_event = anyio.Event()
        try:
            with anyio.CancelScope() as core_scope:
                async with anyio.create_task_group() as tg:
                    self.task_group = tg
                    try:
                        await self.components.start(tg)
                        self._unsubscribe = owner.registry.subscribe(self._registry_changed)
                        remember(owner)
                        core_scope.shield = True
                        self.started = True
                        task_status.started()
                        if owner.on_init is not None:
                            tg.start_soon(self._run_hook, owner.on_init, owner.process_name)
                        try:
                            await self.stop_event.wait()
                        except anyio.get_cancelled_exc_class():
                            if cancelled_from_outside():
                                self.stop_event.set()  # the loop is ending: leave as a stop
                            raise
                    finally:
                        # Not after a crash of one of its tasks (the stop event is not set
                        # then): peers must tell a crash from a clean leave.
                        if self.stop_event.is_set() or not self.started:
                            await self.components.goodbye()
                        tg.cancel_scope.cancel()
        except BaseException as exc:
            if self.started and not isinstance(exc, anyio.get_cancelled_exc_class()):
                self.crashed(_unwrap(exc))
            raise
        finally:
            self.stopped = True
            self.stop_event.set()  # wakes join_async() on this loop, whatever ended the core
            forget(owner, owner.process_name, self.stopped_error)
            if self._unsubscribe is not None:
                self._unsubscribe()
            self.task_group = None

    def _registry_changed(self) -> None:
        node, portal = self.node, self.portal
        if node is None or portal is None or self.stopped:
            return
        if threading.get_ident() == self.loop_thread:
            if self.task_group is not None:
                self.task_group.start_soon(node.advertise)
        else:
            with contextlib.suppress(RuntimeError):
                portal.start_task_soon(node.advertise)

    async def _node_event(self, name: str, joined: bool) -> None:
        owner = self.owner
        hook = owner.on_node_connect if joined else owner.on_node_disconnect
        if hook is not None and self.task_group is not None:
            self.task_group.start_soon(self._run_hook, hook, name)

    async def _run_hook(self, hook: Hook, name: str) -> None:
        owner = self.owner
        try:
            if inspect.iscoroutinefunction(hook):
                await hook(owner, name)
            else:
                # In a worker thread, so the hook may call blocking Global methods.
                result = await anyio.to_thread.run_sync(hook, owner, name, abandon_on_cancel=True)
                if inspect.isawaitable(result):
                    await result
        except Exception:
            logger.exception("hook %r failed for process %r", hook, name)

    # ------------------------------------------------------------------ starting

    def start_in_thread(self) -> None:
        """Start the core in a background thread of its own (if not started yet) and wait
        until it runs; raises what kept it from starting."""
        with self._start_lock:
            if self.started or self.thread is not None:
                return
            if self.stopped:
                raise GlobalContextError("this Global was stopped; create a new one")
            ready = threading.Event()
            failure: list[BaseException] = []

            async def main() -> None:
                async with Portal() as portal:
                    self.portal = portal
                    self.loop_thread = threading.get_ident()
                    try:
                        await self.run_core(task_status=ThreadStarted(ready))
                    finally:
                        await portal.stop(cancel_remaining=True)

            def target() -> None:
                try:
                    anyio.run(main, backend=self.backend)
                except BaseException as exc:
                    error = _unwrap(exc)
                    if ready.is_set():
                        # The constructor has returned: later calls and join() raise it.
                        self.crashed(error)
                    else:
                        failure.append(error)  # raised by the constructor
                finally:
                    forget(self.owner, self.owner.process_name, self.stopped_error)
                    self.stopped = True
                    self.done.set()
                    ready.set()

            self.thread = threading.Thread(
                target=target, name=f"daffi-{self.owner.process_name}", daemon=True
            )
            self.thread.start()
            ready.wait()
            if failure:
                self.thread.join()
                raise failure[0]
            atexit.register(self._stop_at_exit)

    def start_in_running_loop(self, library: str) -> None:
        """Constructed in a running loop of ``library``: bind a controller's address now,
        and run the core in a task of that loop, which starts when the constructor's caller
        first yields to the loop, unless ``async with`` has entered this Global by then."""
        self.backend = library
        self.components.bind_now()
        self._host = host = Host()
        self.loop_thread = threading.get_ident()
        spawn_in_running_loop(functools.partial(self._run_hosted, host))

    async def _run_hosted(self, host: Host) -> None:
        if not host.pending:
            return  # `async with` entered it, or a blocking call started it in a thread
        host.pending = False
        host.runs_core = True
        try:
            try:
                await self._enter()
            except BaseException as exc:
                if isinstance(exc, anyio.get_cancelled_exc_class()):
                    raise
                self.crashed(_unwrap(exc))
                return
            finally:
                if not self.started:
                    self.stopped = True
                    self.done.set()
                host.started.set()
                host.ready.set()
            stop_event = self.stop_event
            assert stop_event is not None
            if host.stop_requested:
                stop_event.set()
            try:
                await stop_event.wait()
            finally:
                # The loop ending (its main task returned) cancels this task: stop cleanly.
                with anyio.CancelScope(shield=True):
                    with contextlib.suppress(Exception):  # a crash was kept and logged
                        await self._exit_entered(None)
        finally:
            host.done.set()

    def ensure_started_sync(self) -> None:
        """Before a synchronous call: start the core in its thread if nothing runs it yet,
        or wait until the task of its loop has started it."""
        if self.started or self.stopped:
            return
        host = self._host
        if host is not None and host.pending and self.on_loop_thread():
            # Called from its loop before the loop ran the core (a daffi 2 program): run it
            # in a thread of its own, on the loop's library, where it can serve while this
            # call blocks the loop.
            host.pending = False
            self._host = None
            self.loop_thread = None
            host = None
        if host is None:
            self.start_in_thread()
            return
        if self.on_loop_thread():
            return  # its loop is starting it: the caller refuses to block that loop
        host.ready.wait()

    async def ensure_started(self) -> None:
        if not self.started and not self.stopped:
            host = self._host
            if host is None:
                await anyio.to_thread.run_sync(self.start_in_thread)
            elif self.on_loop_thread():
                await host.started.wait()
            else:
                await anyio.to_thread.run_sync(host.ready.wait)
        if self.stopped:
            raise self.stopped_error()

    async def enter(self) -> None:
        """Start in the caller's loop and task group (``async with``): what ``__aenter__``
        does, unless it already runs in its background thread or in a task of its loop."""
        host = self._host
        if host is not None:
            if host.pending:
                host.pending = False  # entered before its loop ran the task: run it here
            else:
                await self.ensure_started()
                return
        if self.started or self.thread is not None:
            return  # already running in its background thread
        await self._enter()

    async def _enter(self) -> None:
        portal = Portal()
        await portal.__aenter__()
        self.portal = portal
        self.loop_thread = threading.get_ident()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._in_loop = (portal, tg)
        try:
            await tg.start(self.run_core)
        except BaseException as exc:
            # Unwind daffi's task groups without feeding them the error (they would wrap it
            # in exception groups), then raise the error itself.
            with contextlib.suppress(BaseException):
                await self._leave_loop()
            raise _unwrap(exc) from None
        self._context_token = current_var.set(self.owner)

    async def _leave_loop(self) -> None:
        """Unwind what :meth:`enter` entered, innermost first.

        Plain try/finally rather than an ``AsyncExitStack``: when two exits raise the same
        cancellation exception, the exit stack links it to itself as its own ``__context__``,
        and asyncio then loops forever walking that chain.
        """
        in_loop, self._in_loop = self._in_loop, None
        if in_loop is None:
            return
        portal, tg = in_loop
        try:
            await tg.__aexit__(None, None, None)
        finally:
            try:
                # The portal's task group encloses the core's: stop it (cancelling calls in
                # flight from other threads) only after the core has said goodbye.
                await portal.stop(cancel_remaining=True)
            finally:
                try:
                    await portal.__aexit__(None, None, None)
                finally:
                    self.stopped = True
                    self.done.set()

    async def exit(self, exc: BaseException | None) -> None:
        """Leave ``async with`` (``exc``: what ended the body, if anything)."""
        host = self._host
        if self._in_loop is None or (host is not None and host.runs_core):
            await self.stop_async()
            return
        await self._exit_entered(exc)

    async def _exit_entered(self, exc: BaseException | None) -> None:
        """Leave what :meth:`_enter` entered, in the task that entered it."""
        if self._context_token is not None:
            current_var.reset(self._context_token)
            self._context_token = None
        if self.stop_event is not None:
            self.stop_event.set()
        # The body's exception is not fed to daffi's task groups: they would wrap it in
        # exception groups; it propagates unchanged once daffi has stopped. But a body
        # cancelled by daffi's own task group (its core crashed: the group cancels the task
        # that entered it) must not leak that cancellation: it gets the crash instead.
        cancelled = anyio.get_cancelled_exc_class()
        in_loop = self._in_loop
        ours = in_loop is not None and in_loop[1].cancel_scope.cancel_called
        body_error = None if ours and isinstance(exc, cancelled) else exc
        try:
            await self._leave_loop()
        except BaseException as error:
            if self.crash is None or (isinstance(error, cancelled) and not ours):
                raise
            if body_error is None:
                raise self.stopped_error() from self.crash
            # The body's own exception propagates; the crash was logged.
        if body_error is None and self.crash is not None:
            raise self.stopped_error() from self.crash

    # ------------------------------------------------------------------ stopping

    def _stop_before_start(self) -> bool:
        """A stop requested while the task of its loop has not started the core yet: the
        core will not start (or is stopped as soon as it has). Whether that was the case."""
        host = self._host
        if host is None or host.started.is_set() or not (host.pending or host.runs_core):
            return False
        if host.pending:
            host.pending = False
            self.components.release()
            self.stopped = True
            self.done.set()
            host.ready.set()
            host.started.set()
            host.done.set()
        else:
            host.stop_requested = True
        return True

    def stop(self) -> None:
        if self._stop_before_start():
            return
        if self.stopped or self.stop_event is None:
            self.stopped = True
            return
        if threading.get_ident() == self.loop_thread:
            self.stop_event.set()
            return
        portal = self.portal
        if portal is not None:
            with contextlib.suppress(RuntimeError):
                portal.call(self.stop_event.set)
        if self.thread is not None:
            self.thread.join(timeout=5)
            atexit.unregister(self._stop_at_exit)
        else:
            self.done.wait(timeout=5)

    async def stop_async(self) -> None:
        host = self._host
        if self._stop_before_start():
            if host is not None and self.on_loop_thread():
                await host.done.wait()
            return
        if self.stopped or self.stop_event is None:
            self.stopped = True
            return
        if threading.get_ident() == self.loop_thread:
            self.stop_event.set()
            if host is not None and host.runs_core:
                await host.done.wait()  # the task of the loop unwinds the core
            # else leaving `async with` completes the stop
            return
        await anyio.to_thread.run_sync(self.stop)

    def _stop_at_exit(self) -> None:
        try:
            self.stop()
        except Exception:  # at exit nothing is left to report to
            logger.debug("error while stopping at exit", exc_info=True)

    def join(self) -> None:
        self.ensure_started_sync()
        self.check_blocking("join", "join_async")
        self.done.wait()
        self.raise_crash()

    async def join_async(self) -> None:
        if not self.started and not self.stopped:
            await self.ensure_started()
        host = self._host
        if host is not None and host.runs_core and self.on_loop_thread():
            await host.done.wait()
        elif threading.get_ident() == self.loop_thread and self.stop_event is not None:
            await self.stop_event.wait()
        else:
            await anyio.to_thread.run_sync(self.done.wait, abandon_on_cancel=True)
        self.raise_crash()
