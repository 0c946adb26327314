"""What non-blocking calls return: ``AsyncResult`` (BG) and ``ScheduledTask`` (PERIOD)."""

from __future__ import annotations

import builtins
import concurrent.futures
import contextlib
import time
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import anyio
import msgspec

from daffi._crossloop import wait_future
from daffi._outgoing import outgoing_errors
from daffi.exceptions import (
    DaffiError,
    ErrorInfo,
    GlobalContextError,
    TimeoutError,
    exception_from_error_info,
)

__all__ = [
    "AsyncResult",
    "Blocking",
    "Bridge",
    "ScheduledTask",
    "ScheduledTasks",
    "SchedulerTask",
    "Schedules",
]

T = TypeVar("T")
if TYPE_CHECKING:
    # A bare `AsyncResult` (as daffi's own code writes it) is `AsyncResult[Any]`.
    from typing_extensions import TypeVar as _TypeVarWithDefault

    R = _TypeVarWithDefault("R", default=Any)
else:
    R = TypeVar("R")


class Blocking(Protocol):
    """Refuses a blocking wait on the thread of daffi's own loop (``daffi._runtime.Runtime``)."""

    def check_blocking(self, method: str, twin: str) -> None: ...


class Bridge(Blocking, Protocol):
    """Runs coroutines on daffi's loop from anywhere (``daffi._runtime.Runtime``)."""

    def on_loop_thread(self) -> bool: ...

    def spawn(
        self, func: Callable[..., Awaitable[T]], *args: Any
    ) -> concurrent.futures.Future[T]: ...

    def blocking(
        self, method: str, twin: str, func: Callable[..., Awaitable[T]], *args: Any
    ) -> T: ...

    async def run_on_loop(self, func: Callable[..., Awaitable[T]], *args: Any) -> T: ...


class Schedules(Protocol):
    """What a :class:`ScheduledTask` cancels through (``daffi._execution.Execution``)."""

    @property
    def runtime(self) -> Bridge: ...

    async def cancel_schedule(self, receiver: str, schedule_uuid: str) -> bool: ...

    async def schedule_status(self, receiver: str, schedule_uuid: str) -> dict[str, Any] | None:
        """The executor's listing of one schedule (None: not there, or the executor gone)."""
        ...

    async def cancel_held_schedule(self, receiver: str, schedule_uuid: str) -> bool:
        """Like :meth:`cancel_schedule`, but an executor that has gone is no error: False,
        and a log line."""
        ...


class AsyncResult(Generic[R]):
    """The future result of a ``BG`` call (``AsyncResult[T]``: the call returns a ``T``).

    Read it with :meth:`get` (blocking, any thread) or ``await`` :meth:`get_async` (any
    asyncio or trio loop), as often as you like: every read returns the same value or raises
    the same error. ``await result`` works too.
    """

    def __init__(self, future: concurrent.futures.Future[Any], owner: Blocking, func_name: str):
        self._future: concurrent.futures.Future[R] = future
        self._owner = owner
        self.func_name = func_name

    @property
    def ready(self) -> bool:
        """Whether the call has finished (successfully or not)."""
        return self._future.done()

    @property
    def error(self) -> BaseException | None:
        """The call's exception once it failed, else ``None`` (also while it runs)."""
        if not self._future.done() or self._future.cancelled():
            return None
        return self._future.exception()

    @outgoing_errors
    def get(self, timeout: float | None = None) -> R:
        """Block until the result is there and return it (or raise the call's error).

        Raises:
            TimeoutError: not finished within ``timeout`` seconds (the call keeps running).
            GlobalContextError: called from the thread of daffi's own event loop.
        """
        self._owner.check_blocking("AsyncResult.get", "get_async")
        try:
            return self._future.result(timeout)
        except concurrent.futures.CancelledError:
            raise GlobalContextError(f"the call to {self.func_name!r} was cancelled") from None
        except builtins.TimeoutError:
            if self._future.done():
                raise  # the call's own timeout
            raise TimeoutError(
                f"the result of {self.func_name!r} was not ready after {timeout} s"
            ) from None

    @outgoing_errors
    async def get_async(self, timeout: float | None = None) -> R:
        """Wait for the result without blocking the loop (asyncio or trio).

        Cancelling the wait does not cancel the call.

        Raises:
            TimeoutError: not finished within ``timeout`` seconds (the call keeps running).
        """
        with anyio.move_on_after(timeout) as scope:
            try:
                return await wait_future(self._future, cancel_on_abort=False)
            except concurrent.futures.CancelledError:
                raise GlobalContextError(f"the call to {self.func_name!r} was cancelled") from None
        assert scope.cancelled_caught
        raise TimeoutError(f"the result of {self.func_name!r} was not ready after {timeout} s")

    def cancel(self) -> bool:
        """Cancel the call if it is still running (the remote execution is cancelled too)."""
        return self._future.cancel()

    def __await__(self) -> Generator[Any, None, R]:
        return self.get_async().__await__()

    def __repr__(self) -> str:
        state = "ready" if self.ready else "pending"
        return f"<AsyncResult {self.func_name!r} {state}>"


