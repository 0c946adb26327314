"""A small pool of daemon worker threads for sync callbacks.

Daemon threads on purpose: a sync callback still running when the interpreter exits must not
keep the process alive (``concurrent.futures`` joins its workers at exit). Threads start
lazily, up to ``size``; jobs beyond that wait in the queue.

Other threads may run jobs of the same kind themselves (a call channel's thread runs a
``def`` callback it received): they :meth:`~WorkerPool.claim` one of the ``size`` slots
first, so at most ``size`` jobs run at once in all.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["WorkerPool"]

logger = logging.getLogger("daffi.node")

_STOP = None


class WorkerPool:
    """Run jobs in at most ``size`` daemon threads."""

    def __init__(self, size: int, name: str = "daffi-worker") -> None:
        self.size = size
        self.name = name
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False
        # Jobs running, in the pool's threads or claimed by other threads; guarded by _lock.
        self._running = 0
        self._slot_free = threading.Condition(self._lock)

    def submit(self, func: Callable[..., Any], *args: Any) -> None:
        """Queue ``func(*args)``; exceptions it raises are logged, not propagated."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            if self._idle == 0 and len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1  # this job takes an idle worker
        self._queue.put((func, args))

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            func, args = job
            with self._lock:
                while self._running >= self.size:
                    self._slot_free.wait()  # other threads run claimed jobs
                self._running += 1
            try:
                func(*args)
            except BaseException:  # a job must never kill its worker
                logger.exception("a job in %s failed", self.name)
            with self._lock:
                self._idle += 1
                self._running -= 1
                self._slot_free.notify()

    def claim(self) -> bool:
        """Take a slot to run one job in the calling thread; False if all ``size`` are busy.

        Give it back with :meth:`release`.
        """
        with self._lock:
            if self._closed or self._running >= self.size:
                return False
            self._running += 1
            return True

    def release(self) -> None:
        """Give back a slot taken with :meth:`claim`."""
        with self._lock:
            self._running -= 1
            self._slot_free.notify()

    def shutdown(self) -> None:
        """Stop the workers once they finish their current job (does not wait)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            count = len(self._threads)
        for _ in range(count):
            self._queue.put(_STOP)
