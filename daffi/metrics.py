"""Metrics of the callbacks a process runs: a hook given one record per run, and a collector.

``Global(metrics=hook)`` calls ``hook(record)`` once for every run of one of its callbacks,
with a :class:`CallRecord`: which callback, for whom, how it ran, how it ended and how long it
took. The hook sees every path a call can take (a worker thread, a call channel's thread, a
task on daffi's loop; ``def``, ``async def`` and generator callbacks; streams; the runs of
schedules) in the same terms, so the figures of one callback add up whichever path its calls
took. :class:`CallbackStats` is a ready-made hook that keeps counts and a latency histogram
per callback; any callable taking a `CallRecord` will do, e.g. one that feeds
``prometheus_client`` or OpenTelemetry metrics (see the docs' *Observability* page).

The hook runs in the thread that ran the callback (a worker thread for ``def`` callbacks,
daffi's event loop thread for the rest), after the reply is ready and before it is sent: it
must be quick and must not block. An exception it raises is logged (the first at WARNING, the
rest at DEBUG) and changes nothing for the call.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "DEFAULT_BUCKETS",
    "CallRecord",
    "CallbackStats",
    "CallbackSummary",
    "MetricsHook",
    "RunKind",
    "RunOutcome",
]

#: How a callback ran: a call (``FG``, ``BG``, each node's part of a ``BROADCAST``), a stream
#: (a generator callback's values, or arguments streamed in: one record for the whole
#: stream), or one run of a ``PERIOD`` schedule.
RunKind: TypeAlias = Literal["call", "stream", "schedule"]

#: How a run ended: it returned (``ok``), it raised (``error``), or it did not finish for its
#: caller (``cancelled``): the caller gave up (its timeout, its cancel), the call's deadline
#: passed, or the node stopped. A ``def`` callback cannot be interrupted: its run is
#: ``cancelled`` when its caller gave up before it returned, and its result is dropped. A
#: call the node refused without running it (it was at ``max_concurrent_calls``, or every
#: worker was held by calls whose callers gave up) is ``refused``; its duration is the time
#: it took to refuse it.
RunOutcome: TypeAlias = Literal["ok", "error", "cancelled", "refused"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One run of a callback, as the metrics hook is given it.

    Attributes:
        callback: the callback's name.
        node: the process that ran it (this one).
        caller: the process that asked for the run (for a schedule's run, its requester).
        kind: ``"call"``, ``"stream"`` or ``"schedule"`` (see `RunKind`).
        outcome: ``"ok"``, ``"error"``, ``"cancelled"`` or ``"refused"`` (see `RunOutcome`).
        error: the name of the exception's class when ``outcome`` is ``"error"`` (e.g.
            ``"ValueError"``; an argument that does not match its annotation is
            ``"ArgumentTypeError"``), else None.
        started: when the call reached this process (seconds since the epoch, ``time.time()``).
        duration: seconds from then until its reply was ready (or the run ended), waiting
            for a free worker included.
    """

    callback: str
    node: str
    caller: str
    kind: RunKind
    outcome: RunOutcome
    error: str | None
    started: float
    duration: float


#: A metrics hook: called with one `CallRecord` per run of a callback.
MetricsHook: TypeAlias = Callable[[CallRecord], None]

#: The default upper bounds (seconds) of `CallbackStats`' latency histogram.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(frozen=True, slots=True)
class CallbackSummary:
    """What `CallbackStats` counted for one callback.

    Attributes:
        runs: every run, whatever its outcome (refused calls are not runs).
        errors: runs that raised.
        cancelled: runs that did not finish for their caller (it gave up, the deadline
            passed, the node stopped).
        refused: calls the node refused without running them (overloaded).
        total_seconds: the sum of every run's duration.
        max_seconds: the longest run.
        buckets: ``(upper bound, runs that took at most that long)`` for each bound,
            cumulative as in Prometheus histograms; the last bound is ``math.inf``.
    """

    runs: int
    errors: int
    cancelled: int
    refused: int
    total_seconds: float
    max_seconds: float
    buckets: tuple[tuple[float, int], ...]

    @property
    def mean_seconds(self) -> float:
        """The mean duration of a run (0.0 before the first)."""
        return self.total_seconds / self.runs if self.runs else 0.0

    def quantile(self, q: float) -> float:
        """An upper bound on the ``q`` quantile of the durations (0 < q <= 1): the smallest
        bucket bound at least that share of runs stayed within (``max_seconds`` for the
        open last bucket; 0.0 before the first run)."""
        if not 0.0 < q <= 1.0:
            raise ValueError(f"q must be in (0, 1], not {q!r}")
        wanted = math.ceil(q * self.runs)
        for bound, count in self.buckets:
            if count >= wanted and count:
                return self.max_seconds if math.isinf(bound) else bound
        return 0.0


class _Tally:
    __slots__ = ("cancelled", "counts", "errors", "max", "refused", "runs", "total")

    def __init__(self, size: int) -> None:
        self.runs = self.errors = self.cancelled = self.refused = 0
        self.total = self.max = 0.0
        self.counts = [0] * size


class CallbackStats:
    """A metrics hook that counts the runs of each callback and their durations.

    Pass it as ``Global(metrics=CallbackStats())``, read it with :meth:`summary`. Safe to
    share between Globals and threads.

    Args:
        buckets: the histogram's upper bounds in seconds, increasing (a last ``+inf``
            bucket is always added).
    """

    def __init__(self, buckets: Iterable[float] = DEFAULT_BUCKETS) -> None:
        bounds = tuple(float(bound) for bound in buckets)
        if not bounds or any(b <= a for a, b in itertools.pairwise(bounds)):
            raise ValueError(f"buckets must be increasing and not empty, not {bounds!r}")
        if bounds[0] <= 0 or math.isinf(bounds[-1]) or any(math.isnan(b) for b in bounds):
            raise ValueError(f"buckets must be positive and finite, not {bounds!r}")
        self._bounds = bounds
        self._lock = threading.Lock()
        self._tallies: dict[str, _Tally] = {}

    def __call__(self, record: CallRecord) -> None:
        """Count ``record``."""
        slot = bisect.bisect_left(self._bounds, record.duration)
        with self._lock:
            tally = self._tallies.get(record.callback)
            if tally is None:
                tally = self._tallies[record.callback] = _Tally(len(self._bounds) + 1)
            if record.outcome == "refused":
                tally.refused += 1
                return
            tally.runs += 1
            if record.outcome == "error":
                tally.errors += 1
            elif record.outcome == "cancelled":
                tally.cancelled += 1
            tally.total += record.duration
            if record.duration > tally.max:
                tally.max = record.duration
            tally.counts[slot] += 1

    def summary(self, *, reset: bool = False) -> dict[str, CallbackSummary]:
        """What was counted so far, by callback name; with ``reset``, also start counting
        afresh, in one step (no run is lost between the two)."""
        with self._lock:
            summary = {name: self._summarize(tally) for name, tally in self._tallies.items()}
            if reset:
                self._tallies.clear()
            return summary

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self._tallies.clear()

    def _summarize(self, tally: _Tally) -> CallbackSummary:
        cumulative = 0
        buckets = []
        for bound, count in zip((*self._bounds, math.inf), tally.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        return CallbackSummary(
            runs=tally.runs,
            errors=tally.errors,
            cancelled=tally.cancelled,
            refused=tally.refused,
            total_seconds=tally.total,
            max_seconds=tally.max,
            buckets=tuple(buckets),
        )

    def __repr__(self) -> str:
        with self._lock:
            names = sorted(self._tallies)
        return f"<CallbackStats of {names!r}>"
