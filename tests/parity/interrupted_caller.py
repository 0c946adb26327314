"""A sync caller interrupted by SIGINT in the middle of an FG call (run by test_interrupt.py).

Usage: python interrupted_caller.py SOCK_DIR TOPOLOGY BACKEND

Prints marker lines: ``ready`` (connected, sees the callee), ``calling``, then, once SIGINT
interrupted the call, ``interrupted pending=N``. It then waits for a ``go`` line on stdin
(the test lets the callee finish first), makes two more calls and prints
``after echo=... second=... pending=N routes=M``, and stops.

``pending`` is the size of the node's private table of calls waiting for a reply
(``CallTable.pending``), read on purpose: an interrupted call must leave no entry behind.
``routes`` (controller in this process only, else -1) counts the controller's in-flight
routes of this process's calls (``Controller.router``).
"""

from __future__ import annotations

import sys

from daffi import FG, Global
from daffi.decorators import fetcher


@fetcher
def slow(tag: str, seconds: float) -> str: ...


@fetcher
def echo(value: str) -> str: ...


def main() -> int:
    sock_dir, topology, backend = sys.argv[1:4]
    g = Global(
        "caller",
        init_controller=topology == "ctrl-in-caller",
        unix_sock_path=sock_dir,
        backend=backend,
        connect_timeout=10,
    )
    try:
        print("started", flush=True)
        g.wait_function("slow", timeout=10)
        g.wait_function("echo", timeout=10)
        print("ready", flush=True)
        node = g._runtime.node
        assert node is not None
        try:
            print("calling", flush=True)
            value = slow("first", -1)  # blocks until the callee is released (or cancelled)
            print(f"not interrupted: {value!r}", flush=True)
            return 1
        except KeyboardInterrupt:
            print(f"interrupted pending={len(node.table.pending)}", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        after = echo.call("after", exec_modifier=FG(timeout=5))
        second = slow.call("second", 0, exec_modifier=FG(timeout=5))
        routes = -1
        if g._runtime.controller is not None:
            routes = sum(1 for key in list(g._runtime.controller.router) if key[0] == "caller")
        print(
            f"after echo={after} second={second} pending={len(node.table.pending)} routes={routes}",
            flush=True,
        )
        return 0
    finally:
        g.stop()


if __name__ == "__main__":
    sys.exit(main())
