"""A node that transfers functions to a server and calls it with values msgpack cannot carry.

Usage: pickle_client.py TRANSPORT... SERVER SWITCHES TRIPWIRE_DIR
``SWITCHES`` as for pickle_server.py. Prints one "RESULT <label> <outcome>" line per
attempt, where the outcome is "ok <repr of the value>" or "<error class>: <message>", then
"DONE". ``TRIPWIRE_DIR`` is created by whoever unpickles the arguments of the ``tripwire``
transfer.
"""

from __future__ import annotations

import asyncio
import os
import sys

from _cli import say, transport_options

from daffi import Global
from daffi.decorators import fetcher


class Box:
    """A plain class: msgpack cannot carry it."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Box({self.value!r})"


class Tripwire:
    """Unpickling it creates the directory ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@fetcher
def wrap(x): ...


@fetcher
def unwrap(box): ...


def attempt(label, call):
    try:
        value = call()
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    else:
        outcome = f"ok {value!r}"
    say("RESULT", label, outcome)


def remote_pid():
    return os.getpid()


async def remote_pid_async():
    await asyncio.sleep(0)
    return os.getpid()


if __name__ == "__main__":
    options, rest = transport_options(sys.argv[1:])
    server, switches, tripwire = rest
    with Global(
        process_name="client",
        allow_pickle="pickle" in switches.split(","),
        allow_transfer="transfer" in switches.split(","),
        **options,
    ) as g:
        g.wait_function("wrap", timeout=15)
        attempt("transfer", lambda: g.transfer_and_call(server, remote_pid))
        attempt(
            "transfer_async",
            lambda: asyncio.run(g.transfer_and_call_async(server, remote_pid_async)),
        )
        attempt("transfer_lambda", lambda: g.transfer_and_call(server, lambda a, b: a * b, 6, 7))
        attempt(
            "tripwire",
            lambda: g.transfer_and_call(server, lambda made: "ran", Tripwire(tripwire)),
        )
        attempt("wrap", lambda: wrap(3))
        attempt("unwrap", lambda: unwrap(Box(5)))
    say("DONE")
