"""The legitimate client: calls ``echo(i)`` in a loop (and every 10th round reads a short
stream from ``count``) while the attacks run, and counts what succeeded and what failed.
A second thread keeps a stream open all the time: ``ticker(100, 0.02)``, one after the
other (a live stream for the injection attack to aim at).

Usage: client.py BACKEND SOCK_DIR [--seconds N] [--pause SECONDS]

Every call has a 5 s timeout (``FG(timeout=5)``). A call fails if it raises or returns
something else than what was sent (an injected value); a stream fails if it raises or its
values are not ``0 .. n-1``. Prints "READY" once ``echo`` is there,
"FAIL <kind> <error type> <message>" for each failed call (the first 100), and answers a
line "report TAG" on stdin with
"REPORT TAG ok=<n> failed=<n> errors=<json {type: count}> calls=<n>" (cumulative counts;
``calls``: calls started, about this node's latest call id). Stops after
``--seconds``, on a line "stop", at the end of stdin or on SIGTERM, and then prints
"FINAL ok=<n> failed=<n> errors=<json>".
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import Counter

from _common import parser, say

from daffi import FG, Global
from daffi.decorators import fetcher


@fetcher(FG(timeout=5))
def echo(x): ...


@fetcher(FG(timeout=5))
def count(n): ...


@fetcher(FG(timeout=5))
def ticker(n, pause): ...


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.errors: Counter[str] = Counter()
        self.calls = 0

    def started(self) -> None:
        with self.lock:
            self.calls += 1

    def success(self) -> None:
        with self.lock:
            self.ok += 1

    def failure(self, kind: str, error: str, message: str) -> None:
        with self.lock:
            self.failed += 1
            self.errors[error] += 1
            shown = self.failed <= 100
        if shown:
            say("FAIL", kind, error, message.replace("\n", " ")[:300])

    def line(self) -> str:
        with self.lock:
            errors = json.dumps(dict(self.errors))
            return f"ok={self.ok} failed={self.failed} errors={errors} calls={self.calls}"


def one_round(i: int, tally: Tally) -> None:
    tally.started()
    try:
        got = echo(i)
    except Exception as exc:
        tally.failure("echo", type(exc).__name__, str(exc))
    else:
        if got == i:
            tally.success()
        else:
            tally.failure("echo", "Mismatch", f"echo({i}) returned {got!r}")
    if i % 10 == 0:
        check_stream(tally, "count", count, 3)


def check_stream(tally: Tally, kind: str, fetch, *args, stop=None) -> None:
    """Read a whole stream of ``0 .. args[0]-1``; ``stop`` set: leave it early, uncounted."""
    tally.started()
    got = []
    try:
        with fetch(*args) as items:
            for item in items:
                got.append(item)
                if stop is not None and stop.is_set():
                    return
    except Exception as exc:
        tally.failure(kind, type(exc).__name__, str(exc))
    else:
        if got == list(range(args[0])):
            tally.success()
        else:
            tally.failure(kind, "Mismatch", f"{kind}{args} gave {got!r}")


def keep_a_stream_open(tally: Tally, stop: threading.Event) -> None:
    while not stop.is_set():
        check_stream(tally, "ticker", ticker, 100, 0.02, stop=stop)


def read_commands(tally: Tally, stop: threading.Event) -> None:
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["report"]:
            say("REPORT", " ".join(words[1:2]) or "-", tally.line())
        elif words[:1] == ["stop"]:
            break
    stop.set()


if __name__ == "__main__":
    cli = parser(__doc__)
    cli.add_argument("--seconds", type=float, default=None)
    cli.add_argument("--pause", type=float, default=0.005, help="between two rounds")
    args = cli.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tally = Tally()
    g = Global(process_name="legit", backend=args.backend, unix_sock_path=args.sock_dir)
    g.wait_function("echo", timeout=15)
    g.wait_function("ticker", timeout=15)
    threading.Thread(target=read_commands, args=(tally, stop), daemon=True).start()
    streamer = threading.Thread(target=keep_a_stream_open, args=(tally, stop))
    streamer.start()
    say("READY")
    ends = None if args.seconds is None else time.monotonic() + args.seconds
    i = 0
    while not stop.is_set() and (ends is None or time.monotonic() < ends):
        one_round(i, tally)
        i += 1
        stop.wait(args.pause)
    stop.set()
    streamer.join()
    say("FINAL", tally.line())
    g.stop()
