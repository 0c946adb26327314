"""What every driver shares: the command line, the parent protocol, timing. Standard library only.

The drivers (``lib_*.py``) run in three different virtualenvs, two of which hold another
``daffi``; this module imports nothing but the standard library so that each of them can use it.

Protocol with the runner (``run.py``):

* A long-running role (``server``, ``controller``, ``worker``) prints ``READY {json}`` on
  stdout once it accepts connections (or, for a worker, once it is connected), then serves
  until its stdin closes. The JSON holds what a client needs to connect (``connect``) and
  what the runner checks (``lib``, ``version``, ``module_file``).
* A ``client`` prints ``RESULT {json}`` as its last line and exits 0; ``NA {json}`` with a
  ``reason`` and exit status :data:`EXIT_NA` when the library cannot do the workload.
* Every role arms a deadline (``--deadline``): past it, it prints every thread's traceback to
  stderr and exits, so a hang shows up as a traceback rather than a stuck run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import faulthandler
import json
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

READY = "READY "
RESULT = "RESULT "
NA = "NA "
#: exit status of a client whose library cannot run the workload (it printed ``NA {json}``)
EXIT_NA = 3
#: exit status of a driver whose library's stop() did not return in time (see stop_within)
EXIT_STOP_HANG = 4

WORKLOADS = ("w1", "w2", "w3", "w4", "w5", "w6")
ECHO = "echo"
#: the three callback processes of W4 are named ``w4-node-0`` .. ``w4-node-2``
W4_NODES = 3


def node_name(index: int) -> str:
    return f"w4-node-{index}"


# ---------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None, *, backends: bool = False) -> argparse.Namespace:
    """The command line every driver accepts (the runner builds it in ``run.py``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("server", "controller", "worker", "client"))
    parser.add_argument("--transport", choices=("unix", "tcp"), default="unix")
    parser.add_argument("--dir", help="private temp dir for Unix sockets (server/controller)")
    parser.add_argument("--connect", default="{}", help="the server's READY 'connect' JSON")
    parser.add_argument("--name", help="process name (worker)")
    parser.add_argument("--workload", choices=WORKLOADS, default="w1")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--threads", type=int, default=16, help="W6 in daffi 3: calling threads")
    parser.add_argument("--payload-bytes", type=int, default=1 << 20)
    parser.add_argument("--mode", default="", help="floor only: sync | async")
    parser.add_argument("--deadline", type=float, default=120.0)
    if backends:
        parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args(argv)
    args.connect = json.loads(args.connect)
    faulthandler.dump_traceback_later(args.deadline, exit=True)
    return args


# ---------------------------------------------------------------- talking to the runner


def announce_ready(lib: str, version: str, module_file: str, **info: Any) -> None:
    """Print the ``READY`` line (once listening, or once connected for a worker)."""
    line = {"lib": lib, "version": version, "module_file": module_file, "pid": os.getpid()}
    line.update(info)
    print(READY + json.dumps(line), flush=True)


def wait_for_stdin_eof() -> None:
    """Block until the runner closes our stdin: it is done with us."""
    while sys.stdin.read(65536):
        pass


def stop_within(stop: Callable[[], Any], seconds: float, what: str) -> None:
    """Call the library's ``stop()``; if it has not returned after ``seconds``, exit anyway.

    Shutting down is not measured, but a stop that never returns would hold up the run (daffi
    3.0.1's ``Service.stop()`` joins its poller thread forever). The exit status
    :data:`EXIT_STOP_HANG` tells the runner, which notes it.
    """
    done = threading.Event()

    def run() -> None:
        try:
            stop()
        finally:
            done.set()

    threading.Thread(target=run, name="stop-within", daemon=True).start()
    if not done.wait(seconds):
        stop_hung(what, seconds)


@contextlib.contextmanager
def stop_deadline(seconds: float, what: str) -> Iterator[None]:
    """The async twin of :func:`stop_within`: exit if the block (an awaited stop) outlasts it.

    A watchdog thread, as the event loop waiting in the block cannot be relied on to end it.
    """
    watchdog = threading.Timer(seconds, stop_hung, (what, seconds))
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()


