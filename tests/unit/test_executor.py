"""The executor of ``def`` callbacks: slots, the queue, deadlines, cancel, chains, shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from daffi._executor import Executor, Job, Outcome, current_chain

pytestmark = pytest.mark.anyio


class Peak:
    """Counts the bodies running at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.ran: list[str] = []

    def body(self, label: str, seconds: float) -> str:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.ran.append(label)
        time.sleep(seconds)
        with self.lock:
            self.now -= 1
        return label


class Done:
    """Collects the outcomes handed to ``done``."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}
        self.event = threading.Event()
        self.expected = 0

    def for_(self, label: str) -> Callable[[Outcome], None]:
        self.expected += 1

        def done(outcome: Outcome) -> None:
            self.outcomes[label] = outcome
            if len(self.outcomes) == self.expected:
                self.event.set()

        return done


async def run_executor(executor: Executor, body: Callable[[], Any]) -> Any:
    async with anyio.create_task_group() as tg:
        await tg.start(executor.run)
        try:
            return await body()
        finally:
            tg.cancel_scope.cancel()


async def test_every_kind_of_run_shares_the_slots() -> None:
    executor = Executor(2, name="n")
    peak = Peak()
    done = Done()

    async def body() -> None:
        for i in range(3):
            executor.submit(Job(("c", i), "f"), peak.body, f"call{i}", 0.1, done=done.for_(f"c{i}"))
        here = threading.Thread(
            target=lambda: executor.run_here(Job(("c", 9), "f"), peak.body, "here", 0.1)
        )
        here.start()
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(executor.run_async, Job(None, "sched"), peak.body, f"async{i}", 0.1)
        await anyio.to_thread.run_sync(done.event.wait, 5)
        await anyio.to_thread.run_sync(here.join, 5)

    await run_executor(executor, body)
    assert sorted(peak.ran) == sorted(
        [f"call{i}" for i in range(3)] + ["here"] + [f"async{i}" for i in range(3)]
    )
    assert peak.peak == 2


async def test_queued_run_that_is_cancelled_never_starts() -> None:
    executor = Executor(1, name="n")
    peak = Peak()
    done = Done()

    async def body() -> None:
        executor.submit(Job(("c", 1), "f"), peak.body, "first", 0.2, done=done.for_("first"))
        executor.submit(Job(("c", 2), "f"), peak.body, "second", 0, done=done.for_("second"))
        assert executor.load == 2
        assert executor.cancel(("c", 2))
        await anyio.to_thread.run_sync(done.event.wait, 5)

    await run_executor(executor, body)
    assert peak.ran == ["first"]
    assert done.outcomes["first"].status == "ok"
    assert done.outcomes["second"].status == "cancelled"
    assert executor.load == 0


async def test_cancelled_while_running_drops_the_result(caplog: pytest.LogCaptureFixture) -> None:
    executor = Executor(1, name="n")
    peak = Peak()
    done = Done()
    caplog.set_level(logging.DEBUG, logger="daffi.node")

    async def body() -> None:
        executor.submit(Job(("c", 1), "f"), peak.body, "first", 0.2, done=done.for_("first"))
        await anyio.sleep(0.05)
        assert executor.running == 1
        assert executor.cancel(("c", 1))
        await anyio.to_thread.run_sync(done.event.wait, 5)

    await run_executor(executor, body)
    assert peak.ran == ["first"]  # a running def cannot be interrupted...
    assert done.outcomes["first"].status == "cancelled"  # ...but its result does not count
    assert not done.outcomes["first"].counts
    dropped = [r for r in caplog.records if "result dropped" in r.getMessage()]
    assert len(dropped) == 1
    assert dropped[0].levelno == logging.DEBUG


async def test_deadline_counts_from_arrival_queue_time_included() -> None:
    executor = Executor(1, name="n")
    peak = Peak()
    done = Done()

    async def body() -> None:
        executor.submit(Job(("c", 1), "f"), peak.body, "slow", 0.3, done=done.for_("slow"))
        # Arrives now with 0.1 s to go: by the time the slot frees, its deadline passed.
        executor.submit(Job(("c", 2), "f", 0.1), peak.body, "queued", 0, done=done.for_("queued"))
        # Starts at once but ends past its deadline: the result is dropped.
        executor.submit(Job(("c", 3), "g", 0.05), peak.body, "late", 0.1, done=done.for_("late"))
        await anyio.to_thread.run_sync(done.event.wait, 5)

    executor.workers = 1
    await run_executor(executor, body)
    assert "queued" not in peak.ran
    assert done.outcomes["queued"].status == "late"
    assert done.outcomes["slow"].status == "ok"
    # "late" waited for the slot too (0.3 s) with 0.05 s to go: it never started either.
    assert done.outcomes["late"].status == "late"


async def test_result_after_the_deadline_is_dropped() -> None:
    executor = Executor(1, name="n")
    peak = Peak()

    async def body() -> Outcome:
        return await anyio.to_thread.run_sync(
            lambda: executor.run_here(Job(("c", 1), "f", 0.05), peak.body, "late", 0.15)
        )

    outcome = await run_executor(executor, body)
    assert peak.ran == ["late"]
    assert outcome.status == "late"
    assert outcome.value == "late"
    assert not outcome.counts


async def test_a_thread_that_cannot_wait_is_told_busy() -> None:
    executor = Executor(1, name="n")
    peak = Peak()
    done = Done()

    async def body() -> Outcome:
        executor.submit(Job(("c", 1), "f"), peak.body, "first", 0.2, done=done.for_("first"))
        outcome = await anyio.to_thread.run_sync(
            lambda: executor.run_here(Job(("c", 2), "f"), peak.body, "x", 0, wait=False)
        )
        await anyio.to_thread.run_sync(done.event.wait, 5)
        return outcome

    outcome = await run_executor(executor, body)
    assert outcome.status == "busy"
    assert peak.ran == ["first"]
    assert executor.load == 0


async def test_a_chain_runs_on_the_slot_it_holds() -> None:
    """A run whose chain holds a slot (its thread waits for this run) does not queue."""
    executor = Executor(1, name="n")
    seen: list[str] = []

    def inner() -> str:
        seen.append(current_chain())
        return "inner"

    def outer() -> str:
        chain = current_chain()
        assert chain
        # What a nested call carrying the chain does on arrival, while the only slot is ours.
        outcome = executor.run_here(Job(("c", 2), "inner", 1.0, chain), inner)
        assert outcome.status == "ok", outcome.status
        return chain

    async def body() -> Outcome:
        return await anyio.to_thread.run_sync(lambda: executor.run_here(Job(("c", 1), "o"), outer))

    outcome = await run_executor(executor, body)
    assert outcome.status == "ok"
    assert seen == [outcome.value]
    assert current_chain() == ""  # outside a callback, no chain


async def test_other_chains_still_wait() -> None:
    executor = Executor(1, name="n")
    release = threading.Event()

    def holder() -> None:
        current_chain()  # the chain is named: it holds the slot
        release.wait(5)

    async def body() -> Outcome:
        executor.submit(Job(("c", 1), "h"), holder, done=lambda o: None)
        await anyio.sleep(0.05)
        outcome = await anyio.to_thread.run_sync(
            lambda: executor.run_here(Job(("c", 2), "x", 0.1, "other/1"), lambda: None)
        )
        release.set()
        return outcome

    assert (await run_executor(executor, body)).status == "late"


async def test_close_waits_for_running_callbacks_within_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    executor = Executor(2, name="n", grace=0.2)
    finished = threading.Event()
    release = threading.Event()

    def quick() -> None:
        time.sleep(0.05)
        finished.set()

    def stuck() -> None:
        release.wait(5)

    async with anyio.create_task_group() as tg:
        await tg.start(executor.run)
        executor.submit(Job(("c", 1), "quick"), quick, done=lambda o: None)
        executor.submit(Job(("c", 2), "stuck"), stuck, done=lambda o: None)
        await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert finished.is_set()  # waited for it
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'stuck' for 'c'" in w for w in warnings), warnings
    release.set()
    with pytest.raises(RuntimeError, match="stopping"):
        executor.submit(Job(("c", 3), "late"), quick, done=lambda o: None)


async def test_close_joins_threads_it_started() -> None:
    executor = Executor(2, name="joined", grace=2)
    stop = threading.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(executor.run)
        executor.submit(Job(None, "f"), time.sleep, 0.01, done=lambda o: None)
        assert executor.spawn(lambda: stop.wait(5), "daffi-joined-extra")
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
        stop.set()
    assert not [t for t in threading.enumerate() if t.name.startswith("daffi-joined")]
    assert not executor.spawn(lambda: None, "daffi-joined-late")


async def test_cancelling_an_async_wait_cancels_the_job() -> None:
    executor = Executor(1, name="n")
    peak = Peak()
    done = Done()

    async def body() -> None:
        executor.submit(Job(("c", 1), "f"), peak.body, "first", 0.2, done=done.for_("first"))
        with anyio.move_on_after(0.05):
            await executor.run_async(Job(None, "g"), peak.body, "never", 0)
        await anyio.to_thread.run_sync(done.event.wait, 5)
        await anyio.sleep(0.05)

    await run_executor(executor, body)
    assert peak.ran == ["first"]
