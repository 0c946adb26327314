"""The requester's side of schedules: asking a node to run one (``PERIOD``), and the system
calls that list, inspect and cancel schedules on their executors.

:class:`ScheduleRequests` is what a :class:`~daffi._results.ScheduledTask` cancels and
refreshes through (the ``Schedules`` protocol), and what ``Global.get_scheduled_tasks`` and
``cancel_scheduled_task_by_uuid`` call; it records on this process's handles who cancelled
them.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import msgspec

from daffi._node import Node
from daffi._protocol import ScheduleSpec
from daffi._results import Bridge, ScheduledTask, ScheduledTasks
from daffi._schedule_host import SYSTEM_CANCEL_SCHEDULE, SYSTEM_LIST_SCHEDULES
from daffi.exceptions import RemoteStoppedUnexpectedly, UnableToFindCandidate
from daffi.execution_modifiers import PERIOD

__all__ = ["ScheduleRequests"]

logger = logging.getLogger("daffi.global")


class Requester(Bridge, Protocol):
    """What schedule requests run through (``daffi._runtime.Runtime``)."""

    def require_node(self) -> Node: ...


def _new_uuid() -> str:
    import uuid  # only schedules need it (uuid imports platform: start-up time)

    return uuid.uuid4().hex


class ScheduleRequests:
    """Schedules this process asks for, and the system calls about schedules.

    Args:
        runtime: the runtime the calls run through.
        scheduled: the handles of the schedules this process made (weakly held).
    """

    def __init__(self, runtime: Requester, scheduled: ScheduledTasks) -> None:
        self.runtime = runtime
        self.scheduled = scheduled

    async def schedule(
        self,
        node: Node,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: PERIOD,
    ) -> ScheduledTask:
        payload = node.prepare(name, args, kwargs, modifier.receiver)
        spec = ScheduleSpec(
            _new_uuid(),
            modifier.kind,
            modifier.interval,
            modifier.at_time or (),
            cron=modifier.cron or "",
            timezone=modifier.timezone or "",
            start=modifier.start,
            end=modifier.end,
            max_runs=modifier.max_runs,
            jitter=modifier.jitter,
            misfire_grace=modifier.misfire_grace,
            coalesce=modifier.coalesce,
            durable=modifier.durable,
        )
        ack = await node.roundtrip(name, payload, receiver=modifier.receiver, schedule=spec)
        task = ScheduledTask(
            str(ack["uuid"]),
            str(ack["func_name"]),
            str(ack["receiver"]),
            self,
            last_fire=modifier.at_time[-1] if modifier.at_time else None,
            durable=bool(ack.get("durable", False)),
        )
        self.scheduled.add(task)
        return task

    async def system_call(self, receiver: str, name: str, *args: Any) -> Any:
        """Call system callback ``name`` (schedules: list, cancel) on ``receiver``."""
        node = self.runtime.require_node()
        if receiver == node.name:
            return await node.dispatch.schedules.system_call(name, args, src=node.name)
        if receiver not in node.peers:
            raise UnableToFindCandidate(f"process {receiver!r} is not connected")
        payload = msgspec.Raw(node.codec.encode_args(args, {}))
        return await node.roundtrip(name, payload, receiver=receiver)

    async def cancel_schedule(self, receiver: str, schedule_uuid: str) -> bool:
        """Cancel schedule ``schedule_uuid`` on ``receiver``; returns whether it was active
        (False: it has ended). An unknown uuid raises ``RemoteCallError`` (a ``LookupError``).

        A handle of this process for that schedule records this process as its canceller,
        with the executor's time of the cancel.
        """
        answer = await self.system_call(receiver, SYSTEM_CANCEL_SCHEDULE, schedule_uuid)
        if answer is None or answer is False:
            return False
        if isinstance(answer, bool) or not isinstance(answer, int | float):
            # An executor that answers only whether it cancelled: the time is ours.
            answer = time.time()
        node = self.runtime.require_node()
        self.scheduled.cancelled(schedule_uuid, receiver, node.name, float(answer))
        return True

    async def schedule_status(self, receiver: str, schedule_uuid: str) -> dict[str, Any] | None:
        """The executor's listing of schedule ``schedule_uuid`` (None: it is not there, or
        the executor has gone)."""
        try:
            listing = await self.system_call(receiver, SYSTEM_LIST_SCHEDULES)
        except (UnableToFindCandidate, RemoteStoppedUnexpectedly):
            return None
        for item in listing:
            if isinstance(item, dict) and item.get("uuid") == schedule_uuid:
                return item
        return None

    async def cancel_held_schedule(self, receiver: str, schedule_uuid: str) -> bool:
        """Cancel schedule ``schedule_uuid`` on ``receiver`` for its handle: as
        :meth:`cancel_schedule`, but an executor that has gone cancels nothing (False, and a
        log line) instead of raising."""
        try:
            return await self.cancel_schedule(receiver, schedule_uuid)
        except LookupError:  # the executor no longer knows it (it restarted): not active
            return False
        except (UnableToFindCandidate, RemoteStoppedUnexpectedly) as exc:
            logger.info(
                "schedule %s on %r was not cancelled: the executor is gone (%s)",
                schedule_uuid,
                receiver,
                exc,
            )
            return False
