"""daffi's clients for W2, W3, W4 and the streams (the servers are in ``daffi_workers.py``).

    python -m benchmarks.daffi_clients concurrent --path DIR --callback echo|aecho
        --calls N --warmup W --concurrency C
    python -m benchmarks.daffi_clients payload --path DIR --payload-bytes B --calls N --warmup W
    python -m benchmarks.daffi_clients broadcast --path DIR --nodes A,B,C --mode broadcast|fg
        --calls N --warmup W
    python -m benchmarks.daffi_clients download --path DIR --items N --warmup W
    python -m benchmarks.daffi_clients upload --path DIR --callback sink|asink
        --items N --warmup W

Each prints one ``RoundResult`` JSON line (every option also takes ``--deadline S``: a client
still running after it prints every thread's traceback and exits):

* ``concurrent`` (W2): ``async with Global(...)`` on asyncio; C tasks each await an
  ``async def`` fetcher of ``--callback`` in a loop, N calls in all.
* ``payload`` (W3): a sync program; a ``def`` fetcher ``echo`` with the same B bytes each call.
* ``broadcast`` (W4): a sync program; ``echo.call(i, exec_modifier=BROADCAST())`` must answer
  ``{node: i}`` for every node; ``--mode fg`` times plain FG calls (round-robin) instead.
* ``download`` (streams a): ``async for x in await count_up(N)`` on asyncio; items/s only.
* ``upload`` (streams b): a sync program; a ``def`` generator fetcher yields ``0..N-1``, one
  call of the remote ``--callback`` each; the server then reports what it got. items/s only.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import time
from collections.abc import Iterator
from typing import Any

import anyio

from benchmarks._common import RoundResult, print_round, time_calls, where
from benchmarks.floor import payload_bytes
from benchmarks.floor_async import time_concurrent_calls
from daffi import BROADCAST, Global, fetcher

_CONNECT_TIMEOUT = 30.0


def _name(role: str) -> str:
    return f"bench-{role}-{os.getpid()}"


# ---------------------------------------------------------------- W2


async def run_concurrent(args: argparse.Namespace) -> RoundResult:
    async def proxy(x: Any) -> Any:
        pass

    proxy.__name__ = proxy.__qualname__ = args.callback  # the callback it calls
    remote = fetcher(proxy)
    async with Global(process_name=_name("concurrent"), **where(args.path)) as g:
        await g.wait_function_async(args.callback, timeout=_CONNECT_TIMEOUT)
        await time_concurrent_calls(remote, args.warmup, args.concurrency)
        return await time_concurrent_calls(remote, args.calls, args.concurrency)


# ---------------------------------------------------------------- W3


def run_payload(args: argparse.Namespace) -> RoundResult:
    @fetcher
    def echo(x: Any) -> Any:
        pass

    payload = payload_bytes(args.payload_bytes)
    with Global(process_name=_name("payload"), **where(args.path)) as g:
        g.wait_function("echo", timeout=_CONNECT_TIMEOUT)

        def call(i: int) -> None:
            if echo(payload) != payload:
                raise AssertionError(f"daffi echo of {len(payload)} bytes came back wrong")

        time_calls(call, args.warmup)
        return time_calls(call, args.calls)


# ---------------------------------------------------------------- W4


def run_broadcast(args: argparse.Namespace) -> RoundResult:
    @fetcher
    def echo(x: Any) -> Any:
        pass

    nodes = sorted(args.nodes.split(","))
    modifier = BROADCAST()
    with Global(process_name=_name("broadcast"), **where(args.path)) as g:
        _wait_offered(g, "echo", nodes)

        def call_all(i: int) -> None:
            answers = echo.call(i, exec_modifier=modifier)
            if answers != dict.fromkeys(nodes, i):
                raise AssertionError(f"broadcast of {i} answered {answers!r}")

        def call_one(i: int) -> None:
            if echo(i) != i:
                raise AssertionError(f"daffi echo of {i} came back wrong")

        call = call_all if args.mode == "broadcast" else call_one
        time_calls(call, args.warmup)
        return time_calls(call, args.calls)


def _wait_offered(g: Global, name: str, nodes: list[str]) -> None:
    """Wait until every node in ``nodes`` offers ``name`` (a broadcast must reach all)."""
    for node in nodes:
        g.wait_process(node, timeout=_CONNECT_TIMEOUT)
    deadline = time.monotonic() + _CONNECT_TIMEOUT
    while not all(name in g.registered_callbacks.get(node, {}) for node in nodes):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every node of {nodes} offers {name!r}")
        time.sleep(0.01)


# ---------------------------------------------------------------- streams


async def run_download(args: argparse.Namespace) -> RoundResult:
    @fetcher
    async def count_up(n: int) -> Any:
        pass

    async def consume(n: int) -> None:
        expected = 0
        async for value in await count_up(n):
            if value != expected:
                raise AssertionError(f"stream item {expected} came back as {value!r}")
            expected += 1
        if expected != n:
            raise AssertionError(f"the stream ended after {expected} of {n} items")

    async with Global(process_name=_name("download"), **where(args.path)) as g:
        await g.wait_function_async("count_up", timeout=_CONNECT_TIMEOUT)
        await consume(args.warmup)
        start = time.perf_counter_ns()
        await consume(args.items)
        return RoundResult(args.items, time.perf_counter_ns() - start, 0, 0)


def run_upload(args: argparse.Namespace) -> RoundResult:
    def items(n: int) -> Iterator[int]:
        yield from range(n)

    items.__name__ = items.__qualname__ = args.callback  # the callback each item calls
    upload = fetcher(items)

    @fetcher
    def sink_report() -> Any:
        pass

    def send(n: int) -> None:
        upload(n)
        count, in_order = sink_report()
        if count != n or not in_order:
            raise AssertionError(f"the callback got {count} of {n} items (in order: {in_order})")

    with Global(process_name=_name("upload"), **where(args.path)) as g:
        g.wait_function(args.callback, timeout=_CONNECT_TIMEOUT)
        send(args.warmup)
        start = time.perf_counter_ns()
        upload(args.items)
        elapsed = time.perf_counter_ns() - start
        count, in_order = sink_report()  # checked after the clock stopped
        if count != args.items or not in_order:
            raise AssertionError(f"the callback got {count} of {args.items} (order: {in_order})")
        return RoundResult(args.items, elapsed, 0, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "role", choices=("concurrent", "payload", "broadcast", "download", "upload")
    )
    parser.add_argument(
        "--path",
        required=True,
        help="directory of the Unix socket, or a daffi address (nats://...)",
    )
    parser.add_argument("--callback", default="echo")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--payload-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--nodes", default="")
    parser.add_argument("--mode", choices=("broadcast", "fg"), default="broadcast")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--deadline", type=float, default=300.0)
    args = parser.parse_args()
    faulthandler.dump_traceback_later(args.deadline, exit=True)
    if args.role == "concurrent":
        print_round(anyio.run(run_concurrent, args, backend="asyncio"))
    elif args.role == "payload":
        print_round(run_payload(args))
    elif args.role == "broadcast":
        print_round(run_broadcast(args))
    elif args.role == "download":
        print_round(anyio.run(run_download, args, backend="asyncio"))
    else:
        print_round(run_upload(args))


if __name__ == "__main__":
    main()
