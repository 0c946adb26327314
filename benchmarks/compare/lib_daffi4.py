"""Driver for our daffi (this repository, "daffi 4"), run in the ``ours`` virtualenv.

    python -m benchmarks.compare.lib_daffi4 server|controller|worker|client --backend B ...

Same topology as daffi 2: the server is ``Global(init_controller=True)`` offering
``@callback def echo(x)``; the client calls a ``@fetcher``. ``--backend`` is
``Global(backend=...)`` in every process of the run (and the event loop of the W2 client).

* W1, W3: ``def`` fetcher, sequential FG calls (the Global runs in its background thread).
* W2: ``async def`` fetcher inside ``async with Global(...)`` in an ``anyio.run`` loop of the
  same backend, ``--concurrency`` tasks each making calls one after the other.
* W4: controller process (``init_node=False``), three worker processes offering ``echo``,
  and a client calling a ``@fetcher(BROADCAST)``.
* W5 (a daffi 2 style async app): ``async def`` fetcher awaited by ``--concurrency`` tasks in
  ``asyncio.run`` (``trio.run`` for trio), where ``Global(...)`` is constructed inside the
  running loop and never entered: it starts in a background thread at first use, and
  ``await g.stop_async()`` stops it at the end.
* W6: ``@fetcher(BG) def echo``, ``Global`` outside any loop; the main thread keeps
  ``--concurrency`` calls outstanding (their ``AsyncResult``), ``.get()`` on the oldest, then
  the next call.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import anyio

import daffi
from benchmarks.compare import _proto
from daffi import BG, BROADCAST, Global, callback, fetcher
from daffi.__about__ import __version__

LIB = "daffi4"
_WAIT = 30.0
STOP_WAIT = 3.0


def _address(args: argparse.Namespace, connect: dict[str, Any] | None = None) -> dict[str, Any]:
    """Global's address arguments: from ``--transport``/``--dir`` (listening) or ``connect``."""
    if connect is None:
        if args.transport == "tcp":
            return {"host": "127.0.0.1"}
        return {"unix_sock_path": args.dir}
    if "port" in connect:
        return {"host": connect["host"], "port": connect["port"]}
    return {"unix_sock_path": connect["dir"]}


def _connect_info(args: argparse.Namespace, g: Global) -> dict[str, Any]:
    if args.transport == "tcp":
        return {"host": "127.0.0.1", "port": g.port}
    return {"dir": args.dir}


def _ready(args: argparse.Namespace, **info: Any) -> None:
    _proto.announce_ready(LIB, __version__, daffi.__file__, backend=args.backend, **info)


def _register_echo() -> None:
    @callback
    def echo(x: Any) -> Any:
        return x


def serve(args: argparse.Namespace, *, node: bool) -> None:
    """W1-W3 server (controller + echo node) or, with ``node=False``, W4's bare controller."""
    if node:
        _register_echo()
    g = Global(
        process_name="server" if node else "controller",
        init_controller=True,
        init_node=node,
        backend=args.backend,
        **_address(args),
    )
    try:
        _ready(args, connect=_connect_info(args, g))
        _proto.wait_for_stdin_eof()
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def worker(args: argparse.Namespace) -> None:
    _register_echo()
    g = Global(process_name=args.name, backend=args.backend, **_address(args, args.connect))
    try:  # the constructor returned: connected to the controller
        _ready(args)
        _proto.wait_for_stdin_eof()
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def client_sync(args: argparse.Namespace, timer: _proto.Timer) -> None:
    @fetcher
    def echo(x: Any) -> Any:
        pass

    g = Global(process_name="client", backend=args.backend, **_address(args, args.connect))
    try:
        g.wait_function(_proto.ECHO, timeout=_WAIT)
        _proto.emit_result(_proto.run_sync(echo, _proto.check_echo, args, timer))
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def client_concurrent(args: argparse.Namespace, timer: _proto.Timer) -> None:
    @fetcher
    async def echo(x: Any) -> Any:
        pass

    async def gather(workers: list[Any]) -> None:
        async with anyio.create_task_group() as tg:
            for run in workers:
                tg.start_soon(run)

    async def main() -> None:
        address = _address(args, args.connect)
        async with Global(process_name="client", backend=args.backend, **address) as g:
            await g.wait_function_async(_proto.ECHO, timeout=_WAIT)
            _proto.emit_result(await _proto.run_concurrent(echo, args, timer, gather))

    anyio.run(main, backend=args.backend)


def client_async_app(args: argparse.Namespace, timer: _proto.Timer) -> None:
    @fetcher
    async def echo(x: Any) -> Any:
        pass

    async def main() -> None:
        g = Global(process_name="client", backend=args.backend, **_address(args, args.connect))
        try:
            await g.wait_function_async(_proto.ECHO, timeout=_WAIT)
            _proto.emit_result(await _proto.run_concurrent(echo, args, timer, gather))
        finally:
            with _proto.stop_deadline(STOP_WAIT, "Global.stop_async()"):
                await g.stop_async()

    if args.backend == "trio":
        import trio

        async def gather(workers: list[Any]) -> None:
            async with trio.open_nursery() as nursery:
                for run in workers:
                    nursery.start_soon(run)

        trio.run(main)
    else:

        async def gather(workers: list[Any]) -> None:
            await asyncio.gather(*(run() for run in workers))

        asyncio.run(main())


def client_bg(args: argparse.Namespace, timer: _proto.Timer) -> None:
    @fetcher(BG)
    def echo(x: Any) -> Any:
        pass

    g = Global(process_name="client", backend=args.backend, **_address(args, args.connect))
    try:
        g.wait_function(_proto.ECHO, timeout=_WAIT)
        _proto.emit_result(_proto.run_pipelined(echo, lambda result: result.get(), args, timer))
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def client_broadcast(args: argparse.Namespace, timer: _proto.Timer) -> None:
    @fetcher(BROADCAST)
    def echo(x: Any) -> Any:
        pass

    g = Global(process_name="client", backend=args.backend, **_address(args, args.connect))
    try:
        nodes = [_proto.node_name(i) for i in range(_proto.W4_NODES)]
        for name in nodes:
            g.wait_process(name, timeout=_WAIT)
        deadline = time.monotonic() + _WAIT
        while not all(_proto.ECHO in g.registered_callbacks.get(n, {}) for n in nodes):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every node offers echo: {g.registered_callbacks}")
            time.sleep(0.01)
        _proto.emit_result(_proto.run_sync(echo, _proto.check_broadcast, args, timer))
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def main() -> None:
    args = _proto.parse_args(backends=True)
    if args.role in ("server", "controller"):
        serve(args, node=args.role == "server")
    elif args.role == "worker":
        worker(args)
    else:
        timer = _proto.Timer()
        if args.workload == "w2":
            client_concurrent(args, timer)
        elif args.workload == "w5":
            client_async_app(args, timer)
        elif args.workload == "w6":
            client_bg(args, timer)
        elif args.workload == "w4":
            client_broadcast(args, timer)
        else:
            client_sync(args, timer)


if __name__ == "__main__":
    main()
