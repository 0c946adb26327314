"""Resident memory of a long stream: does any process buffer what the other end has not taken?

    python benchmarks/stream_memory.py [--items N] [--scenario a b b-break]

Three processes talk over a Unix socket in a private temp dir: a controller, a producer and a
consumer (each one ``python benchmarks/stream_memory.py role NAME ...``). Each samples its own
VmRSS (``/proc/self/status``) every 0.5 s and reports it idle (all three connected, nothing
streamed yet) and its peak while streaming.

* ``a``: the producer's generator fetcher streams N items to the consumer's callback, which
  sleeps 1 ms per item (the consumer is the slow end; the producer has to wait).
* ``b``: the consumer iterates a ``def`` fetcher over the producer's generator callback
  (N items) and sleeps 1 ms per item.
* ``b-break``: as ``b``, but the consumer leaves after 10 items; the producer says how many
  items its generator produced in all (it should stop at about the stream window, 64).

With flow control working, the growth stays flat however large N is. The script prints one
table; it asserts nothing. Roles exchange lines on stdin/stdout: the parent sends ``idle``,
``go`` and ``stop``; a role answers ``READY``, ``IDLE {json}`` and ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

SCRIPT = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(SCRIPT))
SAMPLE_INTERVAL = 0.5
BREAK_AFTER = 10
ROLES = ("controller", "producer", "consumer")


# ---------------------------------------------------------------- inside a role process


def rss_kib() -> int:
    """This process's resident set size in KiB, from /proc (psutil is not needed)."""
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS line in /proc/self/status")


class RssSampler:
    """Samples VmRSS every 0.5 s in a daemon thread; keeps the peak since :meth:`reset`."""

    def __init__(self) -> None:
        self.peak = rss_kib()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self.sample()

    def sample(self) -> int:
        value = rss_kib()
        with self._lock:
            self.peak = max(self.peak, value)
        return value

    def reset(self) -> int:
        value = rss_kib()
        with self._lock:
            self.peak = value
        return value

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.sample()
        return self.peak


def say(kind: str, info: dict[str, Any] | None = None) -> None:
    print(kind if info is None else f"{kind} {json.dumps(info)}", flush=True)


def expect(command: str) -> None:
    line = sys.stdin.readline().strip()
    if line != command:
        raise SystemExit(f"expected {command!r} from the parent, got {line!r}")


def run_role(args: argparse.Namespace) -> None:
    sys.path.insert(0, ROOT)  # `python benchmarks/stream_memory.py` has benchmarks/ on the path
    from daffi import Global
    from daffi.registry import CallbackRegistry

    sampler = RssSampler()
    registry = CallbackRegistry()
    extra: dict[str, Any] = {}
    work = None
    if args.role == "controller":
        g = Global(
            "mem-controller", init_controller=True, init_node=False, unix_sock_path=args.path
        )
    elif args.role == "producer":
        work = producer_role(args, registry, extra)
        g = Global("mem-producer", unix_sock_path=args.path, registry=registry)
    else:
        work = consumer_role(args, registry, extra)
        g = Global("mem-consumer", unix_sock_path=args.path, registry=registry)
    with g:
        if args.role != "controller":
            g.wait_process("mem-producer" if args.role == "consumer" else "mem-consumer", 60)
        if work is not None:  # the caller also waits until the other side offers the callback
            g.wait_function("stream_in" if args.scenario == "a" else "stream_out", 60)
        say("READY")
        expect("idle")
        time.sleep(1.0)  # let start-up allocations settle
        idle = sampler.reset()
        say("IDLE", {"idle_kib": idle})
        expect("go")
        t0 = time.monotonic()
        if work is not None:
            with g.as_current():
                work()
        extra.setdefault("elapsed_s", round(time.monotonic() - t0, 2))
        if args.active:
            say("DONE")
        expect("stop")
        if "finished" in extra:  # the producer's generator: wait for its `finally`
            extra["generator_closed"] = extra.pop("finished").wait(10)
        peak = sampler.stop()
        say("RESULT", {"role": args.role, "idle_kib": idle, "peak_kib": peak, **extra})


def producer_role(args: argparse.Namespace, registry: Any, extra: dict[str, Any]) -> Any | None:
    from daffi import FG
    from daffi.decorators import alias, fetcher

    if args.scenario == "a":

        @alias("stream_in")
        @fetcher(FG)
        def send_items(n: int) -> Iterator[int]:
            yield from range(n)

        def work() -> None:
            send_items(args.items)
            extra["sent"] = args.items

        return work

    finished = threading.Event()
    extra["finished"] = finished
    extra["produced"] = 0

    def stream_out(n: int) -> Iterator[int]:
        try:
            for i in range(n):
                extra["produced"] = i + 1
                yield i
        finally:
            finished.set()

    registry.add(stream_out, "stream_out")
    return None


