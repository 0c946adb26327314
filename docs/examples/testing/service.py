"""A small service: the callbacks that test_service.py tests without a network.

In production a process imports this module and runs a node that offers them, e.g.
``Global(process_name="service", address="tcp://127.0.0.1:8888").join()``.
"""

from collections.abc import Iterator

from daffi.decorators import callback


@callback
def add(a: int, b: int) -> int:
    return a + b


@callback
async def divide(a: float, b: float) -> float:
    return a / b  # b == 0: the caller gets the ZeroDivisionError


@callback
def countdown(start: int) -> Iterator[int]:
    """A generator callback: the caller iterates over its values as they come."""
    yield from range(start, 0, -1)
