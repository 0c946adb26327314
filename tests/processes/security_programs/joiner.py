"""Tries to join a controller, and says how that ended.

Usage: joiner.py NAME OPTIONS_JSON [wait]
With ``wait``, prints "WAITING" once daffi is imported and joins only when a line arrives on
stdin (so a test can time the attempt to the moment it needs).
Prints "JOINED <seconds>" (then leaves) or "REFUSED <exception type> <seconds> <message>",
where <seconds> is how long ``Global(...)`` took.
"""

from __future__ import annotations

import sys
import time

from _seccli import arguments, say

from daffi import Global
from daffi.exceptions import DaffiError

if __name__ == "__main__":
    name, options, rest = arguments(sys.argv[1:])
    if "wait" in rest:
        say("WAITING")
        sys.stdin.readline()
    started = time.monotonic()
    try:
        g = Global(process_name=name, **options)
    except DaffiError as exc:
        say("REFUSED", type(exc).__name__, f"{time.monotonic() - started:.3f}", exc)
    else:
        say("JOINED", f"{time.monotonic() - started:.3f}")
        g.stop()
