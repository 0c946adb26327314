"""How a Global's core is reached from any thread or loop, and the tasks that host it.

:class:`LoopBridge` (the base of :class:`daffi._runtime.Runtime`) runs coroutines on daffi's
loop from any thread or loop (:meth:`LoopBridge.blocking`, :meth:`LoopBridge.run_on_loop`,
:meth:`LoopBridge.spawn`). :class:`ThreadStarted` and :class:`Host` are the start-up state of
the two ways the core runs outside ``async with``: in a thread of its own, or in a task of
the loop the Global was created in.
"""

from __future__ import annotations

import abc
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc

from daffi._crossloop import Portal, loop_call_soon, run_in_portal
from daffi._outgoing import outgoing_errors
from daffi.exceptions import GlobalContextError

__all__ = ["Host", "LoopBridge", "ThreadStarted"]

T = TypeVar("T")

logger = logging.getLogger("daffi.global")


class ThreadStarted:
    """A task status that wakes the thread that started the background loop."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def started(self, value: object = None) -> None:
        self.event.set()


class Host:
    """The task that runs a Global's core in the loop the Global was created in."""

    def __init__(self) -> None:
        #: set once the core runs (or failed to start): for the loop's own tasks
        self.started = anyio.Event()
        #: the same, for other threads
        self.ready = threading.Event()
        #: set once the core has stopped and its task has unwound everything
        self.done = anyio.Event()
        #: whether the task still has to start the core (``async with`` may do it first)
        self.pending = True
        #: whether the task runs the core (else ``async with`` does)
        self.runs_core = False
        #: stop() was called while the task was starting the core
        self.stop_requested = False


class LoopBridge(abc.ABC):
    """Runs coroutines on daffi's loop from any thread or loop (the runtime's state: its
    loop's thread, its portal, its task group, whether it runs)."""

    loop_thread: int | None
    portal: Portal | None
    task_group: anyio.abc.TaskGroup | None
    stopped: bool
    #: the Global's process_name, for messages
    process_name: str
    #: the error that stopped the core, if one did (see :meth:`crashed`)
    crash: BaseException | None = None

    @abc.abstractmethod
    def ensure_started_sync(self) -> None:
        """Before a synchronous call: make sure the core runs (or raise why not)."""

    @abc.abstractmethod
    async def ensure_started(self) -> None:
        """Before an awaited call: make sure the core runs (or raise why not)."""

    def crashed(self, error: BaseException) -> None:
        """Keep the error that ended the core (the first one) and log it."""
        if self.crash is not None:
            return
        self.crash = error
        logger.critical(
            "daffi %r stopped because of an error; later calls raise GlobalContextError "
            "(caused by it) and join() raises it",
            self.process_name,
            exc_info=error,
        )

    def stopped_error(self) -> GlobalContextError:
        """The error raised by a call made after this Global stopped (caused by the crash
        that stopped it, if one did)."""
        crash = self.crash
        if crash is None:
            return GlobalContextError(
                f"Global {self.process_name!r} can no longer make or accept remote calls "
                "because it was stopped; create a new daffi.Global(...) (or enter "
                "`async with Global(...)`) to call fetchers again"
            )
        error = GlobalContextError(
            f"Global {self.process_name!r} stopped because of an error: {crash!r}"
        )
        error.__cause__ = crash
        return error

    def raise_crash(self) -> None:
        if self.crash is not None:
            raise self.stopped_error() from self.crash

    def on_loop_thread(self) -> bool:
        return self.loop_thread is not None and threading.get_ident() == self.loop_thread

    def check_blocking(self, method: str, twin: str) -> None:
        if self.on_loop_thread():
            raise GlobalContextError(
                f"{method}() blocks, and it was called from the thread that runs daffi's event "
                f"loop, where it would deadlock; use `await g.{twin}(...)` instead"
            )

    @outgoing_errors
    def blocking(self, method: str, twin: str, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``func(*args)`` on daffi's loop and block until it returns (starting the
        runtime in its thread first if needed); ``method`` and ``twin`` name the blocking
        method and its async twin in the error raised on the loop's own thread."""
        self.ensure_started_sync()
        self.check_blocking(method, twin)
        portal = self.portal
        if self.stopped or portal is None:
            raise self.stopped_error()
        try:
            return portal.call(func, *args)
        except RuntimeError as exc:
            if "portal is not running" in str(exc) or "event loop" in str(exc):
                error = self.stopped_error()
                raise error from error.__cause__
            raise

    @outgoing_errors
    async def run_on_loop(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``func(*args)`` run on daffi's loop, from any loop (asyncio or trio)."""
        await self.ensure_started()
        if threading.get_ident() == self.loop_thread:
            return await func(*args)
        portal = self.portal
        assert portal is not None
        return await run_in_portal(portal, func, *args)

    def spawn(self, func: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``func(*args)`` on daffi's loop in the background; its future, from any thread.

        The future stays cancellable while the task runs: cancelling it cancels the task
        (and so the remote call it makes).
        """
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        async def fill() -> None:
            with anyio.CancelScope() as scope:
                if fut.cancelled():
                    return
                call_soon = loop_call_soon()

                def on_done(done: concurrent.futures.Future[T]) -> None:
                    if done.cancelled():
                        call_soon(scope.cancel)

                fut.add_done_callback(on_done)
                try:
                    result = await func(*args)
                except BaseException as exc:
                    if not fut.done():
                        fut.set_exception(
                            exc if isinstance(exc, Exception) else self.stopped_error()
                        )
                    if not isinstance(exc, Exception):
                        raise
                    return
                if not fut.done():
                    fut.set_result(result)

        if self.on_loop_thread():
            if self.task_group is None:
                raise self.stopped_error()
            self.task_group.start_soon(fill)
        else:
            portal = self.portal
            if portal is None or self.stopped:
                raise self.stopped_error()
            portal.start_task_soon(fill)
        return fut
