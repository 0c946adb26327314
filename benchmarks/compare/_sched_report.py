"""The scheduling timing comparison's figures: percentiles, the drift slope, one row per
(library, callback kind), and the summary and details tables (see ``sched_timing.py``)."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks.compare._sched_proto import FLOOR_KIND
from benchmarks.compare.run import Library, _markdown

#: the issue's targets
TARGET_AT_P99_MS = 1.0
TARGET_FIRST_P99_MS = 3.0
#: "no drift": the fitted line rises by at most this much over the drift run
TARGET_DRIFT_MS = 1.0
#: the drift row always shows this run (the issue's "after 49 runs")
DRIFT_MARK = 49


def percentile(ordered: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of sorted values (None when empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def slope_per_100(lateness_ms: Sequence[float]) -> float | None:
    """Least-squares slope of lateness (ms) against the run number, in ms per 100 runs."""
    n = len(lateness_ms)
    if n < 2:
        return None
    mean_k = (n + 1) / 2
    mean_y = sum(lateness_ms) / n
    num = sum((k - mean_k) * (y - mean_y) for k, y in enumerate(lateness_ms, 1))
    den = sum((k - mean_k) ** 2 for k in range(1, n + 1))
    return num / den * 100


@dataclasses.dataclass
class Row:
    """The figures of one (library, callback kind) over the rounds."""

    lib: Library
    kind: str
    at: list[float] = dataclasses.field(default_factory=list)
    first: list[float] = dataclasses.field(default_factory=list)
    #: per round: run_1, run_49, run_last (lateness, ms) and slope (ms per 100 runs)
    drift: list[dict[str, float | None]] = dataclasses.field(default_factory=list)
    call_ms: list[float] = dataclasses.field(default_factory=list)
    #: per round: the lateness of the warm-up runs (the first of a fresh executor)
    cold: list[list[float]] = dataclasses.field(default_factory=list)
    counts: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    last_run: int = 0
    #: grid points the executor skipped in the drift runs, over the rounds
    skipped: int = 0

    def add(self, rnd: int, figures: dict[str, Any], note: str) -> None:
        at, first, drift = figures["at_time"], figures["first"], figures["drift"]
        self.at += at["lateness_ms"]
        self.first += first["offset_ms"]
        late = drift["lateness_ms"]
        mark = late[DRIFT_MARK - 1] if len(late) >= DRIFT_MARK else None
        self.drift.append(
            {
                "run_1": late[0] if late else None,
                f"run_{DRIFT_MARK}": mark,
                "run_last": late[-1] if late else None,
                "slope": slope_per_100(late),
            }
        )
        self.last_run = max(self.last_run, len(late))
        self.call_ms += [at["call_ms"], *first["call_ms"], drift["call_ms"]]
        self.cold.append(figures["warm_up"])
        counts = []
        if at["runs"] != at["stamps"]:
            counts.append(f"at_time {at['runs']}/{at['stamps']} runs")
        if first["missing"]:
            counts.append(f"{first['missing']} schedules without a first run")
        if drift["runs"] != drift["wanted"] or drift["skipped"]:
            counts.append(
                f"drift {drift['runs']}/{drift['wanted']} runs, {drift['skipped']} skipped"
            )
        self.skipped += drift["skipped"]
        self.counts.append(f"r{rnd}: " + (", ".join(counts) or "all runs in"))
        self.notes.append(f"r{rnd}: {note}")

    def drift_median(self, field: str) -> float | None:
        values = [v for d in self.drift if (v := d[field]) is not None]
        return statistics.median(values) if values else None

    def stats(self) -> dict[str, Any]:
        at, first = sorted(self.at), sorted(self.first)
        return {
            "library": self.lib.key,
            "kind": self.kind,
            "at_time_ms": {
                "n": len(at),
                "p50": percentile(at, 50),
                "p99": percentile(at, 99),
                "max": at[-1] if at else None,
            },
            "first_interval_ms": {
                "n": len(first),
                "p50": percentile(first, 50),
                "p99": percentile(first, 99),
                "max": first[-1] if first else None,
            },
            "drift_ms": {
                "run_1": self.drift_median("run_1"),
                f"run_{DRIFT_MARK}": self.drift_median(f"run_{DRIFT_MARK}"),
                "last_run": self.last_run,
                "run_last": self.drift_median("run_last"),
                "slope_per_100_runs": self.drift_median("slope"),
                "per_round": self.drift,
            },
            "period_call_ms_p50": percentile(sorted(self.call_ms), 50),
            "warm_up_ms": self.cold,
            "rounds_ok": len(self.drift),
            "errors": self.errors,
        }

    def targets(self) -> str:
        """Whether the row meets the issue's targets (floors: not applicable)."""
        if self.lib.is_floor or not self.drift:
            return "-"
        stats = self.stats()
        at_p99 = stats["at_time_ms"]["p99"]
        first_p99 = stats["first_interval_ms"]["p99"]
        slope = stats["drift_ms"]["slope_per_100_runs"]
        rise = None if slope is None else abs(slope) * (self.last_run - 1) / 100
        verdicts = [
            ("at_time", at_p99 is not None and at_p99 <= TARGET_AT_P99_MS),
            ("1st", first_p99 is not None and first_p99 <= TARGET_FIRST_P99_MS),
            ("drift", rise is not None and rise <= TARGET_DRIFT_MS),
        ]
        text = ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in verdicts)
        return text + (f" ({self.skipped} skipped)" if self.skipped else "")


