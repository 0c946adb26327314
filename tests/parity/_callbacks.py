"""Callbacks of the matrix, in a ``def`` and an ``async def`` flavour, recording what they do
in a :class:`Probe` (thread-safe: the callee side runs in threads and on loops), and the
fetchers that call them (``def`` for sync callers, ``async def`` for async callers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio

from daffi.decorators import alias, fetcher

from ._net import Called, Net, call_async, call_sync


class Probe:
    """What the callee saw: which calls started, finished, or were cancelled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: dict[str, threading.Event] = {}
        self.finished: dict[str, threading.Event] = {}
        self.cancelled: dict[str, threading.Event] = {}
        #: released by the test (or at teardown), for callbacks that block until told
        self.release = threading.Event()

    def _event(self, table: dict[str, threading.Event], tag: str) -> threading.Event:
        with self.lock:
            event = table.get(tag)
            if event is None:
                event = table[tag] = threading.Event()
            return event

    def started_event(self, tag: str) -> threading.Event:
        return self._event(self.started, tag)

    def finished_event(self, tag: str) -> threading.Event:
        return self._event(self.finished, tag)

    def cancelled_event(self, tag: str) -> threading.Event:
        return self._event(self.cancelled, tag)


def callee_callbacks(kind: str, probe: Probe) -> dict[str, Callable[..., Any]]:
    """``slow(tag, seconds)``: runs ``seconds`` then returns ``"done-<tag>"`` (``seconds < 0``:
    until ``probe.release``, at most 10 s); ``echo(value)``."""
    if kind == "def":

        def slow(tag: str, seconds: float) -> str:
            probe.started_event(tag).set()
            if seconds < 0:
                probe.release.wait(10)
            else:
                time.sleep(seconds)
            probe.finished_event(tag).set()
            return f"done-{tag}"

        def echo(value: Any) -> Any:
            return value

        return {"slow": slow, "echo": echo}

    async def aslow(tag: str, seconds: float) -> str:
        probe.started_event(tag).set()
        try:
            if seconds < 0:
                await anyio.to_thread.run_sync(probe.release.wait, 10, abandon_on_cancel=True)
            else:
                await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            probe.cancelled_event(tag).set()
            raise
        probe.finished_event(tag).set()
        return f"done-{tag}"

    async def aecho(value: Any) -> Any:
        return value

    return {"slow": aslow, "echo": aecho}


@fetcher
def slow(tag: str, seconds: float) -> str: ...


@fetcher
def echo(value: Any) -> Any: ...


@alias("slow")
@fetcher
async def slow_async(tag: str, seconds: float) -> str: ...


@alias("echo")
@fetcher
async def echo_async(value: Any) -> Any: ...


SYNC_FETCHERS = {"slow": slow, "echo": echo}
ASYNC_FETCHERS = {"slow": slow_async, "echo": echo_async}


async def call(net: Net, name: str, *args: Any, modifier: Any = None, bound: float) -> Called:
    """Call ``name`` through the cell's caller, the way its kind calls: a ``def`` fetcher in a
    plain thread, or an ``async def`` fetcher awaited on the caller's loop."""
    if net.caller_kind == "sync":
        sync_fetcher = SYNC_FETCHERS[name]
        return await call_sync(
            net.caller, lambda: sync_fetcher.call(*args, exec_modifier=modifier), bound
        )
    async_fetcher = ASYNC_FETCHERS[name]
    return await call_async(
        net.caller, lambda: async_fetcher.call(*args, exec_modifier=modifier), bound
    )
