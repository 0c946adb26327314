"""The callbacks the serving programs offer (imported only by them, so callers offer none)."""

from __future__ import annotations

import os

from daffi.decorators import callback


@callback
def square(x):
    return x * x


@callback
def whoami():
    """The PID of the process that ran the call: tests compare it with the program's."""
    return os.getpid()
