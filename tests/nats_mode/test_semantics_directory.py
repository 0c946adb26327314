"""NATS mode means what controller mode means: wait_function / wait_process, the directory of
live nodes (``Global.nodes``, ``registered_callbacks``), the hooks, a node that dies without a
goodbye, and PERIOD schedules on the executing node (compare tests/integration/
test_directory.py, test_hooks.py, test_errors.py and test_period.py).

In NATS mode there is no controller: each node keeps the directory itself from the presence
subject (a ``NodeUp`` every heartbeat interval; a node silent for three intervals is gone).
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from daffi import FG, PERIOD, Global, RemoteCallError, ScheduledTask
from daffi._protocol import CallbackInfo
from daffi.decorators import fetcher
from daffi.exceptions import InitializationError, RemoteStoppedUnexpectedly, UnableToFindCandidate
from daffi.exceptions import TimeoutError as DaffiTimeoutError
from daffi.registry import CallbackRegistry

from ._servers import NatsServer

pytestmark = pytest.mark.anyio

#: heartbeats of the tests that wait for a silent node to be dropped
HEARTBEAT = 0.2
INTERVAL = 0.05


@fetcher
async def late(x):
    pass


@fetcher
async def added_later(a, b=1):
    pass


@fetcher
async def sleepy():
    pass


@fetcher
async def tick(n):
    pass


def late_cb(x: Any) -> Any:
    return ["late", x]


def registry_with(callbacks: dict[str, Callable[..., Any]] | None = None) -> CallbackRegistry:
    registry = CallbackRegistry()
    for name, fn in (callbacks or {}).items():
        registry.add(fn, name)
    return registry


def node(
    server: NatsServer,
    name: str,
    callbacks: dict[str, Callable[..., Any]] | None = None,
    **options: Any,
) -> Global:
    return Global(
        name, address=f"nats://{server.url}", registry=registry_with(callbacks), **options
    )


class Recorder:
    """Collects ``(hook_owner, process_name)`` calls of sync (thread) or async hooks, with
    when they came; ``wait_for(names)`` returns once every name was recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[Global, str]] = []
        self.times: dict[str, float] = {}
        self._changed = threading.Condition()

    def record(self, g: Global, name: str) -> None:
        with self._changed:
            self.calls.append((g, name))
            self.times.setdefault(name, time.monotonic())
            self._changed.notify_all()

    def sync_hook(self, g: Global, name: str) -> None:
        self.record(g, name)

    async def async_hook(self, g: Global, name: str) -> None:
        await anyio.lowlevel.checkpoint()
        self.record(g, name)

    def hook(self, kind: str) -> Callable[..., Any]:
        return self.sync_hook if kind == "sync" else self.async_hook

    def names(self) -> list[str]:
        with self._changed:
            return [name for _, name in self.calls]

    async def wait_for(self, names: set[str], timeout: float = 5) -> None:
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(
                    lambda: names <= {name for _, name in self.calls}, timeout
                )

        assert await anyio.to_thread.run_sync(wait), (
            f"expected hooks for {sorted(names)}, got {self.calls}"
        )


# ---------------------------------------------------------------- waiting


async def test_waits_return_when_a_node_joins_later(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    found: dict[str, anyio.Event] = {"function": anyio.Event(), "process": anyio.Event()}
    with anyio.fail_after(15):
        async with node(nats_server, "caller") as caller:
            await caller.wait_process_async("caller", timeout=1)  # itself counts

            async def wait_function() -> None:
                await caller.wait_function_async("late", timeout=5)
                found["function"].set()

            async def wait_process() -> None:
                await caller.wait_process_async("provider", timeout=5)
                found["process"].set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_function)
                tg.start_soon(wait_process)
                await anyio.wait_all_tasks_blocked()
                assert not any(event.is_set() for event in found.values())
                async with node(nats_server, "provider", {"late": late_cb}):
                    await found["function"].wait()
                    await found["process"].wait()
                    with caller.as_current():
                        assert await late(1) == ["late", 1]


@pytest.mark.parametrize("method", ["wait_function_async", "wait_process_async"])
async def test_waits_time_out(nats_server: NatsServer, anyio_backend: str, method: str) -> None:
    with anyio.fail_after(15):
        async with node(nats_server, "caller") as caller:
            wait = getattr(caller, method)
            t0 = anyio.current_time()
            with pytest.raises(DaffiTimeoutError):
                await wait("nobody", timeout=0.2)
            with pytest.raises(TimeoutError):  # the built-in catches it too
                await wait("nobody", timeout=0.1)
            assert anyio.current_time() - t0 < 2


# ---------------------------------------------------------------- the directory


