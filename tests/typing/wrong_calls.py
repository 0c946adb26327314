"""Calls that mypy must flag (tests/unit/test_typing.py): an ``# E:`` comment marks each line and
the error code mypy reports there. Never imported."""

from __future__ import annotations

from daffi import BG, Fetcher, callback, fetcher


@fetcher
def add(a: int, b: int) -> int: ...


@fetcher
async def add_async(a: int, b: int) -> int: ...


@callback
def multiply(a: int, b: int) -> int:
    return a * b


class Calculator(Fetcher):
    def sub(self, a: int, b: int) -> int: ...


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
    fetcher(42)  # E: call-overload


async def wrong_async() -> None:
    await add_async(1, "2")  # E: arg-type
    needs_str(await add_async(1, 2))  # E: arg-type
