"""Threads started for one owner, which joins them when it ends.

daffi starts no bare threads: each belongs to a task of the Global's task tree, which waits
for it, bounded, when it ends. :class:`ThreadGroup` keeps that bookkeeping: which threads
an owner started and which of them still run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio

from daffi._context import current_var

__all__ = ["ThreadGroup", "wait_bounded"]


async def wait_bounded(done: Callable[[], bool], timeout: float) -> bool:
    """Wait on the loop, up to ``timeout`` seconds, until ``done()`` (something other threads
    bring about, such as their ending) holds; whether it did. Polls, backing off from 1 ms to
    50 ms: nothing wakes the loop when a thread ends."""
    deadline = anyio.current_time() + timeout
    delay = 0.001
    while not done():
        if anyio.current_time() >= deadline:
            return False
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


class ThreadGroup:
    """The threads one owner started and has not seen end (any thread may use it).

    Its threads run with the Global that was current where the group was made (in the core
    of a Global: that Global), so that ``get_g()`` in a callback they run returns it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._current = current_var.get()

    def start(self, target: Callable[[], None], name: str) -> threading.Thread:
        """Start a daemon thread named ``name`` running ``target``; it leaves the group when
        ``target`` returns or raises.

        Raises:
            RuntimeError: the system has no thread to give ("can't start new thread").
        """

        current = self._current

        def body() -> None:
            current_var.set(current)  # a new thread starts with an empty context
            try:
                target()
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=body, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return thread

    def others(self) -> list[threading.Thread]:
        """The group's threads that have not ended, except the calling one."""
        current = threading.current_thread()
        with self._lock:
            return [thread for thread in self._threads if thread is not current]

    def __len__(self) -> int:
        with self._lock:
            return len(self._threads)
