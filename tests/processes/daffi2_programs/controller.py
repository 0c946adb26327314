"""A standalone controller, daffi 2 style.

Usage: controller.py ADDRESS...
"""

from __future__ import annotations

import sys

from _d2 import address, say

from daffi import Global

if __name__ == "__main__":
    options, _ = address(sys.argv[1:])
    g = Global(process_name="controller", init_controller=True, init_node=False, **options)
    say("READY controller")
    g.join()
