"""A blocking (plain script) caller: one scenario per run.

Usage: caller.py TRANSPORT... SCENARIO TAG

Scenarios: bg, fire, timeout, broadcast, pin, spread (see each function). Every scenario
prints "OUTCOME <json>" lines and exits 0; ``fire`` then waits for a line on stdin first, so
the fire-and-forget call is not cut short by the caller stopping.
"""

from __future__ import annotations

import builtins
import sys
import time

from _modcli import report, say, transport_options

import daffi.exceptions
from daffi import BG, BROADCAST, FG, AsyncResult, Global
from daffi.decorators import fetcher

NODES = ("n1", "n2", "n3")


@fetcher
def slow_sync(tag): ...


@fetcher
def fire(tag): ...


@fetcher(FG(timeout=1))
def slow_async(tag): ...


@fetcher(BROADCAST())
def flaky(x): ...


@fetcher
def whoami(tag): ...


@fetcher
def pair_name(tag): ...


def bg(tag):
    """Three BG calls pinned to n1 (its sync callback sleeps 1 s): they overlap."""
    started = time.monotonic()
    results = [slow_sync.call(f"{tag}-{i}", exec_modifier=BG(receiver="n1")) for i in range(3)]
    submitted = time.monotonic() - started
    first = [r.get(timeout=10) for r in results]
    elapsed = time.monotonic() - started
    second = [r.get() for r in results]
    report(
        "OUTCOME",
        types=[type(r).__name__ for r in results],
        is_async_result=all(isinstance(r, AsyncResult) for r in results),
        submitted=submitted,
        elapsed=elapsed,
        values=first,
        same=first == second,
        ready=[r.ready for r in results],
    )


def fire_and_forget(tag):
    value = fire.call(tag, exec_modifier=BG(return_result=False))
    report("OUTCOME", value=repr(value))
    sys.stdin.readline()


def timeout(tag):
    say("CALLING", tag)
    started = time.monotonic()
    try:
        value = slow_async(tag)
    except Exception as exc:
        report(
            "OUTCOME",
            raised=type(exc).__name__,
            daffi_timeout=isinstance(exc, daffi.exceptions.TimeoutError),
            builtin_timeout=isinstance(exc, builtins.TimeoutError),
            elapsed=time.monotonic() - started,
        )
    else:
        report("OUTCOME", returned=repr(value), elapsed=time.monotonic() - started)


def broadcast(tag):
    """Two identical broadcasts to n1, n2 and n3 (n3 fails)."""
    for _ in range(2):
        try:
            value = flaky(tag)
        except ValueError as exc:
            report("OUTCOME", **describe(exc, caught="ValueError"))
        except daffi.exceptions.RemoteCallError as exc:
            report("OUTCOME", **describe(exc, caught="RemoteCallError"))
        else:
            report("OUTCOME", returned=value)


def describe(exc, caught):
    return {
        "caught": caught,
        "raised": type(exc).__name__,
        "remote_call_error": isinstance(exc, daffi.exceptions.RemoteCallError),
        "results": getattr(exc, "results", None),
        "errors": {
            node: {
                "value_error": isinstance(error, ValueError),
                "remote_type": getattr(error, "remote_type", None),
                "remote_message": getattr(error, "remote_message", None),
                "process_name": getattr(error, "process_name", None),
            }
            for node, error in getattr(exc, "errors", {}).items()
        },
    }


def pin(tag):
    nodes = [whoami.call(f"{tag}-{i}", exec_modifier=FG(receiver="n2")) for i in range(10)]
    report("OUTCOME", nodes=nodes)


def spread(tag):
    providers = sorted(
        process for process, callbacks in g.registered_callbacks.items() if "pair_name" in callbacks
    )
    nodes = [pair_name(f"{tag}-{i}") for i in range(10)]
    report("OUTCOME", providers=providers, nodes=nodes)


SCENARIOS = {
    "bg": bg,
    "fire": fire_and_forget,
    "timeout": timeout,
    "broadcast": broadcast,
    "pin": pin,
    "spread": spread,
}

if __name__ == "__main__":
    options, (scenario, tag) = transport_options(sys.argv[1:])
    g = Global(process_name=f"caller-{scenario}-{tag}", **options)
    for node in NODES:
        g.wait_process(node, timeout=15)
    SCENARIOS[scenario](tag)
    g.stop()
    say("DONE")
