"""Driver for daffi 2.2.1 (PyPI), run in the ``daffi2`` virtualenv with its own ``daffi``.

    python -m benchmarks.compare.lib_daffi2 server|controller|worker|client ...

The API we are compatible with, so the programs read like ``lib_daffi4``'s. What daffi 2
imposes:

* ``Global`` is a process-wide singleton, must be built in the main thread (it installs
  SIGINT/SIGTERM handlers and a ``sys.excepthook``), and blocks until its node is connected
  (retrying forever: the runner starts a client only after the server said READY, and the
  client's own ``--deadline`` bounds the wait).
* Unix sockets: ``unix_sock_path`` is ignored; the socket is always
  ``<tempfile.gettempdir()>/daffi/.sock``. The runner gives each run its own ``TMPDIR``
  (= ``--dir``) and this driver checks that the temp dir really is that directory.
* TCP: daffi 2 rewrites ``127.0.0.1`` (and ``localhost``) to ``[::]``, i.e. it would listen on
  every interface. ``127.0.0.2`` is not rewritten, so the server listens there: still the
  loopback device, and nothing beyond it.
* W2: ``await`` on an ``async def`` fetcher; daffi 2 runs each call's blocking wait in an
  anyio worker thread (40 at most), inside ``asyncio.run`` here.
* W5 (a daffi 2 style async app): the same awaits as W2, but ``Global(...)`` is constructed
  inside ``async def main()`` run by ``asyncio.run`` (its constructor blocks that loop until
  connected, as it does in any daffi 2 async app); ``await g.wait_function_async``, then
  ``g.stop()`` at the end (daffi 2 has no async stop).
* W6: ``@fetcher(BG) def echo``; the main thread keeps ``--concurrency`` calls outstanding
  (their ``AsyncResult``), ``.get()`` on the oldest, then the next call.
* Its own event loop (the Ipc thread) runs on uvloop, which the package installs.
"""

import asyncio
import os
import sys
import tempfile
import time

import daffi
from benchmarks.compare import _proto
from daffi import BG, BROADCAST, Global
from daffi.__about__ import __version__
from daffi.decorators import callback, fetcher

LIB = "daffi2"
TCP_HOST = "127.0.0.2"
STOP_WAIT = 3.0


def _check_tmpdir(expected):
    """Our socket dir must be the run's private temp dir (daffi 2 puts it there by itself)."""
    actual = os.path.realpath(tempfile.gettempdir())
    if actual != os.path.realpath(expected):
        raise RuntimeError(f"TMPDIR is {actual!r}, expected {expected!r}: set TMPDIR per run")


def _address(args, connect=None):
    if connect is None:
        if args.transport == "tcp":
            return {"host": TCP_HOST, "port": _proto.free_tcp_port(TCP_HOST)}
        _check_tmpdir(args.dir)
        return {}
    if "port" in connect:
        return {"host": connect["host"], "port": connect["port"]}
    _check_tmpdir(connect["dir"])
    return {}


def _connect_info(args, address):
    if args.transport == "tcp":
        return {"host": address["host"], "port": address["port"]}
    return {"dir": args.dir, "socket": os.path.join(tempfile.gettempdir(), "daffi", ".sock")}


def _ready(**info):
    _proto.announce_ready(LIB, __version__, daffi.__file__, **info)


def _register_echo():
    # No annotations: daffi 2 pickles the signature for its peers.
    @callback
    def echo(x):
        return x


def serve(args, node):
    if node:
        _register_echo()
    address = _address(args)
    g = Global(
        process_name="server" if node else "controller",
        init_controller=True,
        init_node=node,
        **address,
    )
    try:
        _ready(connect=_connect_info(args, address))
        _proto.wait_for_stdin_eof()
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def worker(args):
    _register_echo()
    g = Global(process_name=args.name, **_address(args, args.connect))  # blocks until connected
    try:
        _ready()
        _proto.wait_for_stdin_eof()
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def client_sync(args, timer):
    @fetcher
    def echo(x):
        pass

    g = Global(process_name="client", **_address(args, args.connect))
    try:
        g.wait_function(_proto.ECHO)
        _proto.emit_result(_proto.run_sync(echo, _proto.check_echo, args, timer))
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def client_concurrent(args, timer):
    @fetcher
    async def echo(x):
        pass

    async def gather(workers):
        await asyncio.gather(*(run() for run in workers))

    g = Global(process_name="client", **_address(args, args.connect))
    try:
        g.wait_function(_proto.ECHO)
        _proto.emit_result(asyncio.run(_proto.run_concurrent(echo, args, timer, gather)))
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def client_async_app(args, timer):
    @fetcher
    async def echo(x):
        pass

    async def gather(workers):
        await asyncio.gather(*(run() for run in workers))

    async def main():
        g = Global(process_name="client", **_address(args, args.connect))
        try:
            await g.wait_function_async(_proto.ECHO)
            _proto.emit_result(await _proto.run_concurrent(echo, args, timer, gather))
        finally:
            _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")

    asyncio.run(main())


def client_bg(args, timer):
    @fetcher(BG)
    def echo(x):
        pass

    g = Global(process_name="client", **_address(args, args.connect))
    try:
        g.wait_function(_proto.ECHO)
        _proto.emit_result(_proto.run_pipelined(echo, lambda result: result.get(), args, timer))
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def client_broadcast(args, timer):
    @fetcher(BROADCAST)
    def echo(x):
        pass

    g = Global(process_name="client", **_address(args, args.connect))
    try:
        nodes = [_proto.node_name(i) for i in range(_proto.W4_NODES)]
        for name in nodes:
            g.wait_process(name)
        deadline = time.monotonic() + 30
        while not all(_proto.ECHO in g.registered_callbacks.get(n, {}) for n in nodes):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every node offers echo: {g.registered_callbacks}")
            time.sleep(0.01)
        _proto.emit_result(_proto.run_sync(echo, _proto.check_broadcast, args, timer))
    finally:
        _proto.stop_within(g.stop, STOP_WAIT, "Global.stop()")


def main():
    args = _proto.parse_args()
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
    sys.stdout.flush()


if __name__ == "__main__":
    main()
