"""Run every benchmark module (``benchmarks/bench_*.py``) and print one combined table.

    python benchmarks/run.py [--quick] [--json out.jsonl] [--only scheduling ...]

Progress goes to stderr, the table to stdout. Each module exposes ``run(settings)``
returning :class:`~benchmarks._common.Measurement` objects; ``--json`` writes one JSON line
per measurement, so other libraries (``library="daffi2"``, ...) can join the same table later.
Benchmarks print figures; they never assert timings.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make `benchmarks` importable as a package (the children use -m).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    DEFAULT,
    QUICK,
    Measurement,
    format_details,
    format_table,
    machine_summary,
)


def bench_modules() -> list[str]:
    """Names of the benchmark modules, ``benchmarks.bench_*``, sorted."""
    here = Path(__file__).resolve().parent
    return sorted(
        f"benchmarks.{info.name}"
        for info in pkgutil.iter_modules([str(here)])
        if info.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls (~30 s)")
    parser.add_argument("--json", metavar="PATH", help="write one JSON line per measurement")
    parser.add_argument(
        "--only", metavar="NAME", action="append", help="run only bench_NAME (repeatable)"
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else DEFAULT

    started = time.monotonic()
    print(f"machine: {machine_summary()}", flush=True)
    print(
        f"settings: {settings.rounds} rounds x {settings.calls:,} calls "
        f"({settings.warmup} warm-up calls each); medians shown",
        flush=True,
    )
    measurements: list[Measurement] = []
    for name in bench_modules():
        if args.only and name.removeprefix("benchmarks.bench_") not in args.only:
            continue
        print(f"{name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(name)
        measurements.extend(module.run(settings))

    print()
    print(format_table(measurements))
    print()
    print(format_details(measurements))
    print(f"\n({time.monotonic() - started:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            for m in measurements:
                out.write(m.to_json() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
