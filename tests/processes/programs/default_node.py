"""A node on the default Unix socket: ``Global()`` with no arguments.

Prints "RESULT <answer from the controller>", "DONE", then waits for a line on stdin.
"""

from __future__ import annotations

import sys
import threading

from daffi import Global
from daffi.decorators import callback, fetcher

called = threading.Event()


@callback
def greet_node(name):
    called.set()
    return f"node greets {name}"


@fetcher
def greet_controller(name): ...


if __name__ == "__main__":
    g = Global()
    g.wait_function("greet_controller", timeout=15)
    print("RESULT", greet_controller("node"), flush=True)
    print("CALLED" if called.wait(15) else "NEVER CALLED", flush=True)
    print("DONE", flush=True)
    sys.stdin.readline()
    g.stop()
