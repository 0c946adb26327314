"""Prints a line from each lifecycle hook, with the time it ran.

Usage: hooks.py TRANSPORT... controller|node
Prints "INIT <name> <t>", "CONNECT <name> <t>", "DISCONNECT <name> <t>" (t = time.time()).
"""

from __future__ import annotations

import sys
import time

from _cli import say, transport_options

from daffi import Global


def on_init(g, process_name):
    say("INIT", process_name, time.time())


def on_node_connect(g, process_name):
    say("CONNECT", process_name, time.time())


async def on_node_disconnect(g, process_name):
    say("DISCONNECT", process_name, time.time())


if __name__ == "__main__":
    options, rest = transport_options(sys.argv[1:])
    g = Global(
        process_name="hooks",
        init_controller=rest[0] == "controller",
        on_init=on_init,
        on_node_connect=on_node_connect,
        on_node_disconnect=on_node_disconnect,
        **options,
    )
    say("READY")
    g.join()