async def test_registered_callbacks_and_nodes(nats_server: NatsServer, anyio_backend: str) -> None:
    def sync_cb(a: int, b: int = 2, *, c: int) -> int:
        return a + b + c

    async def async_cb(x: Any) -> Any:
        return x

    before = datetime.datetime.now(datetime.timezone.utc)
    with anyio.fail_after(15):
        async with (
            node(nats_server, "a", {"sync_cb": sync_cb, "async_cb": async_cb}) as a,
            node(nats_server, "b", {"mine": late_cb}) as b,
        ):
            await b.wait_process_async("a", timeout=5)
            await a.wait_process_async("b", timeout=5)
            seen = b.registered_callbacks
            assert set(seen) == {"a"}  # b itself is left out
            assert set(seen["a"]) == {"sync_cb", "async_cb"}
            info = seen["a"]["sync_cb"]
            assert isinstance(info, CallbackInfo)
            assert [p.name for p in info.params] == ["a", "b", "c"]
            assert [p.has_default for p in info.params] == [False, True, False]
            assert info.is_async is False
            assert seen["a"]["async_cb"].is_async is True
            seen.clear()  # a snapshot the caller may change
            assert set(b.registered_callbacks) == {"a"}

            assert set(b.nodes) == {"a"}
            assert set(a.nodes) == {"b"}
            about_a = b.nodes["a"]
            assert about_a.callbacks == ("async_cb", "sync_cb")
            assert about_a.address.endswith(f"pid {os.getpid()} via {nats_server.url}")
            assert about_a.connected_since is not None
            assert before <= about_a.connected_since <= datetime.datetime.now(datetime.timezone.utc)
            # a learned b from b's announcement, b learned a from a's answer: both say
            # where the other connected and since when
            about_b = a.nodes["b"]
            assert about_b.address.endswith(f"pid {os.getpid()} via {nats_server.url}")
            assert about_b.callbacks == ("mine",)
            assert about_b.connected_since is not None
            assert about_a.connected_since <= about_b.connected_since


