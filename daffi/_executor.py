"""The one executor for ``def`` callbacks.

Every run of a plain ``def`` callback on a node goes through :class:`Executor`, whichever
thread runs it: a call handed over by the node's loop (a thread of the executor's own pool),
a call read by the node's work channel or by a served channel in the controller's process
(that thread runs it itself), a schedule's fire, a batch of stream items or of a sync
generator's values (a pool thread, awaited from the loop with :meth:`Executor.run_async`).
So all of them share one set of rules:

- **Slots.** At most ``workers`` runs at once. A run that finds every slot taken waits in one
  first-come first-served queue (or, for a thread that can hand the call to the loop instead,
  does not wait at all).
- **Chains.** A blocking call made from inside a ``def`` callback carries the id of its
  *chain* (``Call.chain``). A call of a chain that already holds a slot here (its thread is
  blocked waiting for this very call, through however many nodes) runs on that slot instead
  of queueing for another: a chain never waits for a slot it holds itself, so ``A -> B -> A``
  nesting deeper than ``workers`` completes.
- **Deadlines and cancel.** A :class:`Job` is made when its call arrives; its deadline is the
  call's remaining time counted from then, so time spent queued counts. A job cancelled or
  past its deadline before it starts never starts; one that ends after either has its result
  dropped (logged once, at debug level). A running ``def`` cannot be interrupted.
- **Threads in the task tree.** :meth:`Executor.run` is a task of the node's task group. The
  executor's threads (and threads started through :meth:`Executor.spawn`) end when it ends:
  it waits up to ``grace`` seconds for callbacks still running, then names them in a warning.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import anyio

from daffi._crossloop import wait_future
from daffi._jobs import Job, Outcome
from daffi._threads import ThreadGroup, wait_bounded

__all__ = ["DEFAULT_GRACE", "Executor", "Job", "Outcome", "current_chain"]

logger = logging.getLogger("daffi.node")

#: Seconds a stopping node waits for ``def`` callbacks still running before it warns.
DEFAULT_GRACE: Final = 5.0

_thread_state = threading.local()


def current_chain() -> str:
    """The chain of the ``def`` callback this thread runs ('' outside one).

    A blocking call made now carries it, so the callee lends it the slot this thread holds.
    """
    job: Job | None = getattr(_thread_state, "job", None)
    if job is None or job.executor is None:
        return ""
    return job.executor._chain_of(job)


_BUSY: Final = Outcome("busy")
_CLOSED: Final = Outcome("closed")


class _Waiter:
    """A thread waiting in the queue for a slot (see :meth:`Executor.run_here`)."""

    __slots__ = ("granted", "job")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.granted = False


_Task = tuple[Job, Callable[..., Any], tuple[Any, ...], Callable[[Outcome], None]]


class Executor:
    """Runs ``def`` callbacks in at most ``workers`` slots (see the module docstring).

    Args:
        workers: how many runs at once.
        name: names the pool's threads and chains (the node's name, unique in a system).
        grace: seconds :meth:`run` waits, when it ends, for callbacks still running.
    """

    def __init__(self, workers: int, *, name: str, grace: float = DEFAULT_GRACE) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.name = name
        self.grace = grace
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # for threads waiting for a slot
        # Guarded by _lock:
        self._busy = 0  # slots taken
        self._queue: collections.deque[_Task | _Waiter] = collections.deque()
        # Tasks for the pool threads (a SimpleQueue: handing a task over wakes one thread
        # without a Python-level condition, the cheapest hand-off there is).
        self._ready: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._idle = 0  # pool threads waiting for a task
        self._jobs: dict[tuple[str, int], Job] = {}  # calls queued or running, by key
        self._running: set[Job] = set()
        self._chains: dict[str, int] = {}  # chain -> its runs here
        self._closed = False
        self._chain_ids = itertools.count(1)
        #: the pool's threads and those started through spawn()
        self._threads = ThreadGroup()
        self._thread_ids = itertools.count()

    # ------------------------------------------------------------------ bookkeeping

    @property
    def load(self) -> int:
        """Calls queued or running (for ``max_concurrent_calls``)."""
        return len(self._jobs)

    def held_by_abandoned(self) -> list[str]:
        """The callbacks holding every slot when all of them run calls whose callers gave up
        (cancelled, or past their deadline): a new run would wait for them in vain. Empty
        when a slot is free or one of them still has a caller."""
        if self._busy < self.workers:
            return []  # a hint read without the lock, for the common case; checked below
        with self._lock:
            if self._busy < self.workers:
                return []
            now = time.monotonic()
            holders = [job for job in self._running if not job.lent]
            if len(holders) < self.workers or not all(
                job.cancelled or (job.deadline is not None and job.deadline < now)
                for job in holders
            ):
                return []
            return sorted({job.name for job in holders})

    @property
    def running(self) -> int:
        """Runs in progress (lent runs included)."""
        return len(self._running)

    def cancel(self, key: tuple[str, int]) -> bool:
        """The caller of call ``key`` gave up: it does not start; if running, its result is
        dropped. Returns whether such a call was queued or running here."""
        with self._lock:
            job = self._jobs.pop(key, None)
            if job is None:
                return False
            job.cancelled = True
            self._unqueue(job)
        return True

    def _unqueue(self, job: Job) -> None:
        # With the lock held: a cancelled ``job`` leaves the queue, if it waits there.
        for item in self._queue:
            if (item.job if isinstance(item, _Waiter) else item[0]) is job:
                if isinstance(item, _Waiter):
                    self._changed.notify_all()  # it leaves the queue itself
                else:
                    self._queue.remove(item)
                    self._drop_unstarted(job, item)
                return

    def _register(self, job: Job) -> None:
        # With the lock held.
        job.executor = self
        if job.key is not None:
            self._jobs[job.key] = job

    def _chain_of(self, job: Job) -> str:
        with self._lock:
            if not job.chain:
                job.chain = f"{self.name}/{next(self._chain_ids)}"
                self._chains[job.chain] = self._chains.get(job.chain, 0) + 1
            return job.chain

    def _take_slot(self, job: Job) -> bool:
        """Take a slot for ``job`` now if it may run (with the lock held)."""
        if job.chain and self._chains.get(job.chain):
            job.lent = True
        elif self._busy < self.workers and not self._queue:
            self._busy += 1
        else:
            return False
        return True

    def _started(self, job: Job) -> None:
        # With the lock held, once ``job`` has its slot.
        self._running.add(job)
        if job.chain:
            self._chains[job.chain] = self._chains.get(job.chain, 0) + 1

    def _finished(self, job: Job) -> None:
        with self._lock:
            self._running.discard(job)
            if job.key is not None and self._jobs.get(job.key) is job:
                del self._jobs[job.key]
            if job.chain:
                left = self._chains[job.chain] - 1
                if left:
                    self._chains[job.chain] = left
                else:
                    del self._chains[job.chain]
            if not job.lent:
                self._busy -= 1
                self._grant_next()

    def _grant_next(self) -> None:
        # With the lock held and a slot just freed: give it to the first live entry queued.
        while self._queue and self._busy < self.workers:
            item = self._queue.popleft()
            job = item.job if isinstance(item, _Waiter) else item[0]
            if job.cancelled or job.expired:
                self._drop_unstarted(job, item)
                continue
            self._busy += 1
            self._started(job)
            if isinstance(item, _Waiter):
                item.granted = True
                self._changed.notify_all()
            else:
                self._dispatch(item)

    def _drop_unstarted(self, job: Job, item: _Task | _Waiter) -> None:
        # With the lock held: ``job`` leaves the queue without running.
        if job.key is not None and self._jobs.get(job.key) is job:
            del self._jobs[job.key]
        status = "cancelled" if job.cancelled else "late"
        logger.debug("node %r: %s %s before it started; not run", self.name, job.describe(), status)
        if isinstance(item, _Waiter):
            self._changed.notify_all()
        else:
            self._finish_soon(item[3], Outcome(status))

    def _finish_soon(self, done: Callable[[Outcome], None], outcome: Outcome) -> None:
        # ``done`` must not run with the lock held: a pool thread calls it.
        self._dispatch((Job(None, "done"), _call_done, (done, outcome), lambda _: None))

    # ------------------------------------------------------------------ running

    def _execute(self, job: Job, func: Callable[..., Any], args: tuple[Any, ...]) -> Outcome:
        """Run ``func`` for ``job`` (which holds its slot) in this thread; then free it."""
        outer = getattr(_thread_state, "job", None)
        _thread_state.job = job
        try:
            value = func(*args)
            outcome = Outcome("ok", value)
        except BaseException as exc:
            # Even SystemExit or KeyboardInterrupt raised by a callback run in a thread is
            # the call's failure: signals only reach the main thread.
            outcome = Outcome("error", error=exc)
        finally:
            _thread_state.job = outer
            self._finished(job)
        if job.cancelled or job.expired:
            logger.debug(
                "node %r: %s ended after it was %s; result dropped",
                self.name,
                job.describe(),
                "cancelled" if job.cancelled else "past its deadline",
            )
            return Outcome("cancelled" if job.cancelled else "late", outcome.value, outcome.error)
        return outcome

    def run_here(
        self, job: Job, func: Callable[..., Any], *args: Any, wait: bool = True
    ) -> Outcome:
        """Run ``func(*args)`` for ``job`` in the calling thread, in one of the slots.

        With ``wait``, a job finding no free slot queues for one (until it is cancelled or
        its deadline passes); without, it returns the ``"busy"`` outcome at once and nothing
        is kept of it.
        """
        with self._lock:
            if self._closed:
                return _CLOSED
            if job.cancelled or job.expired:
                return Outcome("cancelled" if job.cancelled else "late")
            if not self._take_slot(job):
                if not wait:
                    return _BUSY
                self._register(job)
                waiter = _Waiter(job)
                self._queue.append(waiter)
                while not waiter.granted:
                    if self._closed or job.cancelled or job.expired:
                        if waiter in self._queue:
                            self._queue.remove(waiter)
                        if job.key is not None and self._jobs.get(job.key) is job:
                            del self._jobs[job.key]
                        if self._closed:
                            return _CLOSED
                        return Outcome("cancelled" if job.cancelled else "late")
                    left = None if job.deadline is None else job.deadline - time.monotonic()
                    self._changed.wait(None if left is None else max(left, 0.0) + 0.001)
            else:
                self._register(job)
                self._started(job)
        return self._execute(job, func, args)

    def submit(
        self,
        job: Job,
        func: Callable[..., Any],
        *args: Any,
        done: Callable[[Outcome], None],
    ) -> None:
        """Run ``func(*args)`` for ``job`` in a pool thread when a slot is free; then call
        ``done(outcome)`` in that thread.

        Raises:
            RuntimeError: the executor has stopped.
        """
        task: _Task = (job, func, args, done)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"node {self.name!r} is stopping")
            self._register(job)
            if self._take_slot(job):
                self._started(job)
                self._dispatch(task)
            else:
                self._queue.append(task)

    async def run_async(self, job: Job, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` in a pool thread, in one of the slots, and await its value.

        Cancelling the wait cancels ``job``: it does not start, or its result is dropped.

        Raises:
            Whatever ``func`` raised; ``RuntimeError`` if the executor has stopped.
        """
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def done(outcome: Outcome) -> None:
            # The waiter may have given up (and cancelled the future) meanwhile.
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                if outcome.status == "ok":
                    future.set_result(outcome.value)
                elif outcome.error is not None:
                    future.set_exception(outcome.error)
                else:
                    future.set_exception(RuntimeError(f"{job.describe()} was {outcome.status}"))

        self.submit(job, func, *args, done=done)
        try:
            return await wait_future(future)
        except BaseException:
            if not future.done() or future.cancelled():
                with self._lock:
                    job.cancelled = True
                    self._unqueue(job)
            raise

    # ------------------------------------------------------------------ pool threads

    def _dispatch(self, task: _Task | None) -> None:
        # With the lock held: hand ``task`` to an idle pool thread, or start one.
        if self._idle:
            self._idle -= 1
        else:
            self._threads.start(self._work, f"daffi-{self.name}-{next(self._thread_ids)}")
        self._ready.put(task)

    def _work(self) -> None:
        while True:
            task = self._ready.get()
            if task is None:
                return
            job, func, args, done = task
            try:
                if func is _call_done:
                    func(*args)
                else:
                    done(self._execute(job, func, args))
            except BaseException:  # a completion must never kill its thread
                logger.exception("node %r: handling the end of %s failed", self.name, job.name)
            with self._lock:  # idle again
                if self._closed:
                    return
                self._idle += 1

    def spawn(self, target: Callable[[], None], name: str) -> bool:
        """Start a thread that :meth:`run` joins when it ends; False if none can be started
        (the executor stopped, or the system has no thread to give)."""
        with self._lock:
            if self._closed:
                return False
            try:
                self._threads.start(target, name)
            except RuntimeError as exc:  # "can't start new thread"
                logger.warning("node %r: cannot start thread %s: %s", self.name, name, exc)
                return False
        return True

    # ------------------------------------------------------------------ lifetime

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the executor's threads until cancelled; then stop them (see :meth:`close`)."""
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self.close()

    def _all_ended(self) -> bool:
        """No callback runs here any more and every thread the executor started ended."""
        with self._lock:
            if self._running:
                return False
        return not self._threads.others()

    async def close(self) -> None:
        """Stop: nothing new starts, queued jobs are dropped, idle threads end; wait up to
        ``grace`` seconds for the rest, then warn about callbacks still running."""
        with self._lock:
            self._closed = True
            dropped = [item for item in self._queue if not isinstance(item, _Waiter)]
            self._queue.clear()
            for _ in range(len(self._threads)):
                self._ready.put(None)
            self._changed.notify_all()
        for job, _, _, done in dropped:
            job.cancelled = True
            try:
                done(_CLOSED)
            except Exception:
                logger.exception("node %r: handling the end of %s failed", self.name, job.name)
        if await wait_bounded(self._all_ended, self.grace):
            return
        threads = self._threads.others()
        with self._lock:
            running = [job.describe() for job in self._running]
        if running:
            logger.warning(
                "node %r stopped while def callbacks were still running after %.1f s: %s; "
                "their results are dropped",
                self.name,
                self.grace,
                ", ".join(sorted(running)),
            )
        else:
            logger.warning(
                "node %r stopped; threads still ending after %.1f s: %s",
                self.name,
                self.grace,
                ", ".join(sorted(t.name for t in threads)),
            )


def _call_done(done: Callable[[Outcome], None], outcome: Outcome) -> None:
    done(outcome)
