"""A controller with a node that offers ``wrap`` and ``unwrap``, for code transfer and pickle.

Usage: pickle_server.py TRANSPORT... NAME SWITCHES
``SWITCHES``: ``none``, or a comma-separated list of ``pickle`` (``allow_pickle=True``) and
``transfer`` (``allow_transfer=True``). ``wrap(x)`` returns a ``Box``, which msgpack cannot
carry; ``unwrap(box)`` reads the box it is sent. Prints "READY <pid>", then serves until a
line arrives on stdin.
"""

from __future__ import annotations

import os
import sys

from _cli import say, transport_options

from daffi import Global
from daffi.decorators import callback


class Box:
    """A plain class: msgpack cannot carry it (cloudpickle sends it by value: it lives in
    ``__main__``)."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Box({self.value!r})"


@callback
def wrap(x):
    return Box(x)


@callback
def unwrap(box):
    return box.value


if __name__ == "__main__":
    options, rest = transport_options(sys.argv[1:])
    name, switches = rest
    with Global(
        process_name=name,
        init_controller=True,
        allow_pickle="pickle" in switches.split(","),
        allow_transfer="transfer" in switches.split(","),
        **options,
    ):
        say("READY", os.getpid())
        sys.stdin.readline()
    say("STOPPED")