def consumer_role(args: argparse.Namespace, registry: Any, extra: dict[str, Any]) -> Any | None:
    from daffi.decorators import alias, fetcher

    state = {"next": 0, "in_order": True}

    def check(item: Any) -> None:
        if item != state["next"]:
            state["in_order"] = False
        state["next"] += 1

    def report(expected: int) -> None:
        extra["received"] = state["next"]
        extra["complete_in_order"] = state["in_order"] and state["next"] == expected

    if args.scenario == "a":

        def stream_in(i: int) -> None:
            time.sleep(0.001)
            check(i)
            report(args.items)

        registry.add(stream_in, "stream_in")
        extra["received"] = 0
        extra["complete_in_order"] = args.items == 0
        return None

    @alias("stream_out")
    @fetcher
    def numbers(n: int) -> Any:
        pass

    def work() -> None:
        stream = numbers(args.items)
        try:
            for item in stream:
                time.sleep(0.001)
                check(item)
                if args.scenario == "b-break" and state["next"] == BREAK_AFTER:
                    break
        finally:
            stream.close()
        report(BREAK_AFTER if args.scenario == "b-break" else args.items)

    return work


# ---------------------------------------------------------------- the parent


class Child:
    """A role process; its stdout lines arrive through a reader thread (no select games)."""

    def __init__(self, role: str, scenario: str, path: str, items: int, active: bool) -> None:
        cmd = [sys.executable, SCRIPT, "role", role, "--scenario", scenario, "--path", path]
        cmd += ["--items", str(items)] + (["--active"] if active else [])
        self.role = role
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.role}: no {kind} line within {timeout} s") from None
        if line is None or not line.startswith(kind):
            raise RuntimeError(f"{self.role}: expected {kind}, got {line!r} (stderr above)")
        rest = line[len(kind) :].strip()
        return json.loads(rest) if rest else {}

    def stop(self) -> None:
        """Close stdin, then terminate, then kill: by this child's PID only."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        for signal_it in (None, self.proc.terminate, self.proc.kill):
            if signal_it is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal_it()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
                return


def run_scenario(scenario: str, items: int) -> list[dict[str, Any]]:
    directory = tempfile.mkdtemp(prefix="dsm", dir="/tmp")  # short: Unix socket path limit
    active_role = "producer" if scenario == "a" else "consumer"
    children: list[Child] = []
    try:
        children.append(Child("controller", scenario, directory, items, active=False))
        children[0].wait_for("READY", 60)
        for role in ("producer", "consumer"):
            children.append(Child(role, scenario, directory, items, role == active_role))
        for child in children[1:]:
            child.wait_for("READY", 60)
        for child in children:
            child.send("idle")
        for child in children:
            child.wait_for("IDLE", 30)
        for child in children:
            child.send("go")
        active = next(child for child in children if child.role == active_role)
        active.wait_for("DONE", 60 + items * 0.01)
        results = []
        for child in reversed(children):  # the nodes first: the controller outlives them
            child.send("stop")
            results.append(child.wait_for("RESULT", 30))
        return results
    finally:
        for child in children:
            child.stop()
        shutil.rmtree(directory, ignore_errors=True)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def print_table(scenario: str, items: int, results: list[dict[str, Any]]) -> None:
    by_role = {r["role"]: r for r in results}
    consumer = by_role["consumer"]
    producer = by_role["producer"]
    elapsed = max(float(r.get("elapsed_s", 0)) for r in results)
    titles = {
        "a": f"a: generator fetcher -> callback sleeping 1 ms/item, {items} items",
        "b": f"b: generator callback -> consumer sleeping 1 ms/item, {items} items",
        "b-break": f"b-break: as b ({items} items offered), the consumer leaves after "
        f"{BREAK_AFTER}",
    }
    print(f"\n### {titles[scenario]} ({elapsed:.1f} s)\n")
    print("| role | idle MiB | peak MiB | growth MiB |")
    print("|---|---:|---:|---:|")
    for role in ROLES:
        r = by_role[role]
        growth = r["peak_kib"] - r["idle_kib"]
        print(f"| {role} | {mib(r['idle_kib'])} | {mib(r['peak_kib'])} | {mib(growth)} |")
    ok = "yes" if consumer.get("complete_in_order") else "no"
    print(f"\nitems received: {consumer.get('received')}; complete and in order: {ok}")
    if scenario == "b-break":
        produced = int(producer.get("produced", -1))
        print(
            f"producer's generator produced {produced} items in all, {produced - BREAK_AFTER} "
            f"after the consumer's {BREAK_AFTER}th (window 64); generator closed: "
            f"{'yes' if producer.get('generator_closed') else 'no'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    role = sub.add_parser("role", help="run one process of a scenario (used by the parent)")
    role.add_argument("role", choices=ROLES)
    role.add_argument("--scenario", choices=("a", "b", "b-break"), required=True)
    role.add_argument("--path", required=True)
    role.add_argument("--items", type=int, required=True)
    role.add_argument("--active", action="store_true")
    parser.add_argument("--items", type=int, default=100_000, help="items per stream")
    parser.add_argument(
        "--scenario", nargs="+", choices=("a", "b", "b-break"), default=["a", "b", "b-break"]
    )
    args = parser.parse_args()
    if args.command == "role":
        run_role(args)
        return
    if not os.path.exists("/proc/self/status"):
        raise SystemExit("this benchmark reads VmRSS from /proc: Linux only")
    print(f"stream memory, {args.items} items; Python {sys.version.split()[0]}")
    for scenario in args.scenario:
        print(f"running {scenario} ...", file=sys.stderr, flush=True)
        print_table(scenario, args.items, run_scenario(scenario, args.items))


if __name__ == "__main__":
    main()
