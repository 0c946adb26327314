"""What the execution modifiers mean: how a fetcher's call runs under FG, BG, BROADCAST and
PERIOD, from which thread or loop, and what it returns.

:class:`Execution` is what fetchers call through (``daffi._context.Fetching``): ``def``
fetchers (:meth:`Execution.execute`), ``async def`` fetchers
(:meth:`Execution.execute_async`), and generator fetchers, whose items stream to the callback
(:meth:`Execution.stream_in`, :meth:`Execution.stream_in_async`). ``PERIOD`` requests go
to :class:`daffi._schedule_requests.ScheduleRequests`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import anyio

from daffi._calls import UploadGroup
from daffi._context import Arguments
from daffi._crossloop import Portal, run_in_portal
from daffi._node import Node
from daffi._outgoing import mark_outgoing, outgoing_errors
from daffi._results import AsyncResult, Bridge, ScheduledTasks
from daffi._schedule_requests import ScheduleRequests
from daffi._streams import CREDIT_BATCH, AsyncDownloadProxy, Download, SyncDownload, take_batch
from daffi.exceptions import DaffiError, GlobalContextError
from daffi.execution_modifiers import BG, BROADCAST, FG, PERIOD, ExecModifier

__all__ = ["Execution", "Runner"]

logger = logging.getLogger("daffi.global")


class Runner(Bridge, Protocol):
    """The runtime calls run on (``daffi._runtime.Runtime``): its node, its state, and the
    bridge to its loop."""

    @property
    def node(self) -> Node | None: ...

    @property
    def portal(self) -> Portal | None: ...

    @property
    def started(self) -> bool: ...

    @property
    def stopped(self) -> bool: ...

    def require_node(self) -> Node: ...

    def ensure_started_sync(self) -> None: ...

    async def ensure_started(self) -> None: ...

    def stopped_error(self) -> GlobalContextError: ...


class Execution:
    """Runs fetchers' calls through ``runtime`` as their execution modifiers say."""

    def __init__(self, runtime: Runner, scheduled: ScheduledTasks) -> None:
        self.runtime = runtime
        #: PERIOD requests and the system calls about schedules (daffi._schedule_requests)
        self.schedules = ScheduleRequests(runtime, scheduled)

    @outgoing_errors
    def execute(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: ExecModifier,
        structure: Callable[[Any], Any] | None,
    ) -> Any:
        """A ``def`` fetcher's call: blocks for its result (``BG`` and fire-and-forget
        ``BROADCAST`` return at once)."""
        runtime = self.runtime
        if isinstance(modifier, BG) or (
            isinstance(modifier, BROADCAST) and not modifier.return_result
        ):
            self._ready_for_background(name)
            return self._start_background(name, args, kwargs, modifier, structure)
        runtime.ensure_started_sync()
        if runtime.on_loop_thread():
            raise GlobalContextError(
                f"fetcher {name!r} is a `def` fetcher and blocks, but it was called from the "
                "thread that runs daffi's event loop (an `async def` callback, or an async app "
                "whose Global runs in its loop), where waiting would deadlock it; declare the "
                f"fetcher `async def` and await it (for `g.call.{name}(...) & FG`: `await "
                f"g.call.{name}(...).fg_async()`), or call it from a worker thread "
                "(anyio.to_thread.run_sync)"
            )
        node = runtime.node
        if node is not None and runtime.started and not runtime.stopped:
            # Fast paths: the calling thread sends and waits itself, no portal crossing.
            if isinstance(modifier, FG):
                handled, value = node.call_from_thread(
                    name,
                    args,
                    kwargs,
                    receiver=modifier.receiver,
                    timeout=modifier.timeout,
                    structure=structure,
                )
                if handled:
                    return value
            elif isinstance(modifier, BROADCAST) and not modifier.eta:
                handled, value = node.broadcast_from_thread(
                    name, args, kwargs, timeout=modifier.timeout, structure=structure
                )
                if handled:
                    return value
        result = runtime.blocking(
            "fetcher", "fetcher", self._run_modifier, name, args, kwargs, modifier, structure
        )
        if isinstance(result, Download):
            assert runtime.portal is not None
            return SyncDownload(result, runtime.portal)
        return result

    async def execute_async(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: ExecModifier,
        structure: Callable[[Any], Any] | None,
    ) -> Any:
        """An ``async def`` fetcher's call, awaited on any loop (asyncio or trio)."""
        # Marked inline rather than with @outgoing_errors: a wrapping coroutine would cost
        # every awaited call a frame, on the path of 64-in-flight async apps.
        try:
            runtime = self.runtime
            node = runtime.node
            if (
                type(modifier) is FG
                and node is not None
                and not runtime.stopped
                and runtime.on_loop_thread()
            ):
                # The common case, kept short: an FG call from daffi's own loop.
                payload, info = node.prepare_info(name, args, kwargs, modifier.receiver)
                if not info.is_generator:
                    return await node.roundtrip(
                        name,
                        payload,
                        receiver=modifier.receiver,
                        timeout=modifier.timeout,
                        structure=structure,
                    )
            elif type(modifier) is FG and not runtime.on_loop_thread():
                # Awaited on another loop (a daffi-2-style app whose Global runs in a thread of
                # its own): the call goes out from this thread, and only its answer crosses.
                await runtime.ensure_started()
                node = runtime.node
                if node is not None:
                    payload, info = node.prepare_info(name, args, kwargs, modifier.receiver)
                    if not info.is_generator:
                        sent, value = await node.call_from_other_loop(
                            name,
                            payload,
                            receiver=modifier.receiver,
                            timeout=modifier.timeout,
                            structure=structure,
                        )
                        if sent:
                            return value
            if isinstance(modifier, BG) or (
                isinstance(modifier, BROADCAST) and not modifier.return_result
            ):
                await runtime.ensure_started()
                return self._start_background(name, args, kwargs, modifier, structure)
            result = await runtime.run_on_loop(
                self._run_modifier, name, args, kwargs, modifier, structure
            )
            if isinstance(result, Download) and not runtime.on_loop_thread():
                assert runtime.portal is not None
                return AsyncDownloadProxy(result, runtime.portal)
            return result
        except DaffiError as exc:
            mark_outgoing(exc)
            raise

    def _ready_for_background(self, name: str) -> None:
        """Before a call that returns at once (BG, fire-and-forget): the core runs, or is
        started in its thread; raises why it cannot take the call."""
        runtime = self.runtime
        runtime.ensure_started_sync()
        if runtime.stopped:
            raise runtime.stopped_error()
        if not runtime.started and runtime.on_loop_thread():
            raise GlobalContextError(
                f"the call of {name!r} was made while this Global is starting in this event "
                "loop; await its start first (e.g. `await g.wait_function_async(...)`)"
            )

    async def _run_modifier(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: ExecModifier,
        structure: Callable[[Any], Any] | None,
    ) -> Any:
        """A call that waits for its result, on daffi's loop."""
        node = self.runtime.require_node()
        if isinstance(modifier, FG):
            payload, info = node.prepare_info(name, args, kwargs, modifier.receiver)
            if info.is_generator:
                return await node.open_download(
                    name,
                    payload,
                    receiver=modifier.receiver,
                    timeout=modifier.timeout,
                    structure=structure,
                )
            return await node.roundtrip(
                name,
                payload,
                receiver=modifier.receiver,
                timeout=modifier.timeout,
                structure=structure,
            )
        if isinstance(modifier, BROADCAST):
            targets = node.broadcast_targets(name)
            payload, info = node.prepare_info(name, args, kwargs, targets[0])
            if modifier.eta:
                await anyio.sleep(modifier.eta)
            return await node.broadcast(
                name,
                payload,
                targets,
                timeout=modifier.timeout,
                structure=structure,
                stream=info.is_generator,
            )
        if isinstance(modifier, PERIOD):
            return await self.schedules.schedule(node, name, args, kwargs, modifier)
        raise GlobalContextError(f"unexpected execution modifier {modifier!r}")

    def _start_background(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: BG | BROADCAST,
        structure: Callable[[Any], Any] | None,
    ) -> AsyncResult | None:
        """BG, and BROADCAST without a result: checked and encoded in the calling thread
        (errors are raised at once), the rest runs in the background."""
        runtime = self.runtime
        node = runtime.require_node()
        if isinstance(modifier, BG):
            targets = [modifier.receiver] if modifier.receiver is not None else [None]
            payload, info = node.prepare_info(name, args, kwargs, modifier.receiver)
        else:
            targets = list(node.broadcast_targets(name))
            payload, info = node.prepare_info(name, args, kwargs, targets[0])
        if not modifier.return_result:
            runtime.spawn(self._send_later, node, name, payload, targets, modifier.eta)
            return None
        assert isinstance(modifier, BG)
        if (
            not runtime.on_loop_thread()
            and modifier.timeout is None
            and not modifier.eta
            and not info.is_generator
        ):
            # From any other thread: the call goes out from it and the receive loop resolves
            # the future; no task on daffi's loop (the same meaning as _call_later's).
            future = node.call_in_background(
                name, payload, receiver=modifier.receiver, structure=structure
            )
            if future is not None:
                return AsyncResult(future, runtime, name)
        fut = runtime.spawn(
            self._call_later, node, name, payload, modifier, structure, info.is_generator
        )
        return AsyncResult(fut, runtime, name)

    async def _send_later(
        self, node: Node, name: str, payload: Any, targets: list[str | None], eta: float | None
    ) -> None:
        if eta:
            await anyio.sleep(eta)
        for target in targets:
            try:
                await node.send_nowait(name, payload, target)
            except Exception as exc:  # fire-and-forget: nobody to tell but the log
                logger.warning("fire-and-forget call %r to %s failed: %s", name, target, exc)

    async def _call_later(
        self,
        node: Node,
        name: str,
        payload: Any,
        modifier: BG,
        structure: Callable[[Any], Any] | None,
        stream: bool,
    ) -> Any:
        if modifier.eta:
            await anyio.sleep(modifier.eta)
        if stream:  # a generator callback: the result is the list of its values
            download = await node.open_download(
                name,
                payload,
                receiver=modifier.receiver,
                timeout=modifier.timeout,
                structure=structure,
            )
            return await download.collect()
        return await node.roundtrip(
            name,
            payload,
            receiver=modifier.receiver,
            timeout=modifier.timeout,
            structure=structure,
        )

    # ------------------------------------------------------------------ streaming fetchers

    async def _open_uploads(self, name: str, modifier: ExecModifier) -> UploadGroup:
        node = self.runtime.require_node()
        if isinstance(modifier, BROADCAST):
            receivers: list[str | None] = list(node.broadcast_targets(name))
        elif isinstance(modifier, FG | BG):
            receivers = [modifier.receiver]
        else:
            raise GlobalContextError(
                f"a generator fetcher streams its items; {type(modifier).__name__} cannot "
                "stream (use FG, BG or BROADCAST)"
            )
        return await node.open_uploads(
            name, receivers, timeout=modifier.timeout, broadcast=isinstance(modifier, BROADCAST)
        )

    @outgoing_errors
    def stream_in(self, name: str, items: Iterator[Arguments], modifier: ExecModifier) -> Any:
        """Send a sync generator fetcher's items (driven in the calling thread)."""
        runtime = self.runtime
        if isinstance(modifier, BG):
            self._ready_for_background(name)
            fut = runtime.spawn(self._stream_in_background, name, items, modifier)
            return AsyncResult(fut, runtime, name)
        runtime.ensure_started_sync()
        if runtime.on_loop_thread():
            raise GlobalContextError(
                f"fetcher {name!r} is a `def` generator and blocks, but it was called from the "
                "thread that runs daffi's event loop; make it `async def` or use BG (for "
                f"`g.call.{name}(items).stream()`: `await g.call.{name}(items).stream_async()`)"
            )
        group: UploadGroup = runtime.blocking(
            "fetcher", "fetcher", self._open_uploads, name, modifier
        )
        portal = runtime.portal
        assert portal is not None
        try:
            while True:
                batch, exhausted, error = take_batch(items, CREDIT_BATCH)
                if batch:
                    portal.call(group.push, batch)
                if error is not None:
                    raise error
                if exhausted:
                    break
            return portal.call(group.finish)
        except BaseException:
            with contextlib.suppress(Exception):
                portal.call(group.abort)
            raise

    async def _stream_in_background(
        self, name: str, items: Iterator[Arguments], modifier: ExecModifier
    ) -> Any:
        group = await self._open_uploads(name, modifier)
        try:
            while True:
                batch, exhausted, error = await anyio.to_thread.run_sync(
                    take_batch, items, CREDIT_BATCH, abandon_on_cancel=True
                )
                if batch:
                    await group.push(batch)
                if error is not None:
                    raise error
                if exhausted:
                    return await group.finish()
        except BaseException:
            await group.abort()
            raise

    @outgoing_errors
    async def stream_in_async(
        self, name: str, items: AsyncIterator[Arguments], modifier: ExecModifier
    ) -> Any:
        """Send an async generator fetcher's items (driven in the caller's loop)."""
        runtime = self.runtime
        await runtime.ensure_started()
        on_loop = runtime.on_loop_thread()
        if isinstance(modifier, BG):
            if not on_loop:
                raise GlobalContextError(
                    "BG with an `async def` generator fetcher needs the fetcher to run in "
                    "daffi's own loop: use `async with Global(...)`, FG, or a `def` generator"
                )
            fut = runtime.spawn(self._drive_async, name, items, modifier)
            return AsyncResult(fut, runtime, name)
        if on_loop:
            return await self._drive_async(name, items, modifier)
        portal = runtime.portal
        assert portal is not None
        group = await run_in_portal(portal, self._open_uploads, name, modifier)
        try:
            async for item in items:
                await run_in_portal(portal, group.push, [item])
            return await run_in_portal(portal, group.finish)
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await run_in_portal(portal, group.abort)
            raise

    async def _drive_async(
        self, name: str, items: AsyncIterator[Arguments], modifier: ExecModifier
    ) -> Any:
        group = await self._open_uploads(name, modifier)
        try:
            async for item in items:
                await group.push([item])
            return await group.finish()
        except BaseException:
            await group.abort()
            raise
