"""Nested sync calls deeper than ``workers``: A -> B -> A -> ... completes.

Each ``def`` callback makes a blocking call from inside its executor slot. The call carries
the chain's id, so a node the chain already holds a slot on runs it on that slot instead of
waiting for one the chain itself keeps busy (see ``daffi._executor``).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from daffi import Global
from daffi.decorators import fetcher

from ._helpers import Outcome, registry_with

WORKERS = 2
DEPTH = 9  # calls in the chain: well past 2 * WORKERS

_globals: dict[str, Global] = {}
_peak_lock = threading.Lock()
_running: dict[str, int] = {"a": 0, "b": 0}


@fetcher
def chain_a(n: int) -> list[str]:
    """Runs on node a."""
    raise NotImplementedError


@fetcher
def chain_b(n: int) -> list[str]:
    """Runs on node b."""
    raise NotImplementedError


def _hop(here: str, there: Any, n: int) -> list[str]:
    with _peak_lock:
        _running[here] += 1
    try:
        if n == 0:
            return [here]
        with _globals[here].as_current():
            return [here, *there(n - 1)]
    finally:
        with _peak_lock:
            _running[here] -= 1


def hop_a(n: int) -> list[str]:
    return _hop("a", chain_b, n)


def hop_b(n: int) -> list[str]:
    return _hop("b", chain_a, n)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("controller", ["in_a", "third"])
@pytest.mark.timeout(60)
def test_chain_deeper_than_workers_completes(sock_dir: str, backend: str, controller: str) -> None:
    started: list[Global] = []
    common: dict[str, Any] = {
        "unix_sock_path": sock_dir,
        "backend": backend,
        "connect_timeout": 5,
        "workers": WORKERS,
    }
    try:
        if controller == "third":
            started.append(Global("ctrl", init_controller=True, init_node=False, **common))
        a = Global(
            "a",
            init_controller=controller == "in_a",
            registry=registry_with({"chain_a": hop_a}),
            **common,
        )
        started.append(a)
        b = Global("b", registry=registry_with({"chain_b": hop_b}), **common)
        started.append(b)
        client = Global("client", **common)
        started.append(client)
        _globals.update(a=a, b=b)
        a.wait_function("chain_b", timeout=5)
        b.wait_function("chain_a", timeout=5)
        client.wait_function("chain_a", timeout=5)

        def call() -> list[str]:
            with client.as_current():
                return chain_a(DEPTH)

        outcome = Outcome(call)
        assert outcome.done.wait(30), "the chain hung"
        assert outcome.error is None, repr(outcome.error)
        assert outcome.value == ["a", "b"] * (DEPTH // 2) + ["a", "b"][: DEPTH % 2 + 1]
        assert _running == {"a": 0, "b": 0}
        # The chain left no slot taken: ordinary calls still get both workers.
        outcomes = [Outcome(call) for _ in range(2)]
        for o in outcomes:
            assert o.done.wait(30)
            assert o.error is None, repr(o.error)
    finally:
        for g in reversed(started):
            g.stop()
        _globals.clear()
