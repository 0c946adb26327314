"""Fetchers declared as a class, aliases, @local, and fetcher bodies that build the arguments.

Run:    python class_client.py [ADDRESS]     (the address class_server.py listens on)
"""

import sys

from daffi import FG, Args, Global
from daffi.decorators import alias, fetcher, local
from daffi.registry import Fetcher

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:8888"


class Calculator(Fetcher):
    exec_modifier = FG(timeout=10)  # how every method of this class runs

    def add(self, a: float, b: float) -> float:
        pass  # a body with only pass, ... or a docstring: the arguments are sent as given

    @alias("mul")
    def times(self, a: float, b: float) -> float: ...

    @alias("scale")
    def percent(self, values: list[str], pct: float) -> list[float]:
        # A body that returns something runs here first; what it returns is sent.
        # Args(...) gives the exact arguments of the remote callback `scale`. (The
        # annotation is the remote result's, so type checkers need to be told.)
        return Args([float(v) for v in values], factor=pct / 100)  # type: ignore[return-value]

    def version(self) -> str: ...

    @local  # runs here only; may call the remote methods
    def total(self, *numbers: float) -> float:
        result = 0.0
        for number in numbers:
            result = self.add(result, number)
        return result


@fetcher
def greet(name: str) -> str: ...


@alias("add")
@fetcher
def increment(x: float) -> float:
    return x, 1  # type: ignore[return-value]  # sent as the arguments: add(x, 1)


if __name__ == "__main__":
    g = Global(process_name="class-client", address=ADDRESS)
    g.wait_process("class-server", timeout=10)
    print("offered:", sorted(g.registered_callbacks["class-server"]))

    calc = Calculator()
    print("add:", calc.add(2, 3))
    print("mul:", calc.times(2, 3))
    print("percent:", calc.percent(["10", "20.5"], pct=50))
    print("version:", calc.version())
    print("total:", calc.total(1, 2, 3, 4))
    print("increment:", increment(41))
    print("greet:", greet("daffi"))

    g.stop()
