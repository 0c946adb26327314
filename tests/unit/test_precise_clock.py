"""The scheduler's clock: every wait of a scheduler in one heap, woken by one alarm task (on
a timerfd where there is one, else on the loop's timer). Waits never end before their time,
end in the order of their times, can be cancelled, and finish on the loop's timer when the
alarm task is gone. Only order and "not early" are asserted: how late is a benchmark's job
(benchmarks/bench_scheduling.py)."""

from __future__ import annotations

import itertools
import time

import anyio
import pytest

from daffi.scheduling import _precise
from daffi.scheduling._precise import PreciseClock

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["timerfd", "loop timer"])
def clock(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> PreciseClock:
    if request.param == "loop timer":
        monkeypatch.setattr(_precise, "open_timerfd", lambda: None)
    elif _precise.open_timerfd() is None:
        pytest.skip("this system has no timerfd")
    return PreciseClock()


async def test_waits_end_at_their_time_in_order(clock: PreciseClock) -> None:
    ended: list[tuple[float, float]] = []

    async def wait(wall: float) -> None:
        await clock.sleep_until(wall)
        ended.append((wall, time.time()))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(clock.run)
            now = time.time()
            # Added out of order, some sharing a time: each ends at or after its own time.
            walls = [now + d for d in (0.09, 0.03, 0.06, 0.03, 0.001, 0.12, 0.0605)]
            async with anyio.create_task_group() as waits:
                for wall in walls:
                    waits.start_soon(wait, wall)
            tg.cancel_scope.cancel()
    assert all(at >= wall for wall, at in ended)
    # In the order of their times, but for waits released by the same wake-up (0.5 ms
    # apart or less), which the loop may run in any order (trio shuffles them on purpose).
    for (wall, _), (later, _) in itertools.pairwise(ended):
        assert later > wall - 0.001
    assert len(ended) == len(walls)


async def test_a_time_in_the_past_returns_at_once(clock: PreciseClock) -> None:
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(clock.run)
            await clock.sleep_until(time.time() - 10)
            tg.cancel_scope.cancel()


async def test_cancelled_waits_leave_the_heap(clock: PreciseClock) -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(clock.run)
            far = time.time() + 3600
            async with anyio.create_task_group() as waits:
                for _ in range(3000):
                    waits.start_soon(clock.sleep_until, far)
                await anyio.sleep(0.05)
                waits.cancel_scope.cancel()
            assert len(clock._alarms) < 3000  # dropped lazily, but dropped
            await clock.sleep_until(time.time() + 0.01)  # the clock still works
            tg.cancel_scope.cancel()


async def test_waits_finish_on_the_loop_timer_when_the_alarm_task_ends(
    clock: PreciseClock,
) -> None:
    ended: list[float] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as outer, anyio.create_task_group() as alarm:
            await alarm.start(clock.run)
            wall = time.time() + 0.2

            async def wait() -> None:
                await clock.sleep_until(wall)
                ended.append(time.time())

            outer.start_soon(wait)
            await anyio.sleep(0.05)
            alarm.cancel_scope.cancel()  # the alarm task goes; the wait goes on
    assert len(ended) == 1
    assert ended[0] >= wall


async def test_without_the_alarm_task_waits_use_the_loop_timer() -> None:
    clock = PreciseClock()
    wall = time.time() + 0.02
    with anyio.fail_after(5):
        await clock.sleep_until(wall)
    assert time.time() >= wall
