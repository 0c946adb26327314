"""Behaviour 4 over every path: ``workers=2`` bounds the ``def`` runs of a node, whatever
starts them: calls (sync callers' channel/lock paths and async callers' loop path),
schedules (``PERIOD``), streams into a callback (a generator fetcher) and a sync generator
callback streaming out. The callee counts the ``def`` bodies running at once under a lock.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from daffi import FG, PERIOD
from daffi.decorators import alias, fetcher

from ._callbacks import Probe, callee_callbacks, slow_async
from ._net import TOPOLOGIES, Net, Wire, network, wait_event

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


class Gauge:
    """How many def callback bodies run at once in the callee's process, and the most seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.runs: collections.Counter[str] = collections.Counter()
        self.now: collections.Counter[str] = collections.Counter()
        #: which sources were running when the peak was first reached
        self.at_peak: dict[str, int] = {}

    @contextlib.contextmanager
    def body(self, kind: str) -> Iterator[None]:
        with self.lock:
            self.running += 1
            self.runs[kind] += 1
            self.now[kind] += 1
            if self.running > self.peak:
                self.peak = self.running
                self.at_peak = {k: v for k, v in self.now.items() if v}
        try:
            yield
        finally:
            with self.lock:
                self.running -= 1
                self.now[kind] -= 1


def gauged_callbacks(gauge: Gauge) -> dict[str, Callable[..., Any]]:
    def work(tag: str) -> str:
        with gauge.body("call"):
            time.sleep(0.05)
        return tag

    def tick() -> None:
        with gauge.body("schedule"):
            time.sleep(0.05)

    def sink(value: int) -> None:
        with gauge.body("stream-in"):
            time.sleep(0.03)

    def produce(count: int) -> Iterator[int]:
        for value in range(count):
            with gauge.body("stream-out"):
                time.sleep(0.03)
            yield value

    return {"work": work, "tick": tick, "sink": sink, "produce": produce}


@fetcher
def work(tag: str) -> str: ...


@alias("work")
@fetcher
async def work_async(tag: str) -> str: ...


@alias("tick")
@fetcher
async def tick_async() -> None: ...


@alias("sink")
@fetcher
async def feed_sink(count: int):
    for value in range(count):
        yield value


@alias("produce")
@fetcher
async def produce_async(count: int) -> int: ...


LOAD_SECONDS = 1.2


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_workers_bound_calls_schedules_and_streams(
    wire: Wire, anyio_backend: str, topology: str
) -> None:
    gauge = Gauge()
    async with network(
        wire, topology, anyio_backend, "async", gauged_callbacks(gauge), workers=2
    ) as net:
        stop = threading.Event()
        failures: list[BaseException] = []

        def sync_caller(index: int) -> None:
            # A plain thread calling a def fetcher: the call channel / lock paths.
            with net.caller.as_current():
                n = 0
                while not stop.is_set():
                    tag = f"t{index}-{n}"
                    assert work.call(tag, exec_modifier=FG(timeout=5)) == tag
                    n += 1

        async def in_thread(index: int) -> None:
            try:
                await anyio.to_thread.run_sync(sync_caller, index)
            except BaseException as exc:
                failures.append(exc)
                raise

        async def async_caller(index: int) -> None:
            with net.caller.as_current():
                n = 0
                while not stop.is_set():
                    tag = f"a{index}-{n}"
                    assert await work_async.call(tag, exec_modifier=FG(timeout=5)) == tag
                    n += 1

        async def stream_in() -> None:
            with net.caller.as_current():
                while not stop.is_set():
                    await feed_sink.call(8, exec_modifier=FG(timeout=5))

        async def stream_out() -> None:
            with net.caller.as_current():
                while not stop.is_set():
                    values = [v async for v in await produce_async.call(6)]
                    assert values == list(range(6))

        with anyio.fail_after(LOAD_SECONDS + 8):
            with net.caller.as_current():
                schedule = await tick_async.call(exec_modifier=PERIOD(interval=0.02))
            try:
                async with anyio.create_task_group() as tg:
                    for index in range(2):
                        tg.start_soon(in_thread, index)
                        tg.start_soon(async_caller, index)
                    tg.start_soon(stream_in)
                    tg.start_soon(stream_out)
                    await anyio.sleep(LOAD_SECONDS)
                    stop.set()
            finally:
                stop.set()
                with net.caller.as_current():
                    await schedule.cancel_async()
        assert not failures
        for kind in ("call", "schedule", "stream-in", "stream-out"):
            assert gauge.runs[kind] > 0, f"no {kind} run happened: {dict(gauge.runs)}"
        assert gauge.peak <= 2, (
            f"{gauge.peak} def callback bodies ran at once with workers=2 "
            f"(running at the peak: {gauge.at_peak}; runs by source: {dict(gauge.runs)})"
        )


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_workers_two_def_calls_run_at_once_right_after_joining(
    wire: Wire, anyio_backend: str, topology: str
) -> None:
    """workers=2 means two def calls run at once, from the moment the caller can see the
    callee (no window in which the node runs fewer)."""
    probe = Probe()
    callbacks = callee_callbacks("def", probe)
    async with network(
        wire, topology, anyio_backend, "async", callbacks, workers=2, settle=False
    ) as net:
        try:
            async with anyio.create_task_group() as tg:
                for tag in ("first", "second"):
                    tg.start_soon(_blocked_call, net, tag)
                started = [
                    await wait_event(probe.started_event(tag), 1.5) for tag in ("first", "second")
                ]
                probe.release.set()
            assert all(started), (
                f"with workers=2 only {sum(started)} of two concurrent def calls started "
                "within 1.5 s of the callee joining"
            )
        finally:
            probe.release.set()


async def _blocked_call(net: Net, tag: str) -> None:
    with anyio.move_on_after(8), net.caller.as_current():
        await slow_async(tag, -1)
