"""Controller and node on the default Unix socket: no address arguments at all.

Prints "READY", "RESULT <answer from the node>", "DONE", then waits for a line on stdin.
"""

from __future__ import annotations

import sys
import threading

from daffi import Global
from daffi.decorators import callback, fetcher

called = threading.Event()


@callback
def greet_controller(name):
    called.set()
    return f"controller greets {name}"


@fetcher
def greet_node(name): ...


if __name__ == "__main__":
    g = Global(init_controller=True)
    print("READY", flush=True)
    g.wait_function("greet_node", timeout=15)
    print("RESULT", greet_node("controller"), flush=True)
    print("CALLED" if called.wait(15) else "NEVER CALLED", flush=True)
    print("DONE", flush=True)
    sys.stdin.readline()
    g.stop()
