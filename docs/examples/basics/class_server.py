"""Callbacks declared as classes: every public method is a callback.

Run:    python class_server.py [ADDRESS]     then class_client.py with the same ADDRESS.
"""

import sys

from daffi import Global
from daffi.decorators import alias, local
from daffi.registry import Callback

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:8888"


class Calculator(Callback):
    auto_init = True  # daffi creates the one instance when the class is defined

    def add(self, a: float, b: float) -> float:
        return a + b

    @alias("mul")  # offered as "mul", not "multiply"
    def multiply(self, a: float, b: float) -> float:
        return a * b

    def scale(self, values: list[float], factor: float = 1.0) -> list[float]:
        return [self._round(v * factor) for v in values]

    @staticmethod
    def version() -> str:
        return "1.0"

    @local  # an ordinary method: not offered to other processes
    def reset(self) -> None:
        pass

    def _round(self, value: float) -> float:  # private: not offered either
        return round(value, 2)


class Greeter(Callback):
    # Without auto_init you create the one instance yourself, with your own arguments.
    def __init__(self, greeting: str) -> None:
        super().__init__()
        self.greeting = greeting

    def greet(self, name: str) -> str:
        return f"{self.greeting}, {name}!"


if __name__ == "__main__":
    Greeter("Hello")
    g = Global(process_name="class-server", init_controller=True, address=ADDRESS)
    print(f"server ready on {g.address}", flush=True)
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
