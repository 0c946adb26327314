"""The callee side of a node: running the calls other nodes send here.

Plain ``def`` callbacks run in the node's :class:`~daffi._executor.Executor` (every ``def``
run does, whichever thread reads its call) and reply from there; async callbacks,
generators, streams into callbacks (see :mod:`daffi._callee_streams`) and system calls run
as tasks of the session's task group, each in its own cancel scope (registered before the
task starts, so that a ``Cancel`` or the first stream items arriving right behind the call
find it). The schedules it runs for others are its :class:`~daffi._schedule_host.ScheduleHost`'s
(they outlive reconnections).

Every path a call takes here (a worker thread, the work channel's thread, a served channel's
thread, the in-process controller's hand-over, a task) decodes its arguments and encodes its
result through one :class:`~daffi._callee_payloads.Payloads` (its ``arguments`` is inlined in
``_invoke``, the ``def`` path), and times its run for the metrics hook through one
:class:`~daffi._metering.Meter`. Functions sent with ``transfer_and_call`` arrive as a system
call (see :mod:`daffi._transfer`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import msgspec

from daffi._callee_payloads import Payloads
from daffi._callee_streams import CalleeStreams
from daffi._executor import Executor, Job, Outcome
from daffi._link import Link
from daffi._metering import UNOBSERVED, Meter, Run
from daffi._pickling import Pickling
from daffi._protocol import (
    SYSTEM_PREFIX,
    Call,
    CallbackInfo,
    Cancel,
    Credit,
    Error,
    Message,
    Result,
    StreamEnd,
    StreamItem,
)
from daffi._schedule_host import ScheduleHost
from daffi._transfer import SYSTEM_TRANSFER, run_transferred
from daffi.exceptions import (
    DaffiError,
    GlobalContextError,
    UnableToFindCandidate,
    daffi_error_info,
    error_info_from_exception,
)
from daffi.execution_modifiers import MIN_PERIOD_INTERVAL
from daffi.metrics import MetricsHook
from daffi.registry._store import CallbackEntry, CallbackRegistry

if TYPE_CHECKING:
    from daffi._codec import PayloadCodec

__all__ = [
    "DispatchHost",
    "Dispatcher",
]

logger = logging.getLogger("daffi.node")


class DispatchHost(Protocol):
    """What the dispatcher needs from its node."""

    @property
    def name(self) -> str: ...

    @property
    def registry(self) -> CallbackRegistry:
        """The callbacks the node offers."""
        ...

    @property
    def codec(self) -> PayloadCodec: ...

    @property
    def pickling(self) -> Pickling:
        """The node's side of the pickle rule (``allow_pickle``), shared with its callers."""
        ...

    @property
    def conn(self) -> Link | None:
        """The link to the controller (None while it is down)."""
        ...

    @property
    def peers(self) -> Mapping[str, Mapping[str, CallbackInfo]]:
        """The other nodes and what they offer."""
        ...

    async def send(self, msg: Message) -> None:
        """Send ``msg`` to the controller if connected (dropped otherwise)."""
        ...

    def check_size(self, payload: bytes, what: str) -> None:
        """Raise ``PayloadEncodeError`` if ``payload`` does not fit in a frame."""
        ...

    async def send_nowait(self, name: str, payload: msgspec.Raw, receiver: str | None) -> None:
        """Send a call that wants no reply."""
        ...


