"""The soak run: a controller under sustained load for minutes, with churn.

    python benchmarks/soak.py [--minutes 10] [--connections 200] [--backend asyncio|trio]

Processes (each stopped by its PID at the end): a controller, two servers offering ``echo``
and a generator callback, client processes holding ``--connections`` nodes in all (50 per
process), each node calling without a pause (FG, now and then BG and a streamed download),
and a churner that starts and stops ten more nodes every two seconds. The controller's and
servers' RSS is sampled every second.

It prints the calls made, the calls lost (failed, by type), calls per second and RSS at
start (after a minute's warm-up), peak and end, and exits with status 1 if any call was
lost or the controller's RSS at the end is more than 1.5 times (plus 20 MiB) what it was
after the warm-up. These are figures of a run, not timed tests: ``nox -s soak`` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import child_process, machine_summary, read_ready_line

_PER_PROCESS = 50


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """Samples the RSS of some processes every ``interval`` seconds."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
        self._halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self._halt.wait(self.interval):
            for name, pid in self.pids.items():
                value = rss_mib(pid)
                if value is not None:
                    self.samples[name].append((time.monotonic() - started, value))

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def summary(self, name: str, warmup: float) -> dict[str, float]:
        samples = self.samples[name]
        if not samples:
            return {}
        after_warmup = [v for t, v in samples if t >= warmup] or [samples[-1][1]]
        return {
            "first": samples[0][1],
            "after_warmup": after_warmup[0],
            "peak": max(v for _, v in samples),
            "end": samples[-1][1],
        }


def soak(minutes: float, connections: int, backend: str) -> int:
    seconds = minutes * 60
    warmup = min(60.0, seconds / 5)
    node = [sys.executable, "-m", "benchmarks.soak_node"]
    path = tempfile.mkdtemp(prefix="daffi-soak-", dir="/tmp")
    common = ["--path", path, "--backend", backend]
    print(machine_summary(), file=sys.stderr)
    print(
        f"soak: {minutes:g} min, {connections} client connections, {backend}, socket in {path}",
        file=sys.stderr,
    )
    try:
        with contextlib.ExitStack() as stack:
            controller = stack.enter_context(child_process([*node, "controller", *common]))
            read_ready_line(controller, 60)
            servers = []
            for i in range(2):
                server = stack.enter_context(
                    child_process([*node, "server", "--name", f"server-{i}", *common])
                )
                read_ready_line(server, 60)
                servers.append(server)
            sampler = RssSampler(
                {
                    "controller": controller.pid,
                    **{f"server-{i}": s.pid for i, s in enumerate(servers)},
                }
            )
            sampler.start()
            workers = []
            for i in range(0, connections, _PER_PROCESS):
                count = min(_PER_PROCESS, connections - i)
                workers.append(
                    stack.enter_context(
                        child_process(
                            [
                                *node,
                                "clients",
                                "--name",
                                f"c{i // _PER_PROCESS}",
                                "--count",
                                str(count),
                                "--seconds",
                                str(seconds),
                                *common,
                            ]
                        )
                    )
                )
            workers.append(
                stack.enter_context(
                    child_process(
                        [*node, "churn", "--name", "churn", "--seconds", str(seconds), *common]
                    )
                )
            )
            started = time.monotonic()
            reports: list[dict[str, Any]] = []
            for worker in workers:
                assert worker.stdout is not None
                out, _ = worker.communicate(timeout=seconds + 300)
                lines = [line for line in out.splitlines() if line.startswith("{")]
                reports.append(json.loads(lines[-1]) if lines else {"ok": 0, "failed": -1})
            elapsed = time.monotonic() - started
            sampler.stop()
            alive = controller.poll() is None
    finally:
        shutil.rmtree(path, ignore_errors=True)

    ok = sum(r["ok"] for r in reports)
    failed = sum(r["failed"] for r in reports if r["failed"] >= 0)
    missing = sum(1 for r in reports if r["failed"] < 0)
    by_type: dict[str, int] = {}
    examples: dict[str, str] = {}
    for r in reports:
        for kind, n in r.get("by_type", {}).items():
            by_type[kind] = by_type.get(kind, 0) + n
        examples.update(r.get("examples", {}))
    ctrl = sampler.summary("controller", warmup)
    print(f"\n## Soak: {minutes:g} min, {connections} connections (+ churn), {backend}\n")
    print("| figure | value |")
    print("|---|---|")
    print(f"| calls that succeeded | {ok:,} |")
    print(f"| calls lost (failed) | {failed:,} {by_type or ''} |")
    print(f"| client processes that reported nothing | {missing} |")
    print(f"| calls per second | {ok / elapsed:,.0f} |")
    print(f"| controller alive at the end | {alive} |")
    for name in sampler.samples:
        s = sampler.summary(name, warmup)
        if s:
            print(
                f"| {name} RSS MiB: first / after warm-up / peak / end | "
                f"{s['first']:.1f} / {s['after_warmup']:.1f} / {s['peak']:.1f} / {s['end']:.1f} |"
            )
    for kind, text in examples.items():
        print(f"\n{kind}: {text}")
    bounded = bool(ctrl) and ctrl["end"] <= 1.5 * ctrl["after_warmup"] + 20
    verdict = failed == 0 and missing == 0 and alive and bounded
    print(
        f"\nverdict: {'PASS' if verdict else 'FAIL'} (zero lost calls, controller up, RSS bounded)"
    )
    return 0 if verdict else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    sys.exit(soak(args.minutes, args.connections, args.backend))


if __name__ == "__main__":
    main()
