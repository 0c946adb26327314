"""A controller, optionally with a node offering ``square`` and ``whoami``.

Usage: controller.py NAME OPTIONS_JSON [offer]
Listens where OPTIONS_JSON says (host without a port: a free one), logs daffi's INFO lines
to stderr, prints "READY <port>" once it accepts nodes, then serves until terminated.
"""

from __future__ import annotations

import sys

from _seccli import arguments, log_to_stderr, say

from daffi import Global

if __name__ == "__main__":
    name, options, rest = arguments(sys.argv[1:])
    offer = "offer" in rest
    if offer:
        import _callbacks  # noqa: F401  (registers the callbacks)
    log_to_stderr()
    g = Global(process_name=name, init_controller=True, init_node=offer, **options)
    say("READY", g.port)
    g.join()
