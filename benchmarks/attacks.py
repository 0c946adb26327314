"""Issue 11's attacks against a real controller process, measured: one Markdown table.

    python benchmarks/attacks.py [--backend asyncio|trio|both] [--attack NAME ...]
                                 [--settle SECONDS] [--fresh] [--json out.jsonl]

Every attack runs through the harness of the chaos tests (``tests/processes/_chaos_*.py``): a
controller, a server node and a legitimate client calling ``echo(i)`` in a loop are separate
processes; the attackers are processes too, or raw sockets of this one. For each attack the
table says how many of the legitimate client's calls succeeded and failed meanwhile, whether
the controller is still alive (its process runs and a fresh node's ``echo`` round trip
through it succeeds), its RSS (VmRSS) before, at its peak (sampled every 50 ms) and
``--settle`` seconds after the attack, the attack's duration, and what the attack observed.
The attacks share one controller per backend (``--fresh``: one each), except the
idle-connection flood, which runs on a controller of its own per lowered RLIMIT_NOFILE.

Progress goes to stderr, the table to stdout. It asserts nothing (the tests do).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make `benchmarks` and `tests` importable from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    import daffi
    from benchmarks._common import machine_summary
    from tests.processes._chaos_attacks import ATTACKS, format_table, iter_records, run_attacks
    from tests.processes._chaos_network import BACKENDS, AttackRecord

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument(
        "--attack", nargs="+", choices=list(ATTACKS), help="only these (default: all)"
    )
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds after an attack before 'after' RSS"
    )
    parser.add_argument("--fresh", action="store_true", help="a new controller per attack")
    parser.add_argument("--json", metavar="PATH", help="write one JSON line per attack")
    args = parser.parse_args(argv)
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]

    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"# daffi attacks (issue 11), {now:%Y-%m-%d %H:%M} UTC")
    print()
    print(f"Python {platform.python_version()}, daffi {daffi.__version__}")
    print(f"machine: {machine_summary()}")
    print(
        "setup: controller, server node and legitimate client are separate processes on a "
        "Unix socket; the client calls echo(i) (FG timeout 5 s) and keeps a ticker stream "
        "open; controller frame_timeout=2 s; RSS in MiB (VmRSS), 'after' sampled "
        f"{args.settle:g} s after the attack",
        flush=True,
    )
    started = time.monotonic()
    records: list[AttackRecord] = []
    for backend in backends:
        records += run_attacks(
            backend,
            args.attack,
            fresh=args.fresh,
            settle=args.settle,
            progress=lambda text: print(f"... {text}", file=sys.stderr, flush=True),
        )
    print()
    print(format_table(records))
    print()
    for record in records:
        problems = [p for p in (record.harness_error, record.routing_problem) if p]
        if problems:
            limit = f", controller nofile {record.nofile}" if record.nofile else ""
            print(f"- {record.attack} on {record.backend}{limit}: {'; '.join(problems)}")
    print(f"\n({time.monotonic() - started:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            for row in iter_records(records):
                out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
