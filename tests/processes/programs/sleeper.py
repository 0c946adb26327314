"""A node whose callback sleeps for a long time.

Usage: sleeper.py TRANSPORT...
Prints "READY" once connected and "CALLED" when the callback starts.
"""

from __future__ import annotations

import sys
import time

from _cli import say, transport_options

from daffi import Global
from daffi.decorators import callback


@callback
def sleep_long(seconds):
    say("CALLED")
    time.sleep(seconds)
    return "woke up"


if __name__ == "__main__":
    options, _ = transport_options(sys.argv[1:])
    g = Global(process_name="sleeper", **options)
    say("READY")
    g.join()
