"""Documented fetcher styles, type-checked by tests/unit/test_typing.py (never imported).

A ``# R:`` comment ends a line whose ``reveal_type`` must show the type after it; this file must
otherwise pass ``mypy --strict`` with the ``daffi.mypy`` plugin (the proxy bodies are ``...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import daffi
from daffi import BG, BROADCAST, FG, PERIOD, AsyncResult, Fetcher, ScheduledTask, callback, fetcher
from daffi.decorators import alias

if TYPE_CHECKING:
    from typing_extensions import reveal_type


@dataclass
class Point:
    x: int
    y: int


@fetcher
def add(a: int, b: int) -> int: ...


@fetcher
async def add_async(a: int, b: int) -> int: ...


@fetcher(BG)
def add_later(a: int, b: int) -> int: ...


@fetcher(exec_modifier=FG(timeout=5))
def add_soon(a: int, b: int) -> int:
    """A docstring is a proxy body too."""


@fetcher(BROADCAST)
def everyone(p: Point) -> Point:
    pass


@fetcher(PERIOD(interval="10s"))
def tick() -> None: ...


@daffi.fetcher
def label(p: Point, *, prefix: str = "") -> str: ...


@callback
def multiply(a: int, b: int) -> int:
    return a * b


class Calculator(Fetcher):
    def sub(self, a: int, b: int) -> int: ...

    async def div(self, a: float, b: float) -> float: ...

    @alias("power")
    def pow(self, a: int, b: int) -> int: ...

    def __post_init__(self) -> None:
        self.factor = 2


def sync_code(point: Point) -> None:
    reveal_type(add(1, 2))  # R: int
    reveal_type(add_later(1, 2))  # R: daffi._results.AsyncResult[int]
    reveal_type(add_soon(1, 2))  # R: int
    reveal_type(everyone(point))  # R: dict[str, fetchers.Point]
    reveal_type(tick())  # R: daffi._results.ScheduledTask
    reveal_type(label(point, prefix="p"))  # R: str
    reveal_type(add.call(1, 2))  # R: int
    reveal_type(add.call(1, 2, exec_modifier=BG))  # R: daffi._results.AsyncResult[int]
    reveal_type(add.call(1, 2, exec_modifier=BG(timeout=3)))  # R: daffi._results.AsyncResult[int]
    reveal_type(add.call(1, 2, exec_modifier=PERIOD(interval=1)))  # R: daffi._results.ScheduledTask
    reveal_type(add.call(1, 2, exec_modifier=BROADCAST))  # R: dict[str, int]
    reveal_type(add.call(1, 2, exec_modifier=FG(timeout=1)))  # R: int
    reveal_type(add_later.call(1, 2, exec_modifier=FG))  # R: int
    reveal_type(multiply(2, 3))  # R: int
    reveal_type(Calculator().sub(5, 3))  # R: int
    reveal_type(Calculator().pow(2, 3))  # R: int
    result: AsyncResult[int] = add.call(1, 2, exec_modifier=BG)
    reveal_type(result.get(timeout=5))  # R: int
    task: ScheduledTask = tick.call(exec_modifier=PERIOD(interval=1))
    task.cancel()
    reveal_type(add.alias)  # R: str


async def async_code() -> None:
    reveal_type(await add_async(1, 2))  # R: int
    reveal_type(await add_async.call(1, 2, exec_modifier=BG))  # R: daffi._results.AsyncResult[int]
    reveal_type(await (await add_async.call(1, 2, exec_modifier=BG)))  # R: int
    reveal_type(await Calculator().div(1.0, 2.0))  # R: float
    reveal_type(await add_later(1, 2).get_async())  # R: int


# ---------------------------------------------------------------- calls by name (g.call)


def calls_by_name(g: daffi.Global) -> None:
    reveal_type(g.call.add)  # R: daffi._remote_call.LazyRemoteCall
    reveal_type(g.call.add(1, 2))  # R: daffi._remote_call.RemoteCall
    reveal_type(g.call.add(1, 2) & FG)  # R: Any
    reveal_type(g.call.add(1, 2) & BG(timeout=5))  # R: daffi._results.AsyncResult[Any] | None
    reveal_type(g.call.add(1, 2) & PERIOD(interval=3))  # R: daffi._results.ScheduledTask
    reveal_type((g.call.add & BG)(1, 2))  # R: daffi._results.AsyncResult[Any] | None
    reveal_type((g.call.add & PERIOD(interval=3))(1, 2))  # R: daffi._results.ScheduledTask
    reveal_type(g.call.add(1, 2).bg())  # R: daffi._results.AsyncResult[Any] | None
    reveal_type(g.call.add.exists)  # R: bool


async def calls_by_name_async(g: daffi.Global) -> None:
    reveal_type(await g.call.add(1, 2).period_async(interval=3))  # R: daffi._results.ScheduledTask