def stop_hung(what: str, seconds: float) -> None:
    """Exit with :data:`EXIT_STOP_HANG`: the library's ``what`` is still running."""
    print(f"STOP-HANG: {what} did not return within {seconds} s", file=sys.stderr, flush=True)
    os._exit(EXIT_STOP_HANG)


def emit_result(result: dict[str, Any]) -> None:
    print(RESULT + json.dumps(result), flush=True)


def not_available(reason: str) -> None:
    """Tell the runner this library cannot run the workload, and exit."""
    print(NA + json.dumps({"reason": reason}), flush=True)
    sys.exit(EXIT_NA)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just gave out on ``host`` (for libraries that cannot pick one).

    There is a short race before the library binds it; loopback only.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------- payloads and checks


def payload(size: int) -> bytes:
    """``size`` bytes that are not all zeros (a repeating 0..255 pattern)."""
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def value_maker(args: argparse.Namespace) -> Callable[[int], Any]:
    """What call ``i`` sends: ``i`` itself, or (W3) the same 1 MiB ``bytes`` each time."""
    if args.workload == "w3":
        data = payload(args.payload_bytes)
        return lambda i: data
    return lambda i: i


def check_echo(got: Any, sent: Any) -> None:
    if got != sent:
        shown = repr(got)[:120]
        raise AssertionError(f"echo came back wrong: sent {repr(sent)[:60]}, got {shown}")


def check_broadcast(got: Any, sent: Any) -> None:
    """A W4 answer must hold ``sent`` from each of the three nodes, keyed by node name."""
    expected = {node_name(i): sent for i in range(W4_NODES)}
    if not isinstance(got, dict) or dict(got) != expected:
        raise AssertionError(f"broadcast came back wrong: sent {sent!r}, got {repr(got)[:200]}")


# ---------------------------------------------------------------- timing


class Timer:
    """The timings of one client run: first successful call, then the timed loop."""

    def __init__(self) -> None:
        self.first_call_mono: float | None = None

    def first_call_done(self) -> None:
        """Mark the first successful call (CLOCK_MONOTONIC is system-wide on Linux)."""
        if self.first_call_mono is None:
            self.first_call_mono = time.monotonic()

    def result(
        self, calls: int, elapsed_ns: int, latencies_ns: Sequence[int], **extra: Any
    ) -> dict[str, Any]:
        ordered = sorted(latencies_ns)
        out: dict[str, Any] = {
            "calls": calls,
            "elapsed_ns": elapsed_ns,
            "calls_per_s": calls / (elapsed_ns / 1e9),
            "p50_us": _percentile(ordered, 50) / 1000 if ordered else None,
            "p99_us": _percentile(ordered, 99) / 1000 if ordered else None,
            "max_us": ordered[-1] / 1000 if ordered else None,
            "first_call_mono": self.first_call_mono,
        }
        out.update(extra)
        return out


def _percentile(ordered: Sequence[int], pct: float) -> int:
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def run_sync(
    call: Callable[[Any], Any],
    check: Callable[[Any, Any], None],
    args: argparse.Namespace,
    timer: Timer,
) -> dict[str, Any]:
    """Warm up, then time ``args.calls`` calls one after the other; check every answer."""
    make = value_maker(args)
    for i in range(args.warmup):
        value = make(i)
        check(call(value), value)
        timer.first_call_done()
    latencies = [0] * args.calls
    clock = time.perf_counter_ns
    start = clock()
    for i in range(args.calls):
        value = make(i)
        t0 = clock()
        got = call(value)
        latencies[i] = clock() - t0
        check(got, value)
    elapsed = clock() - start
    return timer.result(args.calls, elapsed, latencies)


