"""A node that keeps calling the server, across controller restarts.

Usage: looping_node.py TRANSPORT...
May be started before the controller: the constructor waits for it (connect_timeout=30).
Prints "CONNECTED", then "RESULT <i> <add(i, 1)> <server pid>" for every successful round
and "ERROR <type> <message>" for every failed one.
"""

from __future__ import annotations

import sys
import time

from _cli import transport_options

from daffi import Global
from daffi.decorators import fetcher


@fetcher
def add(a, b): ...


@fetcher
def server_pid(): ...


if __name__ == "__main__":
    options, _ = transport_options(sys.argv[1:])
    g = Global(process_name="looper", connect_timeout=30, **options)
    print("CONNECTED", flush=True)
    i = 0
    while True:
        try:
            g.wait_function("server_pid", timeout=30)
            print("RESULT", i, add(i, 1), server_pid(), flush=True)
        except Exception as exc:
            print("ERROR", type(exc).__name__, exc, flush=True)
        i += 1
        time.sleep(0.1)  # pace the loop: one round every ~100 ms
