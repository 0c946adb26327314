"""A callee node for the execution-modifier tests.

Usage: callee.py TRANSPORT... NAME [fail] [pair]

- ``fail``: ``flaky`` raises ValueError on this node.
- ``pair``: this node also offers ``pair_name`` (the round-robin test runs it on two nodes).

Prints "READY NAME" once connected; every callback prints marker lines carrying the tag the
caller passed, so tests sharing these nodes never confuse each other's calls.
"""

from __future__ import annotations

import sys
import threading
import time

import anyio
from _modcli import say, transport_options

from daffi import Global
from daffi.decorators import callback

NAME = ""
FAIL = False


@callback
def slow_sync(tag):
    """Sync: runs in a worker thread, so several calls overlap."""
    say("SLOW_SYNC", tag)
    time.sleep(1)
    return {"node": NAME, "tag": tag, "thread": threading.get_ident()}


@callback
def fire(tag):
    say("FIRED", tag)


@callback
async def slow_async(tag):
    """Async: takes 3 s unless cancelled; says which of the two happened."""
    remaining = anyio.current_effective_deadline() - anyio.current_time()
    say("STARTED", tag, f"remaining={remaining:.3f}")
    try:
        await anyio.sleep(3)
    except anyio.get_cancelled_exc_class():
        say("CANCELLED", tag)
        raise
    say("completed", tag)
    return "completed"


@callback
def flaky(x):
    if FAIL:
        raise ValueError(f"{NAME} refuses {x}")
    return f"{NAME}:{x}"


@callback
def whoami(tag):
    say("WHOAMI", tag)
    return NAME


def pair_name(tag):
    say("PAIR", tag)
    return NAME


if __name__ == "__main__":
    options, rest = transport_options(sys.argv[1:])
    NAME, flags = rest[0], rest[1:]
    FAIL = "fail" in flags
    if "pair" in flags:
        callback(pair_name)
    g = Global(process_name=NAME, **options)
    say("READY", NAME)
    g.join()
