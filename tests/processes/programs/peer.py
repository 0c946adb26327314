"""A node that offers ``ping`` and calls the ``ping`` of another node.

Usage: peer.py TRANSPORT... MY_NAME OTHER_NAME
Prints "RESULT <answer>" after calling the other node, "CALLED <caller>" when called, then
"DONE" and waits for a line on stdin before leaving (so the other node can finish too).
"""

from __future__ import annotations

import sys
import threading

from _cli import say, transport_options

from daffi import Global
from daffi.decorators import __body_unknown__, alias, callback, fetcher

called = threading.Event()


@callback
def ping(caller):
    say("CALLED", caller)
    called.set()
    return f"pong from {my_name} to {caller}"


# The fetcher carries the callback's remote name; its own name keeps the callback reachable.
@alias("ping")
@fetcher
def ping_other(caller):
    __body_unknown__(caller)


if __name__ == "__main__":
    options, rest = transport_options(sys.argv[1:])
    my_name, other_name = rest
    with Global(process_name=my_name, **options) as g:
        g.wait_process(other_name, timeout=15)
        g.wait_function("ping", timeout=15)
        say("RESULT", ping_other(my_name))
        if not called.wait(15):
            say("NEVER CALLED")
        say("DONE")
        sys.stdin.readline()
    say("STOPPED")
