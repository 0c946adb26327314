"""Calls ``sleep_long(10)`` and reports how the call ended, and when.

Usage: caller.py TRANSPORT...
Prints "CALLING" then "RAISED <type> at=<time.time()> elapsed=<s>" or "RETURNED <value> ...".
"""

from __future__ import annotations

import sys
import time

from _cli import transport_options

from daffi import Global
from daffi.decorators import fetcher


@fetcher
def sleep_long(seconds): ...


if __name__ == "__main__":
    options, _ = transport_options(sys.argv[1:])
    g = Global(process_name="caller", **options)
    g.wait_function("sleep_long", timeout=15)
    print("CALLING", flush=True)
    started = time.monotonic()
    try:
        value = sleep_long(10)
    except Exception as exc:
        outcome = f"RAISED {type(exc).__name__}"
    else:
        outcome = f"RETURNED {value}"
    print(f"{outcome} at={time.time()} elapsed={time.monotonic() - started:.3f}", flush=True)
    g.stop()
