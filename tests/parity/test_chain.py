"""Behaviour 5 over every path: a chain of ``def`` callbacks calling back and forth between
two nodes with ``workers=2`` each, deeper than the workers (depth 6): it completes, or fails
fast (a couple of seconds) with a clear daffi error; it never hangs.

Node A is the cell's callee (``ping``), node B the cell's caller (``pong``); the test starts
the chain through B, as a sync caller (a plain thread) or an async caller. Each callback
calls the next hop through its own Global (``as_current``: several Globals share this
process).
"""

from __future__ import annotations

from typing import Any

import pytest

from daffi import Global
from daffi.decorators import alias, fetcher
from daffi.exceptions import DaffiError

from ._net import CALLER_KINDS, TOPOLOGIES, Wire, call_async, call_sync, network

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

DEPTH = 6
#: how long the whole chain may take, answer or error, before it counts as a hang
BOUND = 2.0


@fetcher
def ping(depth: int) -> str: ...


@fetcher
def pong(depth: int) -> str: ...


@alias("ping")
@fetcher
async def ping_async(depth: int) -> str: ...


@pytest.mark.parametrize("caller_kind", CALLER_KINDS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_deep_chain_completes_or_fails_fast(
    wire: Wire, anyio_backend: str, topology: str, caller_kind: str
) -> None:
    nodes: dict[str, Global] = {}
    hops: list[tuple[str, int]] = []

    def ping_cb(depth: int) -> str:  # on A
        hops.append(("A", depth))
        if depth == 0:
            return "bottom"
        with nodes["A"].as_current():
            return pong(depth - 1)

    def pong_cb(depth: int) -> str:  # on B
        hops.append(("B", depth))
        if depth == 0:
            return "bottom"
        with nodes["B"].as_current():
            return ping(depth - 1)

    async with network(
        wire,
        topology,
        anyio_backend,
        caller_kind,
        {"ping": ping_cb},
        workers=2,
        caller_callbacks={"pong": pong_cb},
    ) as net:
        nodes["A"], nodes["B"] = net.callee, net.caller
        await net.callee.wait_function_async("pong", timeout=5)

        async def chain(depth: int) -> Any:
            try:
                if caller_kind == "sync":
                    return await call_sync(net.caller, lambda: ping(depth), BOUND)
                return await call_async(net.caller, lambda: ping_async(depth), BOUND)
            except AssertionError as exc:
                raise AssertionError(f"depth {depth}: {exc}; hops that started: {hops}") from None

        # A chain shallower than the workers works (the set-up is sound)...
        short = await chain(1)
        assert (short.error, short.value) == (None, "bottom"), (short.error, short.value)
        hops.clear()
        # ...and one deeper than them must not hang.
        outcome = await chain(DEPTH)
        if outcome.error is None:
            assert outcome.value == "bottom", f"chain returned {outcome.value!r}"
            assert len(hops) == DEPTH + 1
        else:
            assert isinstance(outcome.error, DaffiError), (
                f"the chain failed with a non-daffi error after {outcome.elapsed:.2f} s: "
                f"{outcome.error!r}"
            )
            assert str(outcome.error), "the chain failed without a message"
