"""Lifecycle hooks: on_init, on_node_connect and on_node_disconnect, sync and async."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from daffi import Global
from daffi.registry import CallbackRegistry

pytestmark = pytest.mark.anyio


class Recorder:
    """Collects ``(hook_owner, process_name)`` calls from sync (thread) or async hooks.

    ``wait_for(names)`` returns once every name has been recorded, without polling: each call
    sets a threading.Event that a worker thread waits on.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Global, str]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.threads: set[int] = set()

    def record(self, g: Global, name: str) -> None:
        with self._changed:
            self.calls.append((g, name))
            self.threads.add(threading.get_ident())
            self._changed.notify_all()

    def sync_hook(self, g: Global, name: str) -> None:
        self.record(g, name)

    async def async_hook(self, g: Global, name: str) -> None:
        await anyio.lowlevel.checkpoint()
        self.record(g, name)

    def hook(self, kind: str) -> Callable[..., Any]:
        return self.sync_hook if kind == "sync" else self.async_hook

    def names(self) -> set[str]:
        with self._lock:
            return {name for _, name in self.calls}

    async def wait_for(self, names: set[str], timeout: float = 5) -> None:
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(
                    lambda: names <= {name for _, name in self.calls}, timeout
                )

        assert await anyio.to_thread.run_sync(wait), (
            f"expected hooks for {sorted(names)}, got {self.calls}"
        )


def _node(address: str, name: str, **hooks: Any) -> Global:
    return Global(name, address=address, registry=CallbackRegistry(), **hooks)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_init_called_once_with_global_and_name(
    address: str, controller: Global, kind: str
) -> None:
    rec = Recorder()
    with anyio.fail_after(10):
        async with _node(address, "a", on_init=rec.hook(kind)) as a:
            await rec.wait_for({"a"})
            # more traffic does not call it again
            async with _node(address, "b"):
                await a.wait_process_async("b", timeout=5)
        assert rec.calls == [(a, "a")]


async def test_on_init_of_a_controller(address: str, anyio_backend: str) -> None:
    rec = Recorder()
    with anyio.fail_after(10):
        async with Global(
            "ctrl", init_controller=True, init_node=False, address=address, on_init=rec.sync_hook
        ) as ctrl:
            await rec.wait_for({"ctrl"})
    assert rec.calls == [(ctrl, "ctrl")]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_node_connect_fires_everywhere_for_every_node(
    address: str, anyio_backend: str, kind: str
) -> None:
    recs = {name: Recorder() for name in ("ctrl", "a", "b", "c")}
    # each process hears about itself and every node that joins after it (the ones already
    # there are in its directory from the start)
    expected = {"ctrl": {"a", "b", "c"}, "a": {"a", "b", "c"}, "b": {"b", "c"}, "c": {"c"}}
    with anyio.fail_after(10):
        async with (
            Global(
                "ctrl",
                init_controller=True,
                init_node=False,
                address=address,
                on_node_connect=recs["ctrl"].hook(kind),
            ) as ctrl,
            _node(address, "a", on_node_connect=recs["a"].hook(kind)) as a,
            _node(address, "b", on_node_connect=recs["b"].hook(kind)) as b,
            _node(address, "c", on_node_connect=recs["c"].hook(kind)) as c,
        ):
            for owner_name, rec in recs.items():
                await rec.wait_for(expected[owner_name])
            owners = {"ctrl": ctrl, "a": a, "b": b, "c": c}
            for owner_name, rec in recs.items():
                # each hook gets its own Global, and each node once (no reconnects here)
                assert {g for g, _ in rec.calls} == {owners[owner_name]}
                names = [name for _, name in rec.calls]
                assert len(names) == len(set(names)), (owner_name, names)
    if kind == "sync":
        # sync hooks run in worker threads, never on the event loop's thread
        assert threading.get_ident() not in set().union(*(r.threads for r in recs.values()))


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_node_disconnect_fires_when_a_node_leaves(
    address: str, anyio_backend: str, kind: str
) -> None:
    ctrl_rec, b_rec = Recorder(), Recorder()
    with anyio.fail_after(10):
        async with (
            Global(
                "ctrl",
                init_controller=True,
                init_node=False,
                address=address,
                on_node_disconnect=ctrl_rec.hook(kind),
            ),
            _node(address, "b", on_node_disconnect=b_rec.hook(kind)) as b,
        ):
            async with _node(address, "a"):
                await b.wait_process_async("a", timeout=5)
                assert b_rec.calls == []
                assert ctrl_rec.calls == []
            t0 = anyio.current_time()
            await b_rec.wait_for({"a"})
            await ctrl_rec.wait_for({"a"})
            assert anyio.current_time() - t0 < 1  # promptly, no reconnect grace period
            assert [name for _, name in b_rec.calls] == ["a"]
            assert [name for _, name in ctrl_rec.calls] == ["a"]
            assert "a" not in b.registered_callbacks


async def test_a_failing_hook_does_not_break_the_node(address: str, controller: Global) -> None:
    rec = Recorder()

    def broken(g: Global, name: str) -> None:
        rec.record(g, name)
        raise RuntimeError("hook bug")

    with anyio.fail_after(10):
        async with _node(address, "a", on_node_connect=broken) as a:
            await rec.wait_for({"a"})
            async with _node(address, "b"):
                await rec.wait_for({"b"})
                await a.wait_process_async("b", timeout=5)
