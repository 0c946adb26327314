"""The per-node scheduler: one task, in its own cancel scope, per scheduled task.

Task structure::

    Scheduler.run  (task group owned by the node)
     └─ one driver task per schedule, inside the schedule's CancelScope
         └─ (at_time only) one task per fire, so fires never wait for each other

Cancelling a schedule exits its cancel scope: no further runs, and an async run in progress is
interrupted (a sync run in a worker thread finishes on its own; its result is dropped).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from daffi.scheduling._bounds import Bounds
from daffi.scheduling._cron import Cron
from daffi.scheduling._triggers import Interval, Trigger

if TYPE_CHECKING:
    from daffi.scheduling._store import Journal, Progress

__all__ = ["Clock", "LoopClock", "ScheduleEntry", "Scheduler", "SystemClock"]

_CONDITIONS = {"interval": "period"}

logger = logging.getLogger("daffi.scheduling")

#: how many ended schedules a scheduler remembers (a cancel of an older one is of an unknown uuid)
ENDED_KEPT = 10_000


class Clock(Protocol):
    """Wall-clock time as UTC epoch seconds, and a way to sleep until a wall time.

    A clock that needs a task of its own has an ``async def run(*, task_status)`` method: the
    scheduler starts it in its task group (:class:`~daffi.scheduling._precise.PreciseClock`).
    """

    def wall(self) -> float: ...

    async def sleep_until(self, wall: float) -> None: ...


class SystemClock:
    """The real wall clock (``time.time``), with the event loop's timer (which wakes up to a
    millisecond late: the scheduler's default is the precise one, ``PreciseClock``)."""

    def wall(self) -> float:
        return time.time()

    async def sleep_until(self, wall: float) -> None:
        await anyio.sleep(max(wall - time.time(), 0.0))


class LoopClock:
    """Wall time derived from the event loop's clock.

    With ``trio.testing.MockClock(autojump_threshold=0)`` a day of schedules runs in
    milliseconds, and fire times stay consistent with the loop's sleeps.
    """

    def __init__(self, epoch_at_zero: float = 1_700_000_000.0) -> None:
        self.offset = epoch_at_zero

    def wall(self) -> float:
        return self.offset + anyio.current_time()

    async def sleep_until(self, wall: float) -> None:
        await anyio.sleep_until(wall - self.offset)


@dataclass(eq=False)
class ScheduleEntry:
    """A schedule held by the executing node."""

    uuid: str
    func_name: str
    trigger: Trigger
    run: Callable[[], Awaitable[Any]]
    requester: str = ""
    runs: int = 0
    skipped: int = 0
    next_run: float | None = None
    last_error: str | None = None
    created: float = field(default_factory=time.time)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    #: when it may start and must end, how many runs, how much jitter (default: none)
    bounds: Bounds = field(default_factory=Bounds)
    #: kept in the scheduler's journal, so that a restart resumes it
    durable: bool = False
    #: when it last fired (POSIX time): where a resumed schedule goes on from
    last_fire: float | None = None
    #: the last error as the wire carries it (opaque bytes the node sets; for the journal)
    error_info: bytes | None = None

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "uuid": self.uuid,
            "func_name": self.func_name,
            "kind": self.trigger.kind,
            # daffi 2's key: "period" for an interval, "at_time"; "cron" for a cron schedule
            "condition": _CONDITIONS.get(self.trigger.kind, self.trigger.kind),
            "next_run": self.next_run,
            "runs": self.runs,
            "skipped": self.skipped,
            "requester": self.requester,
            "last_error": self.last_error,
            "durable": self.durable,
        }
        info.update(self.trigger.describe())
        info.update(self.bounds.describe())
        return info

    def first_from(self, now: float) -> float:
        """Where to look for the first fire from: ``now``, or just before ``start``."""
        start = self.bounds.start
        return now if start is None else max(now, start - 1e-3)

    def progress(self) -> Progress:
        """How far it got, for the journal."""
        from daffi.scheduling._store import Progress

        return Progress(
            self.uuid, self.runs, self.skipped, self.last_fire, self.last_error, self.error_info
        )

    def over(self, fire: float | None) -> bool:
        """Whether the schedule ends instead of firing at ``fire``."""
        bounds = self.bounds
        return (
            fire is None
            or (bounds.end is not None and fire > bounds.end)
            or (bounds.max_runs is not None and self.runs >= bounds.max_runs)
        )


ErrorReporter = Callable[[ScheduleEntry, BaseException], Awaitable[None]]

#: how long before its time a durable schedule's fire is committed to its journal (seconds)
CLAIM_AHEAD = 0.01

#: how many missed times :func:`_late_fire` looks through at most
_MISSED_LIMIT = 10_000


