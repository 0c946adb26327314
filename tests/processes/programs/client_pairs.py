"""A client with decorator-based and class-based fetchers for server.py's callbacks.

Usage: client_pairs.py TRANSPORT...
Prints "RESULT <name> <value>" for each call, then "DONE".
"""

from __future__ import annotations

import sys

from _cli import transport_options

from daffi import FG, Global
from daffi.decorators import fetcher
from daffi.registry import Fetcher


@fetcher
def add(a, b):
    """Proxy: the arguments are sent as given."""


@fetcher(FG(timeout=10))
def describe(a, b=0, *, label="point"): ...


@fetcher(exec_modifier=FG)
def async_double(x):
    pass


class CalculatorFetcher(Fetcher):
    exec_modifier = FG(timeout=10)

    def multiply(self, a, b): ...

    def add_offset(self, x): ...

    def negate(self, x): ...

    def uses_helpers(self): ...

    def scale(self, x): ...


if __name__ == "__main__":
    options, _ = transport_options(sys.argv[1:])
    g = Global(process_name="client-pairs", **options)
    g.wait_function("scale", timeout=10)
    calc = CalculatorFetcher()
    print("RESULT add", add(1, 2))
    print("RESULT add_kw", add(a="x", b="y"))
    print("RESULT describe", describe(3, label="dot"))
    print("RESULT async_double", async_double(21))
    print("RESULT multiply", calc.multiply(6, 7))
    print("RESULT add_offset", calc.add_offset(1))
    print("RESULT negate", calc.negate(5))
    print("RESULT uses_helpers", calc.uses_helpers())
    print("RESULT scale", calc.scale(4))
    print("RESULT call_override", add.call(2, 3, exec_modifier=FG(timeout=5)))
    g.stop()
    print("DONE")
