"""The application's side: fetchers of service.py's callbacks, and code that uses them."""

from collections.abc import AsyncIterator

from daffi import PERIOD, ScheduledTask
from daffi.decorators import alias, fetcher


@fetcher
async def add(a: int, b: int) -> int: ...


@fetcher
async def divide(a: float, b: float) -> float: ...


@fetcher
async def countdown(start: int) -> AsyncIterator[int]: ...


@fetcher
async def heartbeat(source: str) -> None: ...


async def start_heartbeat(source: str) -> ScheduledTask:
    """Ask whichever process offers `heartbeat` to run it every 50 ms."""
    return await heartbeat.call(source, exec_modifier=PERIOD(interval="50ms"))


@alias("add")
@fetcher
def add_blocking(a: int, b: int) -> int:
    """The same remote `add`, for code without an event loop (it blocks)."""