class Dispatcher:
    """Runs the calls that reach ``node``: callbacks of its registry, streams, schedules.

    Args:
        node: the node whose calls these are (its link, directory and name).
        workers: how many ``def`` callbacks may run at once in worker threads.
        max_concurrent_calls: incoming calls running at once beyond which new ones are
            refused with an error (a flood from a peer cannot exhaust this process).
        min_period_interval: the shortest schedule interval it accepts (seconds).
        allow_transfer: the node runs functions other processes send it
            (``Global(allow_transfer=True)``).
        state_dir: where the node keeps its durable schedules (None: it keeps none).
        metrics: the hook given a record of each run of a callback (None: none; see
            :mod:`daffi.metrics`).

    Attributes:
        pickling: the node's side of the pickle rule (``allow_pickle``).
    """

    def __init__(
        self,
        node: DispatchHost,
        *,
        workers: int,
        max_concurrent_calls: int,
        min_period_interval: float = MIN_PERIOD_INTERVAL,
        allow_transfer: bool = False,
        state_dir: str | None = None,
        metrics: MetricsHook | None = None,
    ) -> None:
        self.node = node
        self.registry = node.registry
        self.codec = node.codec
        self.workers = workers
        self.max_concurrent_calls = max_concurrent_calls
        #: how pickled arguments and results are treated (the node's, shared with its callers)
        self.pickling = node.pickling
        #: decodes every call's arguments and encodes its results, on every path
        self.payloads = Payloads(node.codec, node.pickling, node)
        #: run functions other processes send (transfer_and_call)
        self.allow_transfer = allow_transfer
        self._running: dict[tuple[str, int], anyio.CancelScope] = {}
        #: runs every ``def`` callback of this node, in at most ``workers`` slots
        self.executor = Executor(workers, name=node.name)
        #: times each run of a callback for the metrics hook (every path finishes its runs)
        self.meter = Meter(metrics, node.name)
        #: streams into callbacks, and generator callbacks
        self.streams = CalleeStreams(self)
        #: the schedules this node runs for others, and the system calls about them
        self.schedules = ScheduleHost(
            node, self.run_entry, min_period_interval, state_dir, meter=self.meter
        )

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def conn(self) -> Link | None:
        return self.node.conn

    async def send(self, msg: Message) -> None:
        await self.node.send(msg)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Host the executor and the scheduler (once a schedule needs it) until cancelled.

        The executor's threads end with it: it waits, bounded, for ``def`` callbacks still
        running (see :meth:`Executor.close`).
        """
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.executor.run)
                self.schedules.task_group = tg
                self.schedules.durable.start(tg)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self.schedules.task_group = None

    # ------------------------------------------------------------------ incoming messages

    async def on_call(self, msg: Call, tg: anyio.abc.TaskGroup) -> None:
        """Start running ``msg`` (in a worker thread, or as a task of ``tg``)."""
        entry = self._plain_entry(msg)
        why = self._why_refused(msg, entry)
        if why is not None:
            if msg.want_result:
                await self.node.send(self._refusal(msg, why))
            return
        if entry is not None and self._submit(msg, entry):
            return
        key = (msg.src, msg.id)
        scope = self._running[key] = anyio.CancelScope()
        if msg.timeout is not None:
            scope.deadline = anyio.current_time() + msg.timeout
        if msg.stream_in:
            self.streams.open_inbound(key)
        tg.start_soon(self._run_call, msg, scope)

    def start_in_thread(self, msg: Call) -> bool:
        """Start ``msg`` in a worker thread if it is a plain call of a ``def`` callback.

        Synchronous, on daffi's loop: the controller of this process hands such calls over
        without waking the session task. Returns False for any other call (and when the
        node is at ``max_concurrent_calls``), which :meth:`on_call` then handles.
        """
        entry = self._plain_entry(msg)
        if entry is None or self._why_refused(msg, entry) is not None:
            return False  # on_call answers the refusal
        return self._submit(msg, entry)

    def _submit(self, msg: Call, entry: CallbackEntry) -> bool:
        """Hand a plain call of a ``def`` callback to the executor (False: not connected, or
        stopping; then the task path answers)."""
        conn = self.node.conn
        if conn is None:
            return False
        run = self.meter.start(msg.name, msg.src, "call")
        try:
            self.executor.submit(
                self._job(msg),
                self._invoke,
                msg,
                entry,
                done=functools.partial(self._reply_from_thread, msg, conn, run),
            )
        except RuntimeError:  # stopping: the task path answers with an error
            return False
        return True

    def on_stream(self, msg: StreamItem | StreamEnd) -> None:
        """The next argument item of a streaming call (or its end)."""
        self.streams.on_stream(msg)

    def on_credit(self, msg: Credit) -> None:
        """A consumer allows a generator callback running here ``msg.n`` more items."""
        self.streams.on_credit(msg)

    def on_cancel(self, msg: Cancel) -> None:
        """The caller gave up: cancel the call's scope, or (a ``def`` callback) keep its run
        from starting, or drop its result."""
        running = self._running.get((msg.src, msg.id))
        if running is not None:
            running.cancel()
        self.executor.cancel((msg.src, msg.id))

    @property
    def _full(self) -> bool:
        """Whether ``max_concurrent_calls`` calls already run here."""
        return len(self._running) + self.executor.load >= self.max_concurrent_calls

    def _why_refused(self, msg: Call, entry: CallbackEntry | None) -> str | None:
        """Why this node refuses ``msg`` at once (None: it may run): it is at
        ``max_concurrent_calls``, or the call needs a worker and every worker is held by
        calls whose callers gave up (it would wait for them in vain). ``entry``: its plain
        ``def`` callback, if it has one (else it is looked up)."""
        if self._full:
            return (
                f"process {self.name!r} is overloaded: {self.max_concurrent_calls} calls are "
                "already running (max_concurrent_calls); retry later"
            )
        if entry is None:
            entry = self.registry.get(msg.name)
            if entry is None or not entry.runs_in_thread or msg.schedule is not None:
                return None  # no worker needed
        held_by = self.executor.held_by_abandoned()
        if not held_by:
            return None
        return (
            f"process {self.name!r} cannot run {msg.name!r}: all its {self.workers} "
            f"workers are held by calls of {', '.join(map(repr, held_by))} whose callers "
            "gave up (a def callback cannot be interrupted); retry once they return"
        )

    def _refusal(self, msg: Call, why: str) -> Error:
        """The answer to a refused call (logged, and recorded for the metrics hook)."""
        self._timed_run(msg).finish("refused")
        logger.warning(
            "node %r refused a call of %r from %r: %s", self.name, msg.name, msg.src, why
        )
        return Error(msg.id, msg.src, daffi_error_info("GlobalContextError", why, self.name))

    @staticmethod
    def _job(msg: Call) -> Job:
        """The executor's record of ``msg``, made when it arrives (its deadline counts from
        now)."""
        return Job((msg.src, msg.id), msg.name, msg.timeout, msg.chain)

    def run_here(self, msg: Call) -> Result | Error:
        """Run a call of a ``def`` callback in the calling thread (a work channel's thread),
        waiting for one of the ``workers`` slots if all are taken.

        Always returns a reply, even for a call cancelled or past its deadline (then an
        error, which the controller routes nowhere if the caller gave up): the reply tells
        the controller the channel is free again.
        """
        entry = self._plain_entry(msg)
        if entry is None:
            text = f"process {self.name!r} has no def callback {msg.name!r} to run here"
            return Error(
                msg.id, msg.src, daffi_error_info("UnableToFindCandidate", text, self.name)
            )
        why = self._why_refused(msg, entry)
        if why is not None:
            return self._refusal(msg, why)
        run = self.meter.start(msg.name, msg.src, "call")
        outcome = self.executor.run_here(self._job(msg), self._invoke, msg, entry)
        run.finish_outcome(outcome)
        reply: Result | Error = outcome.value if outcome.counts else self._not_run(msg, outcome)
        return reply

    def run_inline(self, msg: Call) -> Result | Error | None:
        """Run a plain call of a ``def`` callback in the calling thread, in one of the
        ``workers`` slots; None (nothing done) for any other call or when no slot is free.

        For the controller in this process: a thread serving a call channel runs the calls
        it reads this way, so they need no hand-off to the loop and a worker thread.
        """
        entry = self._plain_entry(msg)
        if entry is None:
            return None
        why = self._why_refused(msg, entry)
        if why is not None:
            return self._refusal(msg, why)
        run = self.meter.start(msg.name, msg.src, "call")
        outcome = self.executor.run_here(self._job(msg), self._invoke, msg, entry, wait=False)
        if outcome.status == "busy":
            return None  # not run here: the path that runs it times it
        run.finish_outcome(outcome)
        reply: Result | Error = outcome.value if outcome.counts else self._not_run(msg, outcome)
        return reply

    def _not_run(self, msg: Call, outcome: Outcome) -> Error:
        """The reply to a call whose run does not count (cancelled, late, stopping): the
        caller has given up on it already, unless the node is stopping."""
        if outcome.status == "closed":
            text = f"process {self.name!r} stopped before running {msg.name!r}"
            return Error(
                msg.id, msg.src, daffi_error_info("RemoteStoppedUnexpectedly", text, self.name)
            )
        text = f"call to {msg.name!r} was {outcome.status} on {self.name!r}; result dropped"
        return Error(msg.id, msg.src, daffi_error_info("TimeoutError", text, self.name))

    def _plain_entry(self, msg: Call) -> CallbackEntry | None:
        """The callback ``msg`` calls, if a thread runs it start to end: a ``def`` callback
        (no generator), called plainly (no schedule, no stream of arguments)."""
        entry = self.registry.get(msg.name)
        if entry is None or not entry.runs_in_thread or msg.schedule is not None or msg.stream_in:
            return None
        return entry

    def _invoke(self, msg: Call, entry: CallbackEntry) -> Result | Error:
        """Run ``entry`` for ``msg`` (in an executor slot): its reply, success or failure."""
        try:
            if msg.pickled:  # as in Payloads.arguments, inlined on this path
                args, kwargs = self.pickling.loads_args(msg)
            else:
                args, kwargs = self.codec.decode_args(msg.payload)
                if entry.structure_args is not None:
                    args, kwargs = entry.structure_args(args, kwargs)
            value = entry.fn(*args, **kwargs)
            return self.payloads.reply(value, msg)
        except BaseException as exc:
            # In a worker thread even SystemExit or KeyboardInterrupt raised by the callback
            # (signals only reach the main thread) is the call's failure: the caller gets it.
            if not isinstance(exc, DaffiError):
                logger.debug("callback %r raised for %r", msg.name, msg.src, exc_info=True)
            return Error(msg.id, msg.src, error_info_from_exception(exc, self.name))

    def _reply_from_thread(self, msg: Call, conn: Link, run: Run, outcome: Outcome) -> None:
        """Send the reply of a ``def`` callback the executor ran for ``msg`` (in its thread);
        nothing if the run does not count (the executor logged why)."""
        run.finish_outcome(outcome)
        if outcome.counts and msg.want_result:
            with contextlib.suppress(anyio.BrokenResourceError):
                conn.send_threadsafe(outcome.value)

    async def _run_call(self, msg: Call, scope: anyio.CancelScope) -> None:
        key = (msg.src, msg.id)
        reply: Result | Error | None = None
        run = self._timed_run(msg)
        try:
            with scope:
                try:
                    value = await self._execute(msg)
                    reply = self.payloads.reply(value, msg)
                except Exception as exc:
                    if not isinstance(exc, DaffiError):
                        logger.debug("callback %r raised for %r", msg.name, msg.src, exc_info=True)
                    reply = Error(msg.id, msg.src, error_info_from_exception(exc, self.name))
                finally:
                    self._running.pop(key, None)
                    self.streams.forget(key)
        finally:
            if reply is not None:
                run.finish_reply(reply)
            else:
                run.finish_cancelled()
        if scope.cancelled_caught:
            logger.debug("node %r: call %r from %r was cancelled", self.name, msg.name, msg.src)
            return  # the caller is gone or timed out; nobody reads a reply
        if msg.want_result and reply is not None:
            await self.node.send(reply)

    def _timed_run(self, msg: Call) -> Run:
        """The timed run of a call on the task path: a run of a callback (a plain call, or a
        stream), not a system call or a schedule's request (each of its runs is timed)."""
        if (
            self.meter.hook is None
            or msg.schedule is not None
            or msg.name.startswith(SYSTEM_PREFIX)
        ):
            return UNOBSERVED  # (no lookup on the call path of a node without a hook)
        entry = self.registry.get(msg.name)
        if entry is None:
            return UNOBSERVED
        streams = msg.stream_in or entry.is_generator or entry.is_async_generator
        return self.meter.start(msg.name, msg.src, "stream" if streams else "call")

    async def _execute(self, msg: Call) -> Any:
        if msg.name.startswith(SYSTEM_PREFIX):
            return await self._system_call(msg)
        entry = self.registry.get(msg.name)
        if entry is None:
            raise UnableToFindCandidate(
                f"process {self.name!r} has no callback {msg.name!r} (it offers "
                f"{sorted(self.registry.names())})"
            )
        if msg.stream_in:
            return await self.streams.run_stream_in(msg, entry)
        args, kwargs = self.payloads.arguments(msg, entry)
        if msg.schedule is not None:
            return await self.schedules.accept(msg, msg.schedule, entry, args, kwargs)
        if entry.is_generator or entry.is_async_generator:
            return await self.streams.run_generator(msg, entry, args, kwargs)
        return await self.run_entry(entry, args, kwargs)

    async def _system_call(self, msg: Call) -> Any:
        if msg.name == SYSTEM_TRANSFER:
            return await run_transferred(self, msg)
        args, _ = self.payloads.arguments(msg, None)
        return await self.schedules.system_call(msg.name, args, src=msg.src)

    async def run_entry(self, entry: CallbackEntry, args: Any, kwargs: dict[str, Any]) -> Any:
        """Run a callback here: async ones on the loop, sync ones in a worker thread."""
        if entry.is_generator or entry.is_async_generator:
            raise GlobalContextError(
                f"callback {entry.name!r} is a generator: it can only be called by a fetcher "
                "(PERIOD cannot schedule it)"
            )
        if entry.is_async:
            return await entry.fn(*args, **kwargs)
        func = functools.partial(entry.fn, *args, **kwargs) if kwargs else entry.fn
        call_args = () if kwargs else tuple(args)
        # A sync callback cannot be interrupted: on cancel its thread finishes on its own and
        # the result is dropped.
        return await self.executor.run_async(Job(None, entry.name), func, *call_args)
