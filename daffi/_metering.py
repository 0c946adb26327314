"""Timing the runs of a node's callbacks for its metrics hook (``Global(metrics=...)``).

A run is started when its call reaches the node (:meth:`Meter.start`) and finished where its
reply is made, on whichever path ran it: the executor's outcome for a ``def`` callback run by a
thread (:meth:`Run.finish_outcome`), the reply or the exception of a run on daffi's loop
(:meth:`Run.finish_reply`, :meth:`Run.finish_cancelled`), and a schedule's run
(:meth:`Run.finish`). Without a hook, :meth:`Meter.start` returns one shared object whose
methods do nothing, so an unobserved call pays one method call.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from daffi._protocol import Error
from daffi.exceptions import RemoteCallError
from daffi.metrics import CallRecord, MetricsHook, RunKind, RunOutcome

if TYPE_CHECKING:
    from daffi._executor import Outcome

__all__ = ["UNOBSERVED", "Meter", "Run", "error_name"]

logger = logging.getLogger("daffi.metrics")


class Run:
    """One run of a callback being timed: finished once, by one of the ``finish`` methods."""

    __slots__ = ("_t0", "callback", "caller", "kind", "meter", "started")

    def __init__(self, meter: Meter, callback: str, caller: str, kind: RunKind) -> None:
        self.meter = meter
        self.callback = callback
        self.caller = caller
        self.kind = kind
        self.started = time.time()
        self._t0 = time.perf_counter()

    def finish(self, outcome: RunOutcome, error: str | None = None) -> None:
        """Hand the run's record to the hook (``error``: the exception's class name)."""
        duration = time.perf_counter() - self._t0
        record = CallRecord(
            self.callback,
            self.meter.node,
            self.caller,
            self.kind,
            outcome,
            error,
            self.started,
            duration,
        )
        self.meter.emit(record)

    def finish_reply(self, reply: Any) -> None:
        """Finish with the reply the run made: an ``Error`` is a failure, anything else
        (a ``Result``, or None for a run without one) a success."""
        if isinstance(reply, Error):
            self.finish("error", reply.error.type_name)
        else:
            self.finish("ok")

    def finish_outcome(self, outcome: Outcome) -> None:
        """Finish with the executor's outcome of a ``def`` callback's run, whose value is its
        reply when it counts."""
        if outcome.counts:
            self.finish_reply(outcome.value)
        else:
            self.finish("cancelled")  # cancelled, late or closed: not finished for its caller

    def finish_cancelled(self) -> None:
        """Finish a run that was cancelled: its caller gave up, its deadline passed, or the
        node stopped."""
        self.finish("cancelled")


class _Unobserved(Run):
    """The run of a node without a hook: nothing is timed, nothing is recorded."""

    __slots__ = ()

    def __init__(self) -> None:  # no state: one shared instance
        pass

    def finish(self, outcome: RunOutcome, error: str | None = None) -> None:
        pass

    def finish_reply(self, reply: Any) -> None:
        pass

    def finish_outcome(self, outcome: Outcome) -> None:
        pass

    def finish_cancelled(self) -> None:
        pass


#: the run of a call nothing times (a system call, a schedule request, a node without a hook)
UNOBSERVED: Run = _Unobserved()


def error_name(exc: BaseException) -> str:
    """The class name a run that raised ``exc`` is recorded with: the same as its reply's
    (:func:`~daffi.exceptions.error_info_from_exception`; a failed nested call keeps the
    remote type)."""
    if isinstance(exc, RemoteCallError) and exc.remote_type:
        return exc.remote_type
    return type(exc).__qualname__


class Meter:
    """Starts the timed runs of node ``node``'s callbacks and hands their records to
    ``hook`` (None: no hook, nothing is timed)."""

    __slots__ = ("_warned", "_warned_lock", "hook", "node")

    def __init__(self, hook: MetricsHook | None, node: str) -> None:
        self.hook = hook
        self.node = node
        self._warned = False
        self._warned_lock = threading.Lock()  # hooks fail in several threads at once

    def start(self, callback: str, caller: str, kind: RunKind) -> Run:
        """A run of ``callback`` for ``caller`` that starts now."""
        if self.hook is None:
            return UNOBSERVED
        return Run(self, callback, caller, kind)

    def emit(self, record: CallRecord) -> None:
        """Give ``record`` to the hook; what the hook raises is logged, never raised."""
        hook = self.hook
        if hook is None:
            return
        try:
            hook(record)
        except Exception:
            with self._warned_lock:
                level = logging.DEBUG if self._warned else logging.WARNING
                self._warned = True
            logger.log(
                level,
                "node %r: the metrics hook %r raised for a run of %r (the call is not affected; "
                "later failures are logged at DEBUG)",
                self.node,
                hook,
                record.callback,
                exc_info=True,
            )
