"""``python -m daffi``: the ``daffi`` command (see :mod:`daffi.cli.main`)."""

from __future__ import annotations

import sys

from daffi.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
