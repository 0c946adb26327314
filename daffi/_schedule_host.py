"""The schedules a node runs for other nodes (``PERIOD``), and the system calls about them.

The dispatcher hands a call carrying a :class:`~daffi._protocol.ScheduleSpec` to
:meth:`ScheduleHost.accept`, which checks it and adds it to the node's scheduler (started in
the dispatcher's task group with the first schedule, so schedules outlive reconnections).
Every node also answers the system calls that list and cancel its schedules, and the ones that
tell a requester a scheduled run failed or that another node cancelled its schedule.

Every cancel is logged here, on the executor, with the schedule, its requester and the node
that cancelled it (the ``src`` of the cancel call, which the controller checks is the sending
node): at INFO when the requester cancelled it, at WARNING otherwise, in which case the
requester is told (``SYSTEM_SCHEDULE_CANCELLED``). A requester accepts that notice only from
the executor its handle points at (:meth:`daffi._results.ScheduledTasks.cancelled`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import msgspec

from daffi._durable_schedules import DurableSchedules
from daffi._link import Link
from daffi._metering import Meter, error_name
from daffi._protocol import SYSTEM_PREFIX, Call, CallbackInfo, ScheduleSpec
from daffi.exceptions import (
    ArgumentsError,
    DaffiError,
    ErrorInfo,
    ProtocolError,
    UnableToFindCandidate,
    error_info_from_exception,
    exception_from_error_info,
)
from daffi.registry._store import CallbackEntry, CallbackRegistry

if TYPE_CHECKING:
    from daffi._codec import PayloadCodec
    from daffi.scheduling import ScheduleEntry, Scheduler, Trigger
    from daffi.scheduling._bounds import Bounds

__all__ = [
    "SYSTEM_CANCEL_SCHEDULE",
    "SYSTEM_LIST_SCHEDULES",
    "SYSTEM_SCHEDULE_CANCELLED",
    "SYSTEM_SCHEDULE_ERROR",
    "ScheduleHost",
]

logger = logging.getLogger("daffi.node")

SYSTEM_CANCEL_SCHEDULE = SYSTEM_PREFIX + "cancel_schedule"
SYSTEM_LIST_SCHEDULES = SYSTEM_PREFIX + "list_schedules"
SYSTEM_SCHEDULE_ERROR = SYSTEM_PREFIX + "schedule_error"
SYSTEM_SCHEDULE_CANCELLED = SYSTEM_PREFIX + "schedule_cancelled"

#: seconds telling a requester that its schedule was cancelled may take before it is given up
NOTICE_TIMEOUT = 5.0

RunEntry = Callable[[CallbackEntry, Any, dict[str, Any]], Awaitable[Any]]
#: the arguments of a scheduled run, for the callback registered at the time of the run
Arguments = Callable[[CallbackEntry], tuple[list[Any], dict[str, Any]]]


#: (uuid, executor, cancelled_by, cancelled_at) -> whether a handle took the report
class ScheduleReports(Protocol):
    """Where a node's handles of the schedules it requested learn what their executors
    report (:class:`daffi._results.ScheduledTasks`). Each takes a report only from the
    executor its handle points at, and says whether a handle took it."""

    def failed(self, schedule_uuid: str, executor: str, error: DaffiError) -> bool: ...

    def cancelled(self, schedule_uuid: str, executor: str, by: str, at: float) -> bool: ...


class _Node(Protocol):
    """What the schedules read of their node."""

    @property
    def name(self) -> str: ...

    @property
    def registry(self) -> CallbackRegistry: ...

    @property
    def codec(self) -> PayloadCodec: ...

    @property
    def conn(self) -> Link | None: ...

    @property
    def peers(self) -> Mapping[str, Mapping[str, CallbackInfo]]: ...

    async def send_nowait(self, name: str, payload: msgspec.Raw, receiver: str | None) -> None: ...


class ScheduleHost:
    """The schedules ``node`` runs (each run through ``run_entry``), at most every
    ``min_period_interval`` seconds.

    Attributes:
        task_group: where the scheduler runs (set by the dispatcher while it runs).
        reports: where reports about the schedules this node requested go (a run failed, the
            schedule was cancelled by another node); None: nowhere.
    """

    def __init__(
        self,
        node: _Node,
        run_entry: RunEntry,
        min_period_interval: float,
        state_dir: str | None = None,
        *,
        meter: Meter | None = None,
    ) -> None:
        self.node = node
        self.run_entry = run_entry
        #: times each run for the node's metrics hook
        self.meter = meter if meter is not None else Meter(None, node.name)
        self.min_period_interval = min_period_interval
        #: the schedules kept in the node's store (``PERIOD(durable=True)``)
        self.durable = DurableSchedules(self, state_dir)
        # The scheduler (and the scheduling code) starts with the first schedule accepted.
        self._scheduler: Scheduler | None = None
        self._scheduler_started: anyio.Event | None = None
        self.task_group: anyio.abc.TaskGroup | None = None
        self.reports: ScheduleReports | None = None

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def registry(self) -> CallbackRegistry:
        return self.node.registry

    @property
    def codec(self) -> PayloadCodec:
        return self.node.codec

    async def running_scheduler(self) -> Scheduler:
        """The node's scheduler, started in :attr:`task_group` on first need."""
        if self._scheduler_started is None:
            if self.task_group is None:
                raise RuntimeError("the scheduler is not running")
            from daffi.scheduling import Scheduler

            self._scheduler_started = anyio.Event()
            self._scheduler = Scheduler(on_error=self._report_error)
            await self.task_group.start(self._scheduler.run)
            self._scheduler_started.set()
        await self._scheduler_started.wait()
        assert self._scheduler is not None
        return self._scheduler

    async def accept(
        self,
        msg: Call,
        spec: ScheduleSpec,
        entry: CallbackEntry,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        """Schedule ``entry`` with ``args`` and ``kwargs`` as ``msg`` asks (``spec``); what
        the requester's ``ScheduledTask`` is made of. A durable schedule is in the store
        before this returns.

        Raises:
            ArgumentsError: it cannot be scheduled (a generator, arguments that do not fit,
                an interval below ``min_period_interval``, pickled arguments of a durable
                schedule).
            GlobalContextError: it is durable and this node cannot keep it (no state
                directory, or a store that cannot be used).
            ProtocolError: ``spec`` is not a valid schedule.
        """
        from daffi.scheduling import ScheduleEntry

        # An interval's grid starts when the request arrived, not after the scheduler (and
        # its code) started for a node's first schedule.
        received = time.time()
        scheduler = await self.running_scheduler()
        await self.durable.ready()

        if entry.is_generator or entry.is_async_generator:
            raise ArgumentsError(
                f"cannot schedule {entry.name!r}: it is a generator callback, whose values "
                "need a consumer; PERIOD runs plain callbacks"
            )
        try:
            inspect.signature(entry.fn).bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentsError(
                f"cannot schedule {entry.name!r}: it expects {entry.name}"
                f"{inspect.signature(entry.fn)}: {exc}"
            ) from None
        origin = None
        if spec.kind == "interval" and spec.interval is not None and spec.interval > 0:
            # With a start, the grid starts there (its first run is at start).
            origin = received if spec.start is None else spec.start - spec.interval
        trigger = self.trigger(spec, entry.name, msg.src, origin)
        bounds = self.bounds(spec, msg.src)

        scheduled = ScheduleEntry(
            spec.uuid,
            entry.name,
            trigger,
            self.runner(entry.name, msg.src, lambda _: (args, kwargs)),
            requester=msg.src,
            bounds=bounds,
            durable=spec.durable,
        )
        if spec.durable:
            if msg.pickled:
                raise ArgumentsError(
                    f"cannot schedule {entry.name!r} durably: its arguments are pickled, and a "
                    "durable schedule stores them as msgpack (send msgpack-encodable values)"
                )
            await self.durable.store(scheduled, spec, bytes(msg.payload), origin)
        scheduler.add(scheduled)
        logger.info(
            "node %r: scheduled %r for %r (%s%s, uuid %s)",
            self.name,
            entry.name,
            msg.src,
            trigger.describe(),
            ", durable" if spec.durable else "",
            spec.uuid,
        )
        return {
            "uuid": spec.uuid,
            "receiver": self.name,
            "func_name": entry.name,
            "durable": spec.durable,
        }

    def runner(
        self, func_name: str, requester: str, arguments: Arguments
    ) -> Callable[[], Awaitable[None]]:
        """A run of callback ``func_name`` for ``requester``, as registered at the time of
        the run, with what ``arguments`` gives for that registration (timed for the metrics
        hook)."""

        async def run() -> None:
            timed = self.meter.start(func_name, requester, "schedule")
            try:
                current = self.registry.get(func_name)
                if current is None:
                    raise UnableToFindCandidate(
                        f"callback {func_name!r} is not registered on {self.name!r}"
                    )
                args, kwargs = arguments(current)
                await self.run_entry(current, args, kwargs)
            except Exception as exc:
                timed.finish("error", error_name(exc))
                raise
            except BaseException:
                timed.finish_cancelled()
                raise
            timed.finish("ok")

        return run

    def trigger(self, spec: ScheduleSpec, name: str, src: str, origin: float | None) -> Trigger:
        """The trigger ``spec`` asks for (an ``interval`` grid starting at ``origin``).

        Raises:
            ArgumentsError: an interval below ``min_period_interval``, or a cron expression
                or zone this node cannot read.
            ProtocolError: ``spec`` is not a valid schedule.
        """
        from daffi.scheduling import AtTimes, Cron, Interval

        if spec.kind == "interval" and spec.interval is not None and spec.interval > 0:
            if spec.interval < self.min_period_interval:
                raise ArgumentsError(
                    f"cannot schedule {name!r} every {spec.interval} s: node "
                    f"{self.name!r} runs schedules at most every {self.min_period_interval} s "
                    "(its min_period_interval)"
                )
            assert origin is not None
            return Interval(spec.interval, start=origin)
        if spec.kind == "at_time" and spec.at_time:
            return AtTimes(tuple(sorted(spec.at_time)))
        if spec.kind == "cron" and spec.cron:
            from daffi.scheduling._cron import check_cron

            try:
                expression, zone = check_cron(spec.cron, spec.timezone or "UTC")
            except ValueError as exc:
                raise ArgumentsError(f"cannot schedule {name!r}: {exc}") from None
            return Cron(expression, zone)
        raise ProtocolError(f"invalid schedule from {src!r}: {spec!r}")

    @staticmethod
    def bounds(spec: ScheduleSpec, src: str) -> Bounds:
        """The bounds ``spec`` asks for.

        Raises:
            ProtocolError: they are not valid (the requester checked them).
        """
        from daffi.scheduling._bounds import Bounds

        try:
            return Bounds(
                spec.start,
                spec.end,
                spec.max_runs,
                float(spec.jitter) if math.isfinite(spec.jitter) and spec.jitter >= 0 else 0.0,
                spec.misfire_grace,
                bool(spec.coalesce),
            )
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"invalid schedule bounds from {src!r}: {exc}") from None

    async def _report_error(self, entry: ScheduleEntry, exc: BaseException) -> None:
        """Keep ``exc`` on ``entry`` (for listings) and tell the requester of ``entry`` that
        a run failed with it."""
        info = error_info_from_exception(exc, self.name)
        entry.error_info = msgspec.msgpack.encode(info)
        if not entry.requester or entry.requester == self.name or self.node.conn is None:
            return
        if entry.requester not in self.node.peers:
            return  # the requester is gone: the error was logged here
        payload = msgspec.Raw(self.codec.encode_args((entry.uuid, msgspec.to_builtins(info)), {}))
        await self.node.send_nowait(SYSTEM_SCHEDULE_ERROR, payload, entry.requester)

    def cancel(self, schedule_uuid: str, canceller: str) -> float | None:
        """Cancel schedule ``schedule_uuid`` as node ``canceller`` asks, log it, and tell its
        requester if someone else cancelled it.

        Returns:
            When it was cancelled (``time.time()`` here), or ``None`` if it was not active.
        """
        scheduler = self._scheduler
        entry = None if scheduler is None else scheduler.entries.get(schedule_uuid)
        if entry is None or scheduler is None or not scheduler.cancel(schedule_uuid):
            return None
        cancelled_at = time.time()
        foreign = canceller != entry.requester
        logger.log(
            logging.WARNING if foreign else logging.INFO,
            "node %r: schedule %s of %r, requested by %r, was cancelled by %r",
            self.name,
            schedule_uuid,
            entry.func_name,
            entry.requester,
            canceller,
        )
        if foreign:
            self._tell_cancelled(entry, canceller, cancelled_at)
        return cancelled_at

    def _tell_cancelled(self, entry: ScheduleEntry, canceller: str, cancelled_at: float) -> None:
        """Tell the requester of ``entry`` that ``canceller`` cancelled it: without waiting
        (a task of its own, bounded by ``NOTICE_TIMEOUT``), and never raising."""
        requester = entry.requester
        if requester == self.name:  # requested here: the handle is in this process
            self._cancel_reported(entry.uuid, self.name, canceller, cancelled_at)
            return
        if not requester or self.node.conn is None or requester not in self.node.peers:
            logger.info(
                "node %r: requester %r of schedule %s is not connected; it is not told that "
                "%r cancelled it",
                self.name,
                requester,
                entry.uuid,
                canceller,
            )
            return
        if self.task_group is None:  # the dispatcher is stopping: nothing is sent any more
            logger.info(
                "node %r: stopping; requester %r of schedule %s is not told that %r cancelled it",
                self.name,
                requester,
                entry.uuid,
                canceller,
            )
            return
        payload = msgspec.Raw(self.codec.encode_args((entry.uuid, canceller, cancelled_at), {}))
        self.task_group.start_soon(self._send_notice, requester, entry.uuid, payload)

    async def _send_notice(self, requester: str, schedule_uuid: str, payload: msgspec.Raw) -> None:
        with anyio.move_on_after(NOTICE_TIMEOUT) as scope:
            try:
                await self.node.send_nowait(SYSTEM_SCHEDULE_CANCELLED, payload, requester)
            except Exception as exc:
                logger.info(
                    "node %r: could not tell %r that schedule %s was cancelled: %s",
                    self.name,
                    requester,
                    schedule_uuid,
                    exc,
                )
        if scope.cancelled_caught:
            logger.info(
                "node %r: telling %r that schedule %s was cancelled took over %s s; given up",
                self.name,
                requester,
                schedule_uuid,
                NOTICE_TIMEOUT,
            )

    def _cancel_reported(self, schedule_uuid: str, executor: str, by: str, at: float) -> None:
        """A report that ``by`` cancelled schedule ``schedule_uuid`` on ``executor``."""
        reports = self.reports
        if reports is None or not reports.cancelled(schedule_uuid, executor, by, at):
            logger.debug(
                "node %r: ignored a report from %r that schedule %s was cancelled (no handle "
                "of a schedule requested there)",
                self.name,
                executor,
                schedule_uuid,
            )
            return
        logger.warning(
            "node %r: schedule %s on %r was cancelled by %r",
            self.name,
            schedule_uuid,
            executor,
            by,
        )

    async def system_call(self, name: str, args: Any, *, src: str) -> Any:
        """Answer one of the system calls every node serves (schedules and their errors),
        called by node ``src``.

        ``SYSTEM_CANCEL_SCHEDULE`` answers when the schedule was cancelled (a POSIX
        timestamp taken here), or ``None`` if it has ended; it raises ``LookupError`` for
        a uuid this node does not know (never had, or ended too long ago).
        """
        if name in (SYSTEM_CANCEL_SCHEDULE, SYSTEM_LIST_SCHEDULES):
            await self.durable.ready()  # the resumed schedules are there
        scheduler = self._scheduler
        if name == SYSTEM_CANCEL_SCHEDULE:
            schedule_uuid = str(args[0])
            cancelled_at = self.cancel(schedule_uuid, src)
            if cancelled_at is not None:
                await self.durable.sync()  # a durable schedule has left the store
            elif scheduler is None or schedule_uuid not in scheduler.ended:
                # As daffi 2: an unknown uuid is an error (the caller's RemoteCallError).
                raise LookupError(f"process {self.name!r} has no schedule {schedule_uuid!r}")
            return cancelled_at
        if name == SYSTEM_LIST_SCHEDULES:
            return [] if scheduler is None else [_listed(e) for e in scheduler.entries.values()]
        if name == SYSTEM_SCHEDULE_ERROR:
            info = msgspec.convert(args[1], ErrorInfo)
            error = exception_from_error_info(info)
            logger.warning(
                "node %r: a scheduled run of uuid %s failed on %r: %s",
                self.name,
                args[0],
                src,
                error,
            )
            if self.reports is not None:
                self.reports.failed(str(args[0]), src, error)
            return None
        if name == SYSTEM_SCHEDULE_CANCELLED:
            try:
                schedule_uuid, by, at = msgspec.convert(args, tuple[str, str, float])
            except msgspec.ValidationError as exc:
                raise ProtocolError(f"invalid schedule cancel report from {src!r}: {exc}") from None
            self._cancel_reported(schedule_uuid, src, by, at)
            return None
        raise UnableToFindCandidate(f"process {self.name!r} has no system call {name!r}")


def _listed(entry: ScheduleEntry) -> dict[str, Any]:
    """``entry`` as listings show it: with its last error as the wire carries it."""
    info = entry.describe()
    if entry.error_info is not None:
        with contextlib.suppress(msgspec.DecodeError):
            info["last_error_info"] = msgspec.msgpack.decode(entry.error_info)
    return info
