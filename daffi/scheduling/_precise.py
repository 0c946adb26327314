"""Waking up schedules at their wall-clock times: one alarm task per scheduler, precise to
tens of microseconds.

Two costs of sleeping each schedule with the event loop's own timer (``anyio.sleep``):

* **Precision.** asyncio and trio both wait with ``epoll``, whose timeout is in whole
  milliseconds (rounded up), so a task sleeping until ``t`` wakes up to 1 ms after it: on this
  project's test machine, 1.4 ms at the 99th percentile. A Linux ``timerfd`` set to go off at
  ``t`` becomes readable then (give or take the kernel's 50 µs timer slack), and ``epoll``
  returns as soon as a descriptor is readable.
* **Many at once.** On trio a sleep ends by cancelling its own timeout, which costs an
  exception; 10,000 cron schedules due at the same second spent most of a core on that.

So :class:`PreciseClock` keeps every wait of its scheduler in one heap, and one task
(:meth:`PreciseClock.run`) sleeps until the earliest, on a timerfd, then sets the event of
every wait that is due: a wait is an :class:`anyio.Event`, and a second with 10,000 due
schedules is one wake-up of that task. A cancelled wait is dropped from the heap lazily.

Where there is no timerfd (not Linux), the alarm task sleeps with the loop's timer (macOS's
``kqueue`` takes timeouts in nanoseconds already). The timerfd is made with
:func:`os.timerfd_create` (Python 3.13+) or, before, through ``ctypes`` from the C library:
that is this module's only platform-specific code.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import sys
import time
from collections.abc import Callable

import anyio
import anyio.abc
import anyio.lowlevel

__all__ = ["PreciseClock", "Timerfd", "open_timerfd"]

logger = logging.getLogger("daffi.scheduling")


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


#: the alarm task wakes up at most once per this many seconds: waits due closer together
#: than that (thousands of schedules a second) share a wake-up, up to this much late, instead
#: of costing one each
MIN_GAP = 0.0005

#: for a wait further off than twice this, the alarm task first wakes up this long before it,
#: then sets the timer again for the exact time: a processor woken from a long idle (a deep
#: sleep state) takes a few hundred microseconds more to run the loop
WARM_UP = 0.001


class _Alarm:
    """One wait: its event, and whether it is still waited for."""

    __slots__ = ("event", "live")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.live = True  # False: the wait was cancelled (dropped from the heap lazily)


#: (wall time, order among waits of the same time, the wait): tuples compare in C
_Entry = tuple[float, int, _Alarm]


class PreciseClock:
    """The real wall clock (``time.time``), whose waits end within tens of microseconds of
    their time where the system has a timerfd (see the module's docstring).

    :meth:`run` must be running (the scheduler starts it in its task group); a wait made
    while it is not uses the loop's timer.
    """

    def __init__(self) -> None:
        self._alarms: list[_Entry] = []  # a heap
        self._order = itertools.count()
        self._running = False
        self._timer: Timerfd | None = None
        self._set_for: float | None = None  # the wall time the alarm task sleeps until
        self._earlier = anyio.Event()  # (without a timerfd) an earlier wait was added
        self._dropped = 0  # cancelled waits still in the heap
        self._woke = -math.inf  # when the alarm task last woke up (wall time)

    def wall(self) -> float:
        return time.time()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Wake each wait at its time, until cancelled (then the waits left finish on the
        loop's timer)."""
        timer = self._timer = open_timerfd()
        self._running = True
        try:
            task_status.started()
            while True:
                if timer is not None:
                    await anyio.wait_readable(timer.fd)
                    timer.clear()
                else:
                    self._earlier = anyio.Event()
                    delay = math.inf if self._set_for is None else self._set_for - time.time()
                    with anyio.move_on_after(max(delay, 0.0)):
                        await self._earlier.wait()
                self._set_for = None
                self._woke = time.time()
                self._wake_due()
        finally:
            self._running = False
            self._timer = None
            for _, _, alarm in self._alarms:
                alarm.event.set()
            self._alarms.clear()
            if timer is not None:
                timer.close()

    async def sleep_until(self, wall: float) -> None:
        if not self._running:
            await anyio.sleep(max(wall - time.time(), 0.0))
            return
        if wall <= time.time():
            await anyio.lowlevel.checkpoint()
            return
        alarm = _Alarm()
        heapq.heappush(self._alarms, (wall, next(self._order), alarm))
        self._set(wall)
        try:
            await alarm.event.wait()
        finally:
            if not alarm.event.is_set():
                self._drop(alarm)
        if not self._running and wall > time.time():  # the alarm task ended
            await anyio.sleep(wall - time.time())

    def _set(self, wall: float) -> None:
        """Make the alarm task wake up at ``wall`` (or :data:`MIN_GAP` after it last did),
        unless it wakes up earlier already."""
        wall = max(wall, self._woke + MIN_GAP)
        after = wall - time.time()
        if after > 2 * WARM_UP:
            wall -= WARM_UP
            after -= WARM_UP
        if self._set_for is not None and self._set_for <= wall:
            return
        self._set_for = wall
        if self._timer is not None:
            self._timer.set(after)
        else:
            self._earlier.set()

    def _drop(self, alarm: _Alarm) -> None:
        alarm.live = False
        self._dropped += 1
        alarms = self._alarms
        if self._dropped > 1024 and self._dropped * 2 > len(alarms):
            alarms[:] = [entry for entry in alarms if entry[2].live]
            heapq.heapify(alarms)
            self._dropped = 0

    def _wake_due(self) -> None:
        alarms = self._alarms
        now = time.time()
        while alarms and (alarms[0][0] <= now or not alarms[0][2].live):
            alarm = heapq.heappop(alarms)[2]
            if alarm.live:
                alarm.event.set()
            else:
                self._dropped -= 1
        if alarms:
            self._set(alarms[0][0])
