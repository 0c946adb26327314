"""A node offering ``square`` and ``whoami``.

Usage: callee.py NAME OPTIONS_JSON
Prints "READY <name> <pid>" once joined, then serves until terminated.
"""

from __future__ import annotations

import os
import sys

import _callbacks  # noqa: F401  (registers the callbacks)
from _seccli import arguments, say

from daffi import Global

if __name__ == "__main__":
    name, options, _ = arguments(sys.argv[1:])
    g = Global(process_name=name, **options)
    say("READY", name, os.getpid())
    g.join()
