"""The processes of the soak run (``benchmarks/soak.py``), one role each.

    python -m benchmarks.soak_node controller --path DIR --backend B
    python -m benchmarks.soak_node server --path DIR --name NAME --backend B
    python -m benchmarks.soak_node clients --path DIR --name NAME --count N --seconds S
        --backend B
    python -m benchmarks.soak_node churn --path DIR --name NAME --seconds S --backend B

The controller and servers print ``READY {}`` once up and stop when their stdin closes.
``clients`` runs ``N`` nodes in one event loop, each calling without a pause for ``S``
seconds: mostly ``echo`` (FG), with a background call and a streamed download now and then;
``churn`` starts ten nodes every two seconds, makes a few calls from each and stops them.
Both print one JSON line at the end: calls that succeeded, failed, and the failures by
type (with the first message of each).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio

from benchmarks._common import announce_ready, wait_for_stdin_eof
from daffi import BG, Global
from daffi.decorators import alias, fetcher
from daffi.registry import CallbackRegistry

_CALL_TIMEOUT = 10.0


@alias("echo")
@fetcher
async def echo(x: Any) -> Any:
    pass


@alias("echo")
@fetcher(BG(timeout=_CALL_TIMEOUT))
async def echo_bg(x: Any) -> Any:
    pass


@alias("count")
@fetcher
async def count(n: int) -> Any:
    pass


class Tally:
    """Calls that succeeded and failed, with the first message of each kind of failure."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def fail(self, exc: BaseException) -> None:
        kind = type(exc).__name__
        self.failed[kind] += 1
        self.examples.setdefault(kind, str(exc)[:300])

    def report(self, **extra: Any) -> None:
        print(
            json.dumps(
                {
                    "ok": self.ok,
                    "failed": sum(self.failed.values()),
                    "by_type": dict(self.failed),
                    "examples": self.examples,
                    **extra,
                }
            ),
            flush=True,
        )


async def one_call(g: Global, i: int, tally: Tally) -> None:
    try:
        with g.as_current():
            with anyio.fail_after(_CALL_TIMEOUT):
                if i % 50 == 7:
                    result = await echo_bg(i)
                    value = await result.get_async()
                elif i % 200 == 13:
                    value = len([x async for x in await count(100)]) + i - 100
                else:
                    value = await echo(i)
        if value != i:
            raise AssertionError(f"echo({i}) returned {value!r}")
        tally.ok += 1
    except Exception as exc:
        tally.fail(exc)


def options(path: str, backend: str) -> dict[str, Any]:
    return {"unix_sock_path": path, "backend": backend, "connect_timeout": 60}


async def run_clients(path: str, name: str, count_: int, seconds: float, backend: str) -> None:
    tally = Tally()
    deadline = time.monotonic() + seconds

    async def loop(g: Global) -> None:
        i = 0
        while time.monotonic() < deadline:
            await one_call(g, i, tally)
            i += 1

    nodes = [
        Global(f"{name}-{k}", registry=CallbackRegistry(), **options(path, backend))
        for k in range(count_)
    ]
    async with contextlib.AsyncExitStack() as stack:
        for g in nodes:
            await stack.enter_async_context(g)
        await nodes[0].wait_function_async("echo", timeout=60)
        await nodes[0].wait_function_async("count", timeout=60)
        async with anyio.create_task_group() as tg:
            for g in nodes:
                tg.start_soon(loop, g)
    tally.report(nodes=count_)


async def run_churn(path: str, name: str, seconds: float, backend: str) -> None:
    tally = Tally()
    deadline = time.monotonic() + seconds
    round_ = 0
    while time.monotonic() < deadline:
        nodes = [
            Global(f"{name}-{round_}-{k}", registry=CallbackRegistry(), **options(path, backend))
            for k in range(10)
        ]
        async with contextlib.AsyncExitStack() as stack:
            for g in nodes:
                await stack.enter_async_context(g)
            await nodes[0].wait_function_async("echo", timeout=60)
            async with anyio.create_task_group() as tg:
                for g in nodes:
                    for i in range(5):
                        tg.start_soon(one_call, g, i, tally)
        round_ += 1
        await anyio.sleep(2)
    tally.report(rounds=round_)


def serve(path: str, name: str, backend: str, *, controller: bool) -> None:
    registry = CallbackRegistry()
    if not controller:
        registry.add(lambda x: x, "echo")

        async def count_(n: int) -> AsyncIterator[int]:
            for i in range(n):
                yield i

        registry.add(count_, "count")
    g = Global(
        name,
        init_controller=controller,
        init_node=not controller,
        registry=registry,
        **options(path, backend),
    )
    with g:
        announce_ready()
        wait_for_stdin_eof()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak_node")
    parser.add_argument("role", choices=["controller", "server", "clients", "churn"])
    parser.add_argument("--path", required=True)
    parser.add_argument("--name", default="soak")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.role in ("controller", "server"):
        serve(args.path, args.name, args.backend, controller=args.role == "controller")
    elif args.role == "clients":
        anyio.run(
            run_clients,
            args.path,
            args.name,
            args.count,
            args.seconds,
            args.backend,
            backend=args.backend,
        )
    else:
        anyio.run(run_churn, args.path, args.name, args.seconds, args.backend, backend=args.backend)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
