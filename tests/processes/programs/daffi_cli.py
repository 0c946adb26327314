"""``python -m daffi ARGS...``, for tests that start programs by path.

Usage: daffi_cli.py ARGS...   (e.g. ``controller --unix-sock-path DIR``)
"""

from __future__ import annotations

import runpy
import sys

if __name__ == "__main__":
    sys.argv = ["daffi", *sys.argv[1:]]
    runpy.run_module("daffi", run_name="__main__", alter_sys=True)
