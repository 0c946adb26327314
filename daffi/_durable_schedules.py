"""A node's durable schedules (``PERIOD(durable=True)``): kept in its schedule store, and
resumed from it when the node starts again under the same state directory.

The store (:mod:`daffi.scheduling._store`) is opened when the node starts if its file
exists, else with the first durable schedule. At start, every stored schedule is added to
the scheduler again with its runs, skipped times and the time it last fired, so the misfire
policy decides what happens to the times that passed while the node was down (see
:class:`daffi.scheduling.Scheduler`). Its arguments are decoded for the callback when it
first runs: a callback registered after the node started is found.

A store that cannot be used (corrupt, locked by another process, unwritable) is logged once;
the node runs on, its other schedules work, and durable requests are refused with the reason.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import anyio.to_thread
import msgspec

from daffi._protocol import ScheduleSpec
from daffi.exceptions import DaffiError, GlobalContextError

if TYPE_CHECKING:
    from daffi._codec import PayloadCodec
    from daffi.registry._store import CallbackEntry, CallbackRegistry
    from daffi.scheduling import ScheduleEntry, Scheduler, Trigger
    from daffi.scheduling._bounds import Bounds
    from daffi.scheduling._store import Journal, StoredSchedule

__all__ = ["DurableSchedules"]

logger = logging.getLogger("daffi.node")


class _Host(Protocol):
    """What the durable schedules use of their node's schedules
    (:class:`daffi._schedule_host.ScheduleHost`)."""

    @property
    def name(self) -> str: ...

    @property
    def registry(self) -> CallbackRegistry: ...

    @property
    def codec(self) -> PayloadCodec: ...

    @property
    def task_group(self) -> anyio.abc.TaskGroup | None: ...

    async def running_scheduler(self) -> Scheduler: ...

    def runner(
        self,
        func_name: str,
        requester: str,
        arguments: Callable[[CallbackEntry], tuple[list[Any], dict[str, Any]]],
    ) -> Callable[[], Awaitable[None]]: ...

    def trigger(self, spec: ScheduleSpec, name: str, src: str, origin: float | None) -> Trigger: ...

    def bounds(self, spec: ScheduleSpec, src: str) -> Bounds: ...


class DurableSchedules:
    """The durable schedules of ``host``'s node, in the store under ``state_dir`` (None: the
    node keeps none: its name was generated and it was given no state directory).

    Attributes:
        error: why this node cannot keep durable schedules (None: it can, as far as known).
    """

    def __init__(self, host: _Host, state_dir: str | None) -> None:
        self.host = host
        self.state_dir = state_dir
        self.error: str | None = None
        self._journal: Journal | None = None
        self._opening = anyio.Lock()
        self._resumed: anyio.Event | None = None

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Resume the stored schedules, if there is a store (in a task of ``task_group``)."""
        from daffi.scheduling._store import STORE_FILE

        # One stat, on the loop: a node without a store starts no thread for it.
        if self.state_dir is None or not os.path.exists(os.path.join(self.state_dir, STORE_FILE)):
            return
        self._resumed = anyio.Event()
        task_group.start_soon(self._resume, name=f"resume schedules of {self.host.name!r}")

    async def ready(self) -> None:
        """Wait until the stored schedules are resumed (at once if there is nothing to)."""
        if self._resumed is not None:
            await self._resumed.wait()

    async def sync(self) -> None:
        """Wait until what the schedules wrote so far (a removal) is committed."""
        if self._journal is not None:
            await self._journal.sync()

    async def store(
        self, entry: ScheduleEntry, spec: ScheduleSpec, arguments: bytes, origin: float | None
    ) -> None:
        """Commit the new schedule ``entry`` (made from ``spec`` with ``arguments``) to the
        store.

        Raises:
            GlobalContextError: the node keeps no durable schedules, or the store failed.
        """
        from daffi.scheduling._store import StoredSchedule, StoreError

        journal = await self._journal_or_raise(entry.func_name)
        stored = StoredSchedule(
            entry.uuid,
            entry.func_name,
            entry.requester,
            msgspec.msgpack.encode(spec),
            arguments,
            origin,
            time.time(),
        )
        try:
            await journal.write(stored)
        except StoreError as exc:
            raise GlobalContextError(
                f"node {self.host.name!r} could not store the durable schedule of "
                f"{entry.func_name!r}: {exc}"
            ) from None

    async def _journal_or_raise(self, func_name: str) -> Journal:
        if self.state_dir is None:
            raise GlobalContextError(
                f"node {self.host.name!r} keeps no durable schedules (asked for "
                f"{func_name!r}): its process name was generated, so a restart could not find "
                "them; give it Global(process_name=...) or Global(state_dir=...)"
            )
        async with self._opening:
            if self._journal is None and self.error is None:
                await self._open()
        if self._journal is None:
            raise GlobalContextError(
                f"node {self.host.name!r} cannot keep durable schedules (asked for "
                f"{func_name!r}): {self.error}"
            )
        return self._journal

    async def _open(self) -> list[StoredSchedule]:
        """Open the store and hand it to the scheduler; what it holds ([] if it cannot be
        opened: :attr:`error` says why, and it is logged)."""
        from daffi.scheduling._store import Journal, ScheduleStore, StoreError

        assert self.state_dir is not None
        journal = Journal(ScheduleStore(self.state_dir))
        try:
            rows = await journal.open()
        except StoreError as exc:
            self.error = str(exc)
            logger.error(
                "node %r: durable schedules are off: %s. Other schedules work as usual; "
                "repair or move the file away, then restart the node to use durable "
                "schedules again",
                self.host.name,
                exc,
            )
            return []
        host = self.host
        assert host.task_group is not None
        scheduler = await host.running_scheduler()
        await host.task_group.start(journal.run)
        scheduler.journal = journal
        self._journal = journal
        return rows

    async def _resume(self) -> None:
        try:
            async with self._opening:
                rows = await self._open()
            scheduler = await self.host.running_scheduler() if rows else None
            resumed = 0
            for row in rows:
                entry = self._entry(row)
                if entry is not None and scheduler is not None:
                    scheduler.add(entry)
                    resumed += 1
            if rows:
                logger.info(
                    "node %r: resumed %d durable schedule(s) from its store in %s",
                    self.host.name,
                    resumed,
                    self.state_dir,
                )
        finally:
            assert self._resumed is not None
            self._resumed.set()

    def _entry(self, row: StoredSchedule) -> ScheduleEntry | None:
        """The schedule ``row`` keeps, as it was when it last fired (None, logged: the row
        cannot be resumed; it stays in the store)."""
        from daffi.scheduling import ScheduleEntry

        host = self.host
        try:
            spec = msgspec.msgpack.decode(row.spec, type=ScheduleSpec)
            trigger = host.trigger(spec, row.func_name, row.requester, row.origin)
            bounds = host.bounds(spec, row.requester)
        except (msgspec.DecodeError, DaffiError) as exc:
            logger.error(
                "node %r: durable schedule %s of %r cannot be resumed (it stays in the store): %s",
                host.name,
                row.uuid,
                row.func_name,
                exc,
            )
            return None
        return ScheduleEntry(
            row.uuid,
            row.func_name,
            trigger,
            self.host.runner(row.func_name, row.requester, self._decoder(row.arguments)),
            requester=row.requester,
            runs=row.runs,
            skipped=row.skipped,
            last_error=row.last_error,
            bounds=bounds,
            durable=True,
            last_fire=row.last_fire,
            error_info=row.error_info,
        )

    def _decoder(
        self, arguments: bytes
    ) -> Callable[[CallbackEntry], tuple[list[Any], dict[str, Any]]]:
        """The stored ``arguments``, decoded for the callback registered at the time of a run
        (once, and again if it was registered anew)."""
        codec = self.host.codec
        # (the callback the arguments were decoded for, the arguments)
        decoded: list[tuple[CallbackEntry, list[Any], dict[str, Any]]] = []

        def decode(current: CallbackEntry) -> tuple[list[Any], dict[str, Any]]:
            if not decoded or decoded[0][0] is not current:
                args, kwargs = codec.decode_args(msgspec.Raw(arguments))
                if current.structure_args is not None:
                    args, kwargs = current.structure_args(args, kwargs)
                decoded[:] = [(current, args, kwargs)]
            return decoded[0][1], decoded[0][2]

        return decode