async def test_callback_registered_while_running_becomes_callable(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    with anyio.fail_after(15):
        async with (
            node(nats_server, "provider") as provider,
            node(nats_server, "caller") as caller,
        ):
            await caller.wait_process_async("provider", timeout=5)
            since = caller.nodes["provider"].connected_since
            with caller.as_current(), pytest.raises(UnableToFindCandidate):
                await added_later(2)
            provider.registry.add(lambda a, b=1: a * b, "added_later")
            await caller.wait_function_async("added_later", timeout=5)
            assert caller.nodes["provider"].callbacks == ("added_later",)
            assert caller.nodes["provider"].connected_since == since
            with caller.as_current():
                assert await added_later(3, b=4) == 12


async def test_duplicate_process_name_is_refused(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    with anyio.fail_after(15):
        # the holder's periodic announcement is far away: only an answer to the newcomer's
        # own announcement can tell it the name is taken (as the controller refuses it)
        async with node(nats_server, "twin", {"late": late_cb}, heartbeat_interval=30):
            with pytest.raises(InitializationError, match="'twin' is taken"):
                async with node(nats_server, "twin"):
                    pass  # pragma: no cover
            # the first one is untouched
            async with node(nats_server, "caller") as caller:
                await caller.wait_function_async("late", timeout=5)
                with caller.as_current():
                    assert await late(2) == ["late", 2]
        # the name is free again after it left
        async with node(nats_server, "twin") as again:
            await again.wait_process_async("twin", timeout=1)


async def test_a_taken_name_is_refused_when_the_holder_announces_in_time(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    """What works today: a holder that announces itself often (heartbeat 0.02 s, well inside
    the newcomer's join window) gets the newcomer refused with a clear error."""
    with anyio.fail_after(15):
        async with node(nats_server, "twin", heartbeat_interval=0.02):
            with pytest.raises(InitializationError, match=r"process name 'twin' is taken"):
                async with node(nats_server, "twin"):
                    pass  # pragma: no cover


# ---------------------------------------------------------------- hooks


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_hooks_see_nodes_join_and_leave(
    nats_server: NatsServer, anyio_backend: str, kind: str
) -> None:
    connects = {name: Recorder() for name in ("a", "b", "c")}
    leaves = Recorder()
    # each process hears about itself and every node that joins after it
    expected = {"a": {"a", "b", "c"}, "b": {"b", "c"}, "c": {"c"}}
    with anyio.fail_after(15):
        async with (
            node(
                nats_server,
                "a",
                on_node_connect=connects["a"].hook(kind),
                on_node_disconnect=leaves.hook(kind),
            ) as a,
            node(nats_server, "b", on_node_connect=connects["b"].hook(kind)) as b,
        ):
            async with node(nats_server, "c", on_node_connect=connects["c"].hook(kind)) as c:
                for name, rec in connects.items():
                    await rec.wait_for(expected[name])
                owners = {"a": a, "b": b, "c": c}
                for name, rec in connects.items():
                    assert {g for g, _ in rec.calls} == {owners[name]}
                    names = rec.names()
                    assert len(names) == len(set(names)), (name, names)  # each node once
                assert leaves.calls == []
            t0 = time.monotonic()
            await leaves.wait_for({"c"})
            # a clean stop says goodbye: promptly, not after the heartbeats ran out
            assert leaves.times["c"] - t0 < 1
            assert leaves.names() == ["c"]
            assert "c" not in a.nodes
            assert "c" not in a.registered_callbacks


# ---------------------------------------------------------------- a node killed without goodbye

DOOMED = """
import sys

import anyio

from daffi import Global
from daffi.registry import CallbackRegistry


async def sleepy():
    print("entered", flush=True)
    await anyio.sleep(60)


async def main():
    registry = CallbackRegistry()
    registry.add(sleepy, "sleepy")
    async with Global(
        "doomed", address=sys.argv[1], registry=registry, heartbeat_interval=float(sys.argv[2])
    ):
        print("ready", flush=True)
        await anyio.sleep_forever()


anyio.run(main)
"""


@pytest.fixture
def doomed(tmp_path: Path, nats_server: NatsServer) -> Iterator[subprocess.Popen[str]]:
    """A node ``doomed`` (offering ``sleepy``) in a process of its own; killed by PID."""
    script = tmp_path / "doomed.py"
    script.write_text(DOOMED)
    process = subprocess.Popen(
        [sys.executable, str(script), f"nats://{nats_server.url}", str(HEARTBEAT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(5)
        assert process.stdout is not None
        process.stdout.close()


async def read_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return await anyio.to_thread.run_sync(process.stdout.readline, abandon_on_cancel=True)


def connections(server: NatsServer) -> set[str]:
    """The client names connected to ``server`` (its monitoring endpoint)."""
    conns = server.varz("connz").get("connections") or []
    assert isinstance(conns, list)
    return {str(c.get("name", "")) for c in conns}


@pytest.mark.parametrize("noticed_by", ["presence", "no-responders"])
async def test_a_killed_node_leaves_and_fails_its_calls(
    nats_server: NatsServer,
    doomed: subprocess.Popen[str],
    anyio_backend: str,
    noticed_by: str,
) -> None:
    """SIGKILL: no goodbye. ``presence``: the others drop it when it has been silent for 3
    heartbeat intervals, and the call it was running fails with RemoteStoppedUnexpectedly
    (in controller mode, the controller sees the connection close). ``no-responders``: a
    call sent to it once NATS knows it is gone is answered by the server at once, which
    also fails the call in flight and drops the node, without waiting for the heartbeats."""
    left = Recorder()
    outcome: dict[str, Any] = {}
    with anyio.fail_after(20):
        async with node(
            nats_server,
            "watcher",
            heartbeat_interval=HEARTBEAT,
            on_node_disconnect=left.hook("sync"),
        ) as watcher:
            assert await read_line(doomed) == "ready\n"
            await watcher.wait_function_async("sleepy", timeout=5)

            async def call_it() -> None:
                with watcher.as_current():
                    try:
                        await sleepy()
                    except Exception as exc:
                        outcome["error"] = exc
                    outcome["at"] = time.monotonic()

            async with anyio.create_task_group() as tg:
                tg.start_soon(call_it)
                assert await read_line(doomed) == "entered\n"
                os.kill(doomed.pid, signal.SIGKILL)
                killed_at = time.monotonic()
                if noticed_by == "no-responders":
                    while "doomed" in connections(nats_server):  # noqa: ASYNC110 (no event)
                        await anyio.sleep(0.01)
                    t0 = time.monotonic()
                    with watcher.as_current(), pytest.raises(RemoteStoppedUnexpectedly):
                        await sleepy.call(exec_modifier=FG(receiver="doomed"))
                    assert time.monotonic() - t0 < 0.5, "no responders was not quick"
                await left.wait_for({"doomed"})
            assert "doomed" not in watcher.nodes
            with watcher.as_current(), pytest.raises(UnableToFindCandidate):
                await sleepy()
    assert isinstance(outcome.get("error"), RemoteStoppedUnexpectedly), outcome
    assert "doomed" in str(outcome["error"])
    took = max(outcome["at"], left.times["doomed"]) - killed_at
    if noticed_by == "presence":
        # silent for 3 intervals, noticed at the next heartbeat: about 3-4 intervals
        assert took < 6 * HEARTBEAT, f"noticed {took:.2f} s after the kill"
    else:
        assert took < 3 * HEARTBEAT, f"noticed {took:.2f} s after the kill"
    assert left.names() == ["doomed"]


# ---------------------------------------------------------------- PERIOD


class Runs:
    """An async ``tick(n)`` callback recording each run; tests wait for the n-th run."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self._waiters: list[tuple[int, anyio.Event]] = []

    async def tick(self, n: int) -> None:
        self.calls.append(n)
        for count, event in self._waiters:
            if len(self.calls) >= count:
                event.set()

    async def wait_for(self, count: int) -> None:
        if len(self.calls) >= count:
            return
        event = anyio.Event()
        self._waiters.append((count, event))
        await event.wait()


async def quiet_period(seconds: float = 4 * INTERVAL) -> None:
    """Let a cancelled schedule's would-be fire times pass (no event signals the absence of
    a run; see tests/integration/test_period.py)."""
    await anyio.sleep(seconds)


async def test_period_runs_on_the_executor_until_cancelled(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    runs = Runs()
    with anyio.fail_after(15):
        async with (
            node(nats_server, "exec", {"tick": runs.tick}),
            node(nats_server, "req") as req,
        ):
            await req.wait_function_async("tick", timeout=5)
            assert await req.get_scheduled_tasks_async("exec") == []
            with req.as_current():
                task = await tick.call(7, exec_modifier=PERIOD(interval=INTERVAL))
            assert isinstance(task, ScheduledTask)
            assert task.func_name == "tick"
            assert task.receiver == "exec"
            assert task.uuid
            await runs.wait_for(3)
            assert runs.calls[:3] == [7, 7, 7]
            assert await task.cancel_async() is True
            count = len(runs.calls)
            await quiet_period()
            assert len(runs.calls) == count
            assert await task.cancel_async() is False
            assert task.uuid not in {t["uuid"] for t in await req.get_scheduled_tasks_async("exec")}


async def test_period_listing_and_cancel_by_uuid_from_a_third_node(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    runs = Runs()
    with anyio.fail_after(15):
        async with (
            node(nats_server, "exec", {"tick": runs.tick}),
            node(nats_server, "req") as req,
            node(nats_server, "obs") as observer,
        ):
            await req.wait_function_async("tick", timeout=5)
            await observer.wait_process_async("exec", timeout=5)
            with req.as_current():
                task = await tick.call(1, exec_modifier=PERIOD(interval=INTERVAL))
            await runs.wait_for(2)
            (info,) = await observer.get_scheduled_tasks_async("exec")
            assert info["uuid"] == task.uuid
            assert info["func_name"] == "tick"
            assert info["kind"] == "interval"
            assert info["interval"] == INTERVAL
            assert info["runs"] >= 2
            assert info["requester"] == "req"
            with pytest.raises(RemoteCallError, match="no schedule 'no-such'"):
                await observer.cancel_scheduled_task_by_uuid_async("exec", "no-such")
            assert await observer.cancel_scheduled_task_by_uuid_async("exec", task.uuid) is True
            assert await observer.cancel_scheduled_task_by_uuid_async("exec", task.uuid) is False
            assert await observer.get_scheduled_tasks_async("exec") == []
            count = len(runs.calls)
            await quiet_period()
            assert len(runs.calls) == count
            assert await task.cancel_async() is False


async def test_a_schedule_outlives_its_requester(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    """It stays on the executing node: the requester leaving does not end it."""
    runs = Runs()
    with anyio.fail_after(15):
        async with (
            node(nats_server, "exec", {"tick": runs.tick}),
            node(nats_server, "obs") as observer,
        ):
            async with node(nats_server, "req") as req:
                await req.wait_function_async("tick", timeout=5)
                with req.as_current():
                    task = await tick.call(3, exec_modifier=PERIOD(interval=INTERVAL))
                await runs.wait_for(1)
            after_leaving = len(runs.calls)
            await runs.wait_for(after_leaving + 3)
            (info,) = await observer.get_scheduled_tasks_async("exec")
            assert info["uuid"] == task.uuid
            assert info["requester"] == "req"
            assert await observer.cancel_scheduled_task_by_uuid_async("exec", task.uuid) is True


async def test_nodes_with_different_heartbeat_intervals_keep_each_other(
    nats_server: NatsServer, anyio_backend: str
) -> None:
    """A node announces itself every heartbeat_interval and says how often it does: a node
    with a shorter interval waits three of the other's before it takes it as gone."""
    left: list[str] = []

    async def on_leave(g: Global, name: str) -> None:
        left.append(name)

    with anyio.fail_after(15):
        async with (
            node(nats_server, "quick", heartbeat_interval=0.1, on_node_disconnect=on_leave) as q,
            node(nats_server, "slow", heartbeat_interval=0.6),
        ):
            await q.wait_process_async("slow", timeout=5)
            await anyio.sleep(1.5)  # 15 of quick's intervals, 2.5 of slow's
            assert "slow" in q.nodes
            assert left == [], "quick took slow for gone between its announcements"
