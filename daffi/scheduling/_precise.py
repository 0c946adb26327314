"""Waking up at a wall-clock time with the kernel's precision instead of the event loop's.

asyncio and trio both wait for I/O and timers with ``epoll``, whose timeout is in whole
milliseconds (rounded up), so a task sleeping until ``t`` wakes up to 1 ms after it: on this
project's test machine, 1.4 ms at the 99th percentile. A Linux ``timerfd`` set to go off at
``t`` becomes readable then (give or take the kernel's 50 µs timer slack), and ``epoll``
returns as soon as a descriptor is readable.

:class:`PreciseClock` sleeps with the loop's own timer until :data:`FINE` seconds before the
time, then waits on one timerfd shared by every schedule of the scheduler: it is set to the
earliest time being waited for, and one task (:meth:`PreciseClock.run`) reads it and wakes
whoever's time has come. Only the last few milliseconds of a wait go through it, so it holds
few waiters and a cancelled wait leaves nothing behind for long.

Where there is no timerfd (not Linux), the loop's timer does all of it (macOS's ``kqueue``
takes timeouts in nanoseconds already). So it does for a scheduler that started more than
:data:`PRECISE_RATE` waits in the last second: there, the few wake-ups a precise wait adds
would cost more CPU than the millisecond is worth. The timerfd is made with
:func:`os.timerfd_create` (Python 3.13+) or, before, through ``ctypes`` from the C library:
that is this module's only platform-specific code.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import sys
import time
from collections.abc import Callable

import anyio
import anyio.abc
import anyio.lowlevel

__all__ = ["FINE", "PreciseClock", "Timerfd", "open_timerfd"]

logger = logging.getLogger("daffi.scheduling")

#: how long before its time a wait moves from the loop's timer to the timerfd (seconds): more
#: than the loop's own lateness (up to a millisecond and a bit), so the handover is on time
FINE = 0.003

#: beyond this many waits a second, waits use the loop's timer alone: a precise wait costs a
#: few more wake-ups and system calls, which matter more than a millisecond to a node running
#: thousands of schedules a second (and whose loop is late by more than that anyway)
PRECISE_RATE = 500


class Timerfd:
    """A non-blocking timerfd on ``CLOCK_MONOTONIC``, set ``after`` seconds from now.

    Attributes:
        fd: the descriptor to wait on (readable once the timer has gone off).
    """

    def __init__(self, fd: int, set_after: Callable[[int, float], None]) -> None:
        self.fd = fd
        self._set_after = set_after

    def set(self, after: float) -> None:
        """Go off ``after`` seconds from now (at least a microsecond: 0 would disarm it)."""
        self._set_after(self.fd, max(after, 1e-6))

    def clear(self) -> None:
        """Take the expiry count, so that the descriptor is no longer readable."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)

    def close(self) -> None:
        os.close(self.fd)


def open_timerfd() -> Timerfd | None:
    """A new :class:`Timerfd`, or None where the system has none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if sys.version_info >= (3, 13):
            fd = os.timerfd_create(time.CLOCK_MONOTONIC, flags=os.TFD_NONBLOCK | os.TFD_CLOEXEC)

            def set_after(fd: int, after: float) -> None:
                os.timerfd_settime(fd, initial=after)

            return Timerfd(fd, set_after)
        return _ctypes_timerfd()
    except (OSError, AttributeError, ImportError) as exc:
        logger.debug("no timerfd (%s): schedules wake up with the event loop's timer", exc)
        return None


def _ctypes_timerfd() -> Timerfd:
    import ctypes

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    class Itimerspec(ctypes.Structure):
        _fields_ = [("it_interval", Timespec), ("it_value", Timespec)]

    libc = ctypes.CDLL(None, use_errno=True)
    create, settime = libc.timerfd_create, libc.timerfd_settime
    create.argtypes = [ctypes.c_int, ctypes.c_int]
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    fd = create(time.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)  # TFD_* are O_* values
    if fd < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))

    def set_after(fd: int, after: float) -> None:
        seconds = int(after)
        spec = Itimerspec(Timespec(0, 0), Timespec(seconds, int((after - seconds) * 1e9)))
        if settime(fd, 0, ctypes.byref(spec), None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    return Timerfd(fd, set_after)


class PreciseClock:
    """The real wall clock (``time.time``), with waits that end within a few tens of
    microseconds of their time where the system has a timerfd (see the module's docstring).

    :meth:`run` must be running (in the scheduler's task group) for the precise part; until
    it is, and without a timerfd, waits use the loop's timer only.
    """

    def __init__(self) -> None:
        self._timer: Timerfd | None = None
        # (wall time, tie-breaker, event): the waits in their last FINE seconds
        self._waits: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()
        self._set_for: float | None = None  # the wall time the timer is set for
        # waits started in the current one-second window, and whether the last window had
        # more than PRECISE_RATE (then the loop's timer alone serves)
        self._window = (0.0, 0)
        self._busy = False

    def wall(self) -> float:
        return time.time()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Wake the waits whose time has come, each time the timer goes off."""
        timer = open_timerfd()
        if timer is None:
            task_status.started()
            return
        self._timer = timer
        try:
            task_status.started()
            while True:
                await anyio.wait_readable(timer.fd)
                timer.clear()
                self._set_for = None
                self._wake_due()
        finally:
            self._timer = None
            for _, _, event in self._waits:
                event.set()  # they finish on the loop's timer (see sleep_until)
            self._waits.clear()
            timer.close()

    async def sleep_until(self, wall: float) -> None:
        if self._timer is None or self._count_wait():
            await anyio.sleep(max(wall - time.time(), 0.0))
            return
        await anyio.sleep(max(wall - FINE - time.time(), 0.0))
        if self._timer is None:
            await anyio.sleep(max(wall - time.time(), 0.0))
            return
        if wall <= time.time():
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._waits, (wall, next(self._order), event))
        if self._set_for is None or wall < self._set_for:
            self._set_for = wall
            self._timer.set(wall - time.time())
        await event.wait()
        if wall > time.time():  # woken by run() ending: the loop's timer finishes the wait
            await anyio.sleep(wall - time.time())

    def _count_wait(self) -> bool:
        """Count a wait; whether the waits are too many for precise ones."""
        started, count = self._window
        now = time.monotonic()
        if now - started >= 1.0:
            self._busy = count > PRECISE_RATE
            self._window = (now, 1)
        else:
            self._window = (started, count + 1)
        return self._busy

    def _wake_due(self) -> None:
        waits = self._waits
        now = time.time()
        while waits and waits[0][0] <= now:
            heapq.heappop(waits)[2].set()
        if waits and self._timer is not None:
            self._set_for = waits[0][0]
            self._timer.set(self._set_for - now)
