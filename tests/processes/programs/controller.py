"""A standalone controller: routes calls between nodes, offers nothing itself.

Usage: controller.py TRANSPORT...
Prints "READY <port or socket dir>", then serves until terminated.
"""

from __future__ import annotations

import sys

from _cli import transport_options

from daffi import Global

if __name__ == "__main__":
    options, rest = transport_options(sys.argv[1:])
    g = Global(
        process_name=rest[0] if rest else "controller",
        init_node=False,
        init_controller=True,
        **options,
    )
    print("READY", g.port or options.get("unix_sock_path"), flush=True)
    g.join()
