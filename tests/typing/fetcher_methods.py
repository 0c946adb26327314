"""Methods of ``Fetcher`` subclasses as the ``daffi.mypy`` plugin types them (never imported).

Checked by tests/unit/test_typing.py like fetchers.py: a ``# R:`` comment ends a line whose
``reveal_type`` must show the type after it, and the file must otherwise pass
``mypy --strict`` with the plugin. Each class's ``exec_modifier`` decides what calling its
methods returns; ``.call(..., exec_modifier=X)`` returns by ``X``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from fetcher_bases import BackgroundBase

import daffi
from daffi import BG, BROADCAST, FG, PERIOD, Fetcher
from daffi.decorators import alias, local
from daffi.registry import Fetcher as FetcherBase

if TYPE_CHECKING:
    from typing_extensions import reveal_type

CUSTOM_MODIFIER: Any = BG


class Calc(Fetcher):
    """No ``exec_modifier``: FG, calls return the result."""

    def sub(self, a: int, b: int) -> int: ...

    async def div(self, a: float, b: float) -> float: ...

    async def half(self, a: float) -> float: ...

    @alias("power")
    def pow(self, a: int, b: int) -> int: ...

    def describe(self, name: str, *, loud: bool = False) -> str:
        """A docstring is a proxy body too."""

    @local
    def double(self, a: int) -> int:
        return 2 * a

    def _helper(self, a: int) -> int:
        return a

    @staticmethod
    def tool(a: int) -> int:
        return a

    @classmethod
    def make(cls) -> Calc:
        return cls()

    @property
    def size(self) -> int:
        return 1


class Background(daffi.Fetcher):
    exec_modifier = BG

    def sub(self, a: int, b: int) -> int: ...

    async def div(self, a: float, b: float) -> float: ...


class BackgroundWithTimeout(Fetcher):
    exec_modifier = BG(timeout=3)

    def sub(self, a: int, b: int) -> int: ...


class Everyone(Fetcher):
    exec_modifier: ClassVar[BROADCAST] = BROADCAST(timeout=5)

    def status(self) -> str: ...

    async def status_async(self) -> str: ...


class Scheduler(FetcherBase):  # Fetcher, imported under another name
    exec_modifier = PERIOD(interval="5s")

    def tick(self) -> None: ...

    async def tick_async(self, reason: str) -> None: ...


class Foreground(Fetcher):
    exec_modifier = FG(timeout=1)

    def sub(self, a: int, b: int) -> int: ...


class Scheduled(Scheduler):
    """A subclass of a Fetcher class of the same module: its modifier too."""

    def tock(self) -> None: ...


class Child(BackgroundBase):
    """A subclass of another module's Fetcher class: its modifier too."""

    def pong(self, text: str) -> str: ...


class Custom(Fetcher):
    """A modifier the plugin cannot read: calls are Any, arguments still checked."""

    exec_modifier = CUSTOM_MODIFIER

    def sub(self, a: int, b: int) -> int: ...


class NotAFetcher:
    def sub(self, a: int, b: int) -> int:
        return a - b


def sync_code(c: Calc) -> None:
    every_second = PERIOD(interval=1)
    reveal_type(c.sub(5, 3))  # R: int
    reveal_type(c.sub)  # R: daffi.registry._typing.SyncFetcherFunction[[a: int, b: int], int, int]
    reveal_type(c.pow(2, 3))  # R: int
    reveal_type(c.describe("x", loud=True))  # R: str
    reveal_type(c.sub.call(5, 3))  # R: int
    reveal_type(c.sub.call(5, 3, exec_modifier=BG))  # R: daffi._results.AsyncResult[int]
    reveal_type(c.sub.call(5, 3, exec_modifier=BROADCAST))  # R: dict[str, int]
    reveal_type(c.sub.call(5, 3, exec_modifier=every_second))  # R: daffi._results.ScheduledTask
    reveal_type(c.sub.call(5, 3, exec_modifier=FG(timeout=2)))  # R: int
    reveal_type(c.sub.alias)  # R: str
    reveal_type(c.double)  # R: def (a: int) -> int
    reveal_type(c._helper)  # R: def (a: int) -> int
    reveal_type(c.tool)  # R: def (a: int) -> int
    reveal_type(Calc.make)  # R: def () -> fetcher_methods.Calc
    reveal_type(c.size)  # R: int
    reveal_type(Calc.sub)  # R: daffi.registry._typing.SyncFetcherMethod[[a: int, b: int], int, int]

    reveal_type(Background().sub(1, 2))  # R: daffi._results.AsyncResult[int]
    reveal_type(Background().sub(1, 2).get(timeout=5))  # R: int
    reveal_type(Background().sub.call(1, 2, exec_modifier=FG))  # R: int
    reveal_type(BackgroundWithTimeout().sub(1, 2))  # R: daffi._results.AsyncResult[int]
    reveal_type(Everyone().status())  # R: dict[str, str]
    reveal_type(Scheduler().tick())  # R: daffi._results.ScheduledTask
    reveal_type(Scheduler().tick.call(exec_modifier=BG))  # R: daffi._results.AsyncResult[None]
    reveal_type(Foreground().sub(1, 2))  # R: int
    reveal_type(Scheduled().tock())  # R: daffi._results.ScheduledTask
    reveal_type(Child().pong("x"))  # R: daffi._results.AsyncResult[str]
    reveal_type(Child().ping(1))  # R: daffi._results.AsyncResult[int]
    reveal_type(Custom().sub(1, 2))  # R: Any
    reveal_type(Custom().sub.call(1, 2, exec_modifier=BG))  # R: daffi._results.AsyncResult[int]
    reveal_type(NotAFetcher().sub)  # R: def (a: int, b: int) -> int

    reveal_type(Calc.sub.wrapped)  # R: def (*Any, **Any) -> Any
    task = Scheduler().tick()
    task.cancel()


def in_a_function() -> None:
    class Pinger(Fetcher):
        exec_modifier = BROADCAST

        def ping(self, n: int) -> int: ...

    reveal_type(Pinger().ping(1))  # R: dict[str, int]


async def async_code(c: Calc) -> None:
    reveal_type(await c.div(1.0, 2.0))  # R: float
    reveal_type(c.half)  # R: daffi.registry._typing.AsyncFetcherFunction[[a: float], float, float]
    reveal_type(await c.div.call(1, 2, exec_modifier=BG))  # R: daffi._results.AsyncResult[float]
    reveal_type(await (await c.div.call(1.0, 2.0, exec_modifier=BG)))  # R: float
    reveal_type(await Background().div(1.0, 2.0))  # R: daffi._results.AsyncResult[float]
    reveal_type(await Everyone().status_async())  # R: dict[str, str]
    reveal_type(await Scheduler().tick_async("why"))  # R: daffi._results.ScheduledTask
    reveal_type(await Scheduler().tick_async.call("why", exec_modifier=FG))  # R: None
