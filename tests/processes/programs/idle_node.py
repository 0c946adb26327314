"""A node that joins, says so, and leaves (stop()) when a line arrives on stdin.

Usage: idle_node.py TRANSPORT... NAME
Prints "JOINED <t>" once connected and "LEAVING <t>" before it stops (t = time.time()).
"""

from __future__ import annotations

import sys
import time

from _cli import transport_options

from daffi import Global

if __name__ == "__main__":
    options, rest = transport_options(sys.argv[1:])
    g = Global(process_name=rest[0], **options)
    print("JOINED", time.time(), flush=True)
    sys.stdin.readline()
    print("LEAVING", time.time(), flush=True)
    g.stop()
    print("STOPPED", flush=True)
