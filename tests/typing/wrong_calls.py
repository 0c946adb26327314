"""Calls that mypy must flag (tests/unit/test_typing.py): an ``# E:`` comment marks each line and
the error code mypy reports there. Never imported."""

from __future__ import annotations

from daffi import BG, PERIOD, Fetcher, callback, fetcher
from daffi.decorators import local


@fetcher
def add(a: int, b: int) -> int: ...


@fetcher
async def add_async(a: int, b: int) -> int: ...


@callback
def multiply(a: int, b: int) -> int:
    return a * b


class Calculator(Fetcher):
    def sub(self, a: int, b: int) -> int: ...

    async def div(self, a: float, b: float) -> float: ...

    @local
    def double(self, a: int) -> int:
        return 2 * a


class Ticker(Fetcher):
    exec_modifier = PERIOD(interval="5s")

    def tick(self, n: int) -> int: ...


def needs_str(text: str) -> None: ...


def needs_int(number: int) -> None: ...


def wrong() -> None:
    add("x", "y", "z")  # E: call-arg, arg-type
    add("1", 2)  # E: arg-type
    add(1)  # E: call-arg
    add(1, 2, c=3)  # E: call-arg
    needs_str(add(1, 2))  # E: arg-type
    needs_int(add.call(1, 2, exec_modifier=BG))  # E: arg-type
    multiply("x", 1)  # E: arg-type
    Calculator().sub(1, "2")  # E: arg-type
    Calculator().sub(1, 2, 3)  # E: call-arg
    Calculator().sub(1, b="2")  # E: arg-type
    Calculator().sub.call(1, 2, exec_modifier=42)  # E: call-overload
    needs_int(Calculator().sub.call(1, 2, exec_modifier=BG))  # E: arg-type
    needs_int(Ticker().tick(1))  # E: arg-type
    Ticker().tick("1")  # E: arg-type
    Calculator().double("x")  # E: arg-type
    Calculator().double.call(1)  # E: attr-defined
    fetcher(42)  # E: call-overload


async def wrong_async() -> None:
    await add_async(1, "2")  # E: arg-type
    needs_str(await add_async(1, 2))  # E: arg-type
    await Calculator().div(1.0, "2")  # E: arg-type
    needs_str(await Calculator().div(1.0, 2.0))  # E: arg-type