class ScheduledTask:
    """A schedule running on a remote node (what a ``PERIOD`` call returns).

    Attributes:
        uuid: identifies the schedule on its executor.
        func_name: the scheduled callback.
        receiver: the executor's process name.
        last_error: the last error a scheduled run reported back while this process was
            connected (``None`` if none).
        cancelled_by: read-only; the process name of whoever cancelled the schedule: this
            process when it cancelled it (:meth:`cancel`, :meth:`cancel_async`, or by uuid),
            or another process, as the executor reported it (reported only while this
            process was connected). ``None`` until then.
        cancelled_at: read-only; when the schedule was cancelled, as a POSIX timestamp taken
            on the executor (``time.time()`` there); ``None`` until :attr:`cancelled_by` is
            known.
        next_run, runs, skipped: what the executor said at the last :meth:`refresh`: the
            next run's POSIX time (None: no run to come), the runs so far, the times skipped
            (``None`` before the first refresh). A refresh also sets :attr:`last_error` to
            the last error the executor keeps for the schedule, if any.
        durable: the executor keeps the schedule in its store (``PERIOD(durable=True)``).
    """

    def __init__(
        self,
        uuid: str,
        func_name: str,
        receiver: str,
        owner: Schedules,
        *,
        last_fire: float | None = None,
        durable: bool = False,
    ) -> None:
        self.uuid = uuid
        self.durable = durable
        self.func_name = func_name
        self.receiver = receiver
        self.last_error: DaffiError | None = None
        self.next_run: float | None = None
        self.runs: int | None = None
        self.skipped: int | None = None
        self._owner = owner
        self._cancel_requested = False
        #: an ``at_time`` schedule's last time (POSIX); None: it has no last one (interval)
        self._last_fire = last_fire
        # (cancelled_by, cancelled_at), set once: one reference, so a reader in another
        # thread never sees one without the other.
        self._cancelled: tuple[str, float] | None = None

    @property
    def cancelled_by(self) -> str | None:
        """The process that cancelled the schedule, or ``None`` (see the class docstring)."""
        cancelled = self._cancelled
        return None if cancelled is None else cancelled[0]

    @property
    def cancelled_at(self) -> float | None:
        """When the schedule was cancelled (POSIX timestamp on the executor), or ``None``."""
        cancelled = self._cancelled
        return None if cancelled is None else cancelled[1]

    def _mark_cancelled(self, by: str, at: float) -> bool:
        """Record who cancelled the schedule, and when; the first record stays (a schedule
        is cancelled once). Returns whether this one was recorded.

        Called on daffi's loop only (:class:`ScheduledTasks`), so the check and the set are
        one step; other threads only read.
        """
        if self._cancelled is not None:
            return False
        self._cancelled = (by, at)
        self._cancel_requested = True
        return True

    def cancel(self) -> bool:
        """Cancel the schedule: no further runs; an async run in progress is interrupted.

        Callable from any thread and never deadlocks. Returns whether this call cancelled
        something: False for a schedule that was cancelled already, that has finished (its
        last ``at_time`` has run), or whose executor has gone (then a line is logged). From
        the thread of daffi's own event loop (``async with`` apps) it cannot wait for the
        executor: it sends the request and returns False if this handle knows the schedule
        is over (cancelled already, or an ``at_time`` schedule whose last time passed more
        than a second ago), else True; ``await cancel_async()`` gives the executor's answer.
        """
        owner = self._owner
        runtime = owner.runtime
        if runtime.on_loop_thread():
            was_active = not self._cancel_requested and not self._finished()
            self._cancel_requested = True
            runtime.spawn(owner.cancel_held_schedule, self.receiver, self.uuid)
            return was_active
        cancelled: bool = runtime.blocking(
            "ScheduledTask.cancel",
            "cancel_async",
            owner.cancel_held_schedule,
            self.receiver,
            self.uuid,
        )
        self._cancel_requested = True
        return cancelled

    async def cancel_async(self) -> bool:
        """Cancel the schedule; returns whether the executor had it active (False, with a
        log line, when the executor has gone)."""
        owner = self._owner
        cancelled: bool = await owner.runtime.run_on_loop(
            owner.cancel_held_schedule, self.receiver, self.uuid
        )
        self._cancel_requested = True
        return cancelled

    def refresh(self) -> bool:
        """Fetch :attr:`next_run`, :attr:`runs`, :attr:`skipped` and :attr:`last_error`
        from the executor;
        returns whether the schedule is still there (False: it ended, was cancelled, or the
        executor has gone; :attr:`next_run` is then None). Blocks: from daffi's own loop,
        use :meth:`refresh_async`."""
        owner = self._owner
        status: dict[str, Any] | None = owner.runtime.blocking(
            "ScheduledTask.refresh",
            "refresh_async",
            owner.schedule_status,
            self.receiver,
            self.uuid,
        )
        return self._update(status)

    async def refresh_async(self) -> bool:
        """Async twin of :meth:`refresh`."""
        owner = self._owner
        status: dict[str, Any] | None = await owner.runtime.run_on_loop(
            owner.schedule_status, self.receiver, self.uuid
        )
        return self._update(status)

    def _update(self, status: dict[str, Any] | None) -> bool:
        if status is None:
            self.next_run = None
            return False
        next_run = status.get("next_run")
        self.next_run = float(next_run) if isinstance(next_run, int | float) else None
        self.runs = int(status.get("runs", 0))
        self.skipped = int(status.get("skipped", 0))
        info = status.get("last_error_info")
        if info is not None:
            with contextlib.suppress(msgspec.ValidationError):
                self.last_error = exception_from_error_info(msgspec.convert(info, ErrorInfo))
        return True

    def _finished(self) -> bool:
        # An at_time schedule whose last time passed: its last run has started (within the
        # second of slack a busy executor may need).
        return self._last_fire is not None and time.time() > self._last_fire + 1.0

    # daffi 2 compatibility: get() returned the task itself.
    def get(self, timeout: float | None = None) -> ScheduledTask:
        return self

    async def get_async(self, timeout: float | None = None) -> ScheduledTask:
        return self

    def __repr__(self) -> str:
        return f"<ScheduledTask {self.func_name!r} uuid={self.uuid} receiver={self.receiver!r}>"