def collect(
    records: Sequence[dict[str, Any]], libs: Sequence[Library], kinds: tuple[str, ...]
) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for lib in libs:
        for kind in (FLOOR_KIND,) if lib.is_floor else kinds:
            rows[(lib.key, kind)] = Row(lib, kind)
    for rec in records:
        for (key, kind), row in rows.items():
            if key != rec["library"]:
                continue
            if "error" in rec:
                row.errors.append(f"r{rec['round']}: {rec['error']}")
            else:
                row.add(rec["round"], rec["result"][kind], rec["note"])
    return list(rows.values())


# ---------------------------------------------------------------- the report


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _kind_label(kind: str) -> str:
    return {"sync": "def", "async": "async def", FLOOR_KIND: "-"}[kind]


def summary_table(rows: Sequence[Row], last_run: int) -> str:
    headers = (
        "library", "callback", "at_time p50", "p99", "max", "1st interval p50", "p99", "max",
        "drift run 1", f"run {DRIFT_MARK}", f"run {last_run}", "slope /100 runs",
        "targets",
    )  # fmt: skip
    lines = []
    for row in rows:
        s = row.stats()
        at, first, drift = s["at_time_ms"], s["first_interval_ms"], s["drift_ms"]
        label = row.lib.label + (f" [{len(row.errors)} failed]" if row.errors else "")
        lines.append(
            (
                label,
                _kind_label(row.kind),
                fmt_ms(at["p50"]),
                fmt_ms(at["p99"]),
                fmt_ms(at["max"]),
                fmt_ms(first["p50"]),
                fmt_ms(first["p99"]),
                fmt_ms(first["max"]),
                fmt_ms(drift["run_1"]),
                fmt_ms(drift[f"run_{DRIFT_MARK}"]),
                fmt_ms(drift["run_last"]),
                fmt_ms(drift["slope_per_100_runs"]),
                row.targets(),
            )
        )
    return _markdown(headers, lines)


def details_table(rows: Sequence[Row]) -> str:
    headers = (
        "library", "callback", "n at_time / 1st", "PERIOD call p50 ms", "cold runs ms",
        "drift per round (run 1 / 49 / last / slope)", "runs", "machine", "errors",
    )  # fmt: skip
    lines = []
    for row in rows:
        s = row.stats()
        per_round = "; ".join(" / ".join(fmt_ms(v) for v in d.values()) for d in row.drift)
        cold = "; ".join(" / ".join(fmt_ms(v) for v in runs) for runs in row.cold)
        lines.append(
            (
                row.lib.label,
                _kind_label(row.kind),
                f"{s['at_time_ms']['n']} / {s['first_interval_ms']['n']}",
                "-" if row.lib.is_floor else fmt_ms(s["period_call_ms_p50"]),
                cold or "-",
                per_round or "-",
                "; ".join(row.counts) or "-",
                "; ".join(row.notes) or "-",
                "; ".join(row.errors) or "-",
            )
        )
    return _markdown(headers, lines)