def concurrent_workers(
    call: Callable[[Any], Coroutine[Any, Any, Any]],
    calls: int,
    concurrency: int,
    latencies: list[int],
    timer: Timer,
) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """``concurrency`` workers sharing ``calls`` calls; the driver runs them in its task group.

    Kept free of any event-loop library: daffi 3's client is asyncio-only and has no anyio,
    ours runs on anyio (asyncio or trio).
    """
    clock = time.perf_counter_ns

    def worker(first: int) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            for i in range(first, calls, concurrency):
                t0 = clock()
                got = await call(i)
                latencies.append(clock() - t0)
                check_echo(got, i)
                timer.first_call_done()

        return run

    return [worker(first) for first in range(min(concurrency, calls))]


async def run_concurrent(
    call: Callable[[Any], Coroutine[Any, Any, Any]],
    args: argparse.Namespace,
    timer: Timer,
    gather: Callable[[list[Callable[[], Coroutine[Any, Any, None]]]], Coroutine[Any, Any, None]],
) -> dict[str, Any]:
    """W2: warm up, then time ``args.calls`` calls kept ``args.concurrency`` in flight.

    ``gather`` runs the workers concurrently (asyncio.gather, an anyio task group...).
    calls/s is the calls over the wall time from the first call to the last answer.
    """
    await gather(concurrent_workers(call, args.warmup, args.concurrency, [], timer))
    latencies: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    await gather(concurrent_workers(call, args.calls, args.concurrency, latencies, timer))
    elapsed = clock() - start
    return timer.result(args.calls, elapsed, latencies, concurrency=args.concurrency)


def run_pipelined(
    submit: Callable[[Any], Any],
    collect: Callable[[Any], Any],
    args: argparse.Namespace,
    timer: Timer,
) -> dict[str, Any]:
    """W6: one thread keeps ``args.concurrency`` calls outstanding; check every answer.

    ``submit(value)`` starts a call and returns its handle at once (a ``BG`` call's
    ``AsyncResult``, a future); ``collect(handle)`` blocks until its answer. The thread
    collects the oldest call, then submits the next, so that ``args.concurrency`` stay in
    flight until the last ones are collected. A call's latency runs from its submit to its
    collect returning, so it includes the wait behind the older calls.
    """
    clock = time.perf_counter_ns

    def run(calls: int, latencies: list[int] | None) -> None:
        window: collections.deque[tuple[int, int, Any]] = collections.deque()
        for i in range(calls):
            if len(window) >= args.concurrency:
                finish(window.popleft(), latencies)
            window.append((i, clock(), submit(i)))
        while window:
            finish(window.popleft(), latencies)

    def finish(entry: tuple[int, int, Any], latencies: list[int] | None) -> None:
        sent, t0, handle = entry
        got = collect(handle)
        if latencies is not None:
            latencies.append(clock() - t0)
        check_echo(got, sent)
        timer.first_call_done()

    run(args.warmup, None)
    latencies: list[int] = []
    start = clock()
    run(args.calls, latencies)
    elapsed = clock() - start
    return timer.result(args.calls, elapsed, latencies, concurrency=args.concurrency)


def run_threads(
    make_call: Callable[[], Callable[[Any], Any]],
    args: argparse.Namespace,
    timer: Timer,
) -> dict[str, Any]:
    """W6 in daffi 3: ``args.threads`` threads share ``args.calls`` sync calls; check each.

    ``make_call()`` runs once in each thread and returns its call function; every thread then
    makes its share of the calls one after the other. calls/s is the calls over the wall time
    from starting the threads to the last one finishing. The first error ends the run.
    """
    clock = time.perf_counter_ns
    errors: list[BaseException] = []

    def run(calls: int, latencies: list[int] | None) -> None:
        def worker(first: int) -> None:
            try:
                call = make_call()
                for i in range(first, calls, args.threads):
                    t0 = clock()
                    got = call(i)
                    if latencies is not None:
                        latencies.append(clock() - t0)  # list.append is atomic
                    check_echo(got, i)
                    timer.first_call_done()
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=worker, args=(first,), name=f"caller-{first}", daemon=True)
            for first in range(min(args.threads, calls))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    run(args.warmup, None)
    latencies: list[int] = []
    start = clock()
    run(args.calls, latencies)
    elapsed = clock() - start
    return timer.result(args.calls, elapsed, latencies, threads=args.threads)