#: The daffi 2 name of :class:`ScheduledTask`.
SchedulerTask = ScheduledTask


class ScheduledTasks:
    """The schedules started from this process whose handles are still held (weakly): an
    error a scheduled run reports back lands on its handle's ``last_error``, and a cancel
    on its ``cancelled_by`` and ``cancelled_at``."""

    def __init__(self) -> None:
        self._tasks: weakref.WeakValueDictionary[str, ScheduledTask] = weakref.WeakValueDictionary()

    def add(self, task: ScheduledTask) -> None:
        self._tasks[task.uuid] = task

    def failed(self, schedule_uuid: str, executor: str, error: DaffiError) -> bool:
        """Record that a run of schedule ``schedule_uuid`` failed on ``executor``, with
        ``error``; only the executor a handle points at speaks for its schedule. Returns
        whether a handle was updated."""
        task = self._tasks.get(schedule_uuid)
        if task is None or task.receiver != executor:
            return False
        task.last_error = error
        return True

    def cancelled(self, schedule_uuid: str, executor: str, by: str, at: float) -> bool:
        """Record that process ``by`` cancelled schedule ``schedule_uuid`` at ``at`` (a POSIX
        timestamp), as ``executor`` says.

        Only the executor a handle points at speaks for its schedule: a report about a
        schedule this process has no handle for, or from any other process, changes
        nothing. Returns whether a handle was updated.
        """
        task = self._tasks.get(schedule_uuid)
        if task is None or task.receiver != executor:
            return False
        return task._mark_cancelled(by, at)
