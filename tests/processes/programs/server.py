"""A controller that also offers callbacks: decorator-based and class-based.

Usage: server.py TRANSPORT... [PROCESS_NAME]
Prints "READY <port or socket dir>" once it accepts nodes, then serves until terminated.
"""

from __future__ import annotations

import os
import sys

import anyio.lowlevel
from _cli import transport_options

from daffi import Global
from daffi.decorators import alias, callback, local
from daffi.registry import Callback


@callback
def add(a, b):
    return a + b


@callback
def describe(a, b=0, *, label="point"):
    return f"{label}: a={a} b={b}"


@alias("shout")
@callback
def make_loud(text):
    return text.upper() + "!"


@callback
@alias("whisper")
def make_quiet(text):
    return text.lower() + "..."


@callback
async def async_double(x):
    await anyio.lowlevel.checkpoint()
    return x * 2


@callback
def boom(message):
    raise ValueError(message)


@callback
def server_pid():
    return os.getpid()


class Calculator(Callback):
    auto_init = True

    def __post_init__(self):
        self.offset = 100

    def multiply(self, a, b):
        return a * b

    def add_offset(self, x):
        return x + self.offset

    @alias("power_of")
    def power(self, base, exp):
        return base**exp

    @staticmethod
    def negate(x):
        return -x

    @local
    def local_helper(self):
        return "local only"

    def _private_helper(self):
        return "private"

    def uses_helpers(self):
        return f"{self.local_helper()} / {self._private_helper()}"


class Scaler(Callback):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def scale(self, x):
        return x * self.factor


if __name__ == "__main__":
    options, rest = transport_options(sys.argv[1:])
    process_name = rest[0] if rest else "server"
    Scaler(10)
    g = Global(process_name=process_name, init_controller=True, **options)
    print("READY", g.port or options.get("unix_sock_path"), flush=True)
    g.join()