def _late_fire(
    trigger: Interval | Cron, previous: float, now: float, bounds: Bounds
) -> float | None:
    """A time missed since ``previous`` that still runs (late) under the misfire policy:
    the latest one within ``misfire_grace`` when coalescing, else the earliest one within
    it; None when none is (every missed time is skipped)."""
    point = trigger.next_fire(previous, previous)  # the first time after previous
    if point is None or point >= now:
        return None  # nothing was missed
    grace = bounds.misfire_grace
    assert grace is not None
    for _ in range(_MISSED_LIMIT):
        following = trigger.next_fire(point, point)
        if bounds.coalesce:
            if following is None or following > now:
                break  # point is the latest missed time
        elif now - point <= grace:
            break  # point is the earliest missed time within the grace
        if following is None or following > now:
            return None
        point = following
    else:
        return None
    return point if now - point <= grace else None


class Scheduler:
    """Runs schedules until they end, are cancelled, or the scheduler stops.

    Args:
        clock: where wall time comes from (default: the real clock with precise wake-ups,
            :class:`~daffi.scheduling._precise.PreciseClock`).
        on_error: awaited with ``(entry, exc)`` when a run raises; the schedule continues.

    Attributes:
        journal: where durable schedules record their progress (None: nowhere). Each fire
            of a durable schedule is committed there before its run starts, so a restart
            never runs a fire twice (at most once per time); an end or a cancel removes it.
    """

    def __init__(
        self, *, clock: Clock | None = None, on_error: ErrorReporter | None = None
    ) -> None:
        if clock is None:
            from daffi.scheduling._precise import PreciseClock

            clock = PreciseClock()
        self.clock: Clock = clock
        self.on_error = on_error
        self.entries: dict[str, ScheduleEntry] = {}
        #: the uuids of the latest schedules that ended (cancelled or run their course),
        #: oldest first, at most ENDED_KEPT: a cancel of one of them is not of an unknown one
        self.ended: OrderedDict[str, None] = OrderedDict()
        self._last_skip_log = float("-inf")
        self._skipped_unlogged = 0
        self._task_group: anyio.abc.TaskGroup | None = None
        self.journal: Journal | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Host the schedules until cancelled (which cancels every schedule)."""
        try:
            async with anyio.create_task_group() as tg:
                run_clock = getattr(self.clock, "run", None)
                if run_clock is not None:
                    await tg.start(run_clock)
                self._task_group = tg
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._task_group = None
            self.entries.clear()

    def add(self, entry: ScheduleEntry) -> None:
        """Start driving ``entry``.

        Raises:
            RuntimeError: the scheduler is not running.
            ValueError: a schedule with the same uuid exists.
        """
        if self._task_group is None:
            raise RuntimeError("the scheduler is not running")
        if entry.uuid in self.entries:
            raise ValueError(f"a schedule with uuid {entry.uuid!r} already exists")
        self.entries[entry.uuid] = entry
        entry.next_run = entry.trigger.next_fire(
            entry.first_from(self.clock.wall()), entry.last_fire
        )
        self._task_group.start_soon(self._drive, entry, name=f"schedule {entry.uuid}")

    def cancel(self, uuid: str) -> bool:
        """Cancel a schedule; returns whether it was active."""
        entry = self.entries.pop(uuid, None)
        if entry is None:
            return False
        self._ended(uuid)
        entry.scope.cancel()
        self._forget(entry)
        logger.info("schedule %s (%s) cancelled after %d runs", uuid, entry.func_name, entry.runs)
        return True

    def _ended(self, uuid: str) -> None:
        self.ended[uuid] = None
        if len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)

    def _forget(self, entry: ScheduleEntry) -> None:
        if entry.durable and self.journal is not None:
            from daffi.scheduling._store import Remove

            self.journal.write_nowait(Remove(entry.uuid))

    def describe(self) -> list[dict[str, Any]]:
        return [entry.describe() for entry in self.entries.values()]

    async def _drive(self, entry: ScheduleEntry) -> None:
        finished = False  # it ran its course (not: cancelled, or the scheduler is stopping)
        try:
            with entry.scope:
                if isinstance(entry.trigger, Interval | Cron):
                    await self._drive_recurring(entry, entry.trigger)
                else:
                    # Fires of fixed times do not wait for each other: one task each.
                    async with anyio.create_task_group() as fires:
                        await self._drive_times(entry, fires)
                entry.next_run = None
            finished = not entry.scope.cancel_called  # (a cancel has forgotten it already)
            if finished:
                self._forget(entry)
        finally:
            if self.entries.get(entry.uuid) is entry:
                del self.entries[entry.uuid]
                self._ended(entry.uuid)
            if finished:
                logger.info(
                    "schedule %s (%s) finished after %d runs",
                    entry.uuid,
                    entry.func_name,
                    entry.runs,
                )

    async def _drive_recurring(self, entry: ScheduleEntry, trigger: Interval | Cron) -> None:
        """One run at a time (a run never overlaps the next); fires missed while a run was
        going, or while the node could not run, are skipped and counted."""
        previous = entry.last_fire  # None, unless resumed from the journal
        resumed = previous is not None
        ended = 0.0  # when the previous run ended
        while True:
            now = self.clock.wall()
            fire = trigger.next_fire(
                now if previous is not None else entry.first_from(now), previous
            )
            if fire is None or entry.over(fire):
                return  # (an end, max_runs, or a cron expression with no fire left)
            if previous is not None and entry.bounds.misfire_grace is not None:
                late = _late_fire(trigger, previous, now, entry.bounds)
                if late is not None:
                    fire = late  # missed, within the grace: it runs now
            if previous is not None:
                missed = trigger.skipped(previous, fire)
                if missed:
                    due = trigger.next_fire(previous, previous)
                    why = (
                        "down"
                        if resumed
                        else "overran"
                        if due is not None and ended >= due
                        else "late"
                    )
                    self._note_skip(entry, missed, why)
            resumed = False
            await self._wait_for(entry, fire)
            previous = fire
            await self._run_once(entry)
            ended = self.clock.wall()

    async def _drive_times(self, entry: ScheduleEntry, fires: anyio.abc.TaskGroup) -> None:
        previous = entry.last_fire  # None, unless resumed from the journal
        grace = entry.bounds.misfire_grace
        while not entry.over(fire := entry.trigger.next_fire(self.clock.wall(), previous)):
            assert fire is not None
            previous = fire
            if grace is not None and self.clock.wall() - fire > grace:
                self._note_skip(entry, 1, "late")  # missed by more than the grace
                continue
            await self._wait_for(entry, fire)
            fires.start_soon(self._run_once, entry)

    async def _wait_for(self, entry: ScheduleEntry, fire: float) -> None:
        """Sleep until ``fire`` and count the run (raises if the schedule is cancelled)."""
        entry.next_run = fire
        jitter = entry.bounds.jitter
        start = fire + random.uniform(0, jitter) if jitter else fire
        if entry.durable and self.journal is not None:
            # Committed a little ahead, so the write (a worker thread's) does not make the
            # run late; a kill in between loses this time's run, never runs it twice.
            await self.clock.sleep_until(start - CLAIM_AHEAD)
            await self._claim(entry, fire)
        await self.clock.sleep_until(start)
        # A cancel that lands in the same loop turn as the timer must still win:
        # cancel() returning True promises that no run starts.
        await anyio.lowlevel.checkpoint_if_cancelled()
        entry.runs += 1
        entry.last_fire = fire

    async def _claim(self, entry: ScheduleEntry, fire: float) -> None:
        """Commit the fire at ``fire`` to the journal before its run starts (just before its
        time): a node killed after this does not run it again when it resumes. A journal that
        cannot be written (logged there) does not stop the run."""
        from daffi.scheduling._store import StoreError

        assert self.journal is not None
        progress = dataclasses.replace(entry.progress(), runs=entry.runs + 1, last_fire=fire)
        # A failed write is logged by the journal; the schedule runs on from memory.
        with contextlib.suppress(StoreError):
            await self.journal.write(progress)

    def _note_skip(self, entry: ScheduleEntry, missed: int, why: str) -> None:
        """Count ``missed`` skipped times of ``entry`` and log it (at most every 10 s): the
        previous run ``"overran"``, the node woke up ``"late"``, or it was ``"down"``."""
        entry.skipped += missed
        self._skipped_unlogged += missed
        # At most one line every 10 s for the whole scheduler: a saturated node would
        # otherwise log a line per schedule and tick.
        now = self.clock.wall()
        if now - self._last_skip_log < 10:
            return
        self._last_skip_log = now
        reason = {
            "overran": "the previous run was still going",
            "late": "the node woke up late (its event loop was busy)",
            "down": "the node was not running (resumed from its schedule store)",
        }[why]
        logger.warning(
            "schedule %s (%s) skipped %d run(s) because %s; %d run(s) skipped by all "
            "schedules since the last such line",
            entry.uuid,
            entry.func_name,
            missed,
            reason,
            self._skipped_unlogged,
        )
        self._skipped_unlogged = 0

    async def _run_once(self, entry: ScheduleEntry) -> None:
        try:
            await entry.run()
        except Exception as exc:
            entry.last_error = f"{type(exc).__name__}: {exc}"
            logger.error(
                "scheduled run of %r (%s) failed: %s",
                entry.func_name,
                entry.uuid,
                entry.last_error,
                exc_info=exc,
            )
            if self.on_error is not None:
                try:
                    await self.on_error(entry, exc)
                except Exception:
                    logger.debug("could not report a schedule error", exc_info=True)
            if entry.durable and self.journal is not None:
                self.journal.write_nowait(entry.progress())
