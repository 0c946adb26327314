"""Driver for daffi 3.0.1 (PyPI), run in the ``daffi3`` virtualenv with its own ``daffi``.

    python -m benchmarks.compare.lib_daffi3 server|controller|worker|client ...

daffi 3 is a different library (a native core with ``Router``/``Service``/``Client``); its
API was read from the installed package (``daffi/app.py``, ``daffi/_rpc_proxy.py``,
``daffi/aio/``). The programs here are its idiomatic equivalents of the W1-W6 topologies:

* W1-W3: a ``Service`` offering ``@callback def echo(x)`` (default ``workers=1``: callbacks
  run inline, the library's default and fastest setting for a trivial callback) and a
  ``Client``: ``echo = conn.rpc().echo`` bound once, then ``echo(value)`` per call. The
  serialisation is the default, ``SerdeFormat.PICKLE``, for W3's ``bytes`` too (``OPAQUE``
  would skip it, but needs a single ``bytes``/``str`` argument and a caller who opts in).
* W2: ``daffi.aio.AsyncClient`` (asyncio only) with ``--concurrency`` tasks.
* W5 (the async app): the same program as W2, its asyncio client being daffi 3's way to call
  from an async application.
* W6: the sync ``Client`` has nothing like a ``BG`` call (a result to collect later), so
  ``--threads`` threads (16) each bind ``conn.rpc().echo`` and make their share of the calls
  one after the other on the one connection.
* W4: a ``Router`` (the controller's role) and three ``Client`` processes that register
  ``@callback def echo`` and connect to it; the caller uses ``conn.cast().echo(value)``,
  which sends one request per node and collects ``{node: result}``.

Unix sockets: 3.0.1's ``unix_sock_path=`` argument is accepted but never passed to the native
core (``dfcore.startServer(host, port, ...)`` gets ``host=None`` and fails with "argument 1
must be str, not None"). The native core does take a socket path as the *host* (a host that
starts with ``/``, port 0): the server then listens on that Unix socket, which is what this
driver does. TCP: ``127.0.0.1`` and a port the kernel gave out just before (daffi 3 cannot
pick one itself and report it).

Also: the native core cuts a Unix socket path to its first 26 bytes when it binds, so a longer
path fails (the client cannot connect, or the bind hits the directory: "AddressInUse"). The
runner's temp dirs are short (``/tmp/dcXXXXXXXX``) and this driver refuses a longer path.
"""

import asyncio
import os
import time

import daffi
from benchmarks.compare import _proto
from daffi import Client, Router, Service, callback

LIB = "daffi3"
#: daffi 3.0.1's native core cuts a Unix socket path to its first 26 bytes when it binds
#: (``/tmp/qaaaaaaaaaaaaaaa/x.sock`` listens as ``.../x.so``) and then cannot connect to it.
UNIX_PATH_MAX = 26
_WAIT = 30.0
STOP_WAIT = 3.0


def _address(args, connect=None):
    if connect is None:
        if args.transport == "tcp":
            return {"host": "127.0.0.1", "port": _proto.free_tcp_port()}
        path = os.path.join(args.dir, "d3.sock")
        if len(os.fsencode(path)) > UNIX_PATH_MAX:
            raise RuntimeError(
                f"daffi 3 truncates Unix socket paths to {UNIX_PATH_MAX} bytes: {path}"
            )
        return {"host": path, "port": 0}
    return {"host": connect["host"], "port": connect["port"]}


def _ready(**info):
    _proto.announce_ready(LIB, daffi.__version__, daffi.__file__, **info)


def _register_echo():
    @callback
    def echo(x):
        return x


def serve(args, node):
    if node:
        _register_echo()
    address = _address(args)
    cls = Service if node else Router
    server = cls(app_name="server" if node else "router", **address)
    server.start()
    try:
        _ready(connect=address)
        _proto.wait_for_stdin_eof()
    finally:
        _proto.stop_within(server.stop, STOP_WAIT, f"{cls.__name__}.stop()")


def worker(args):
    _register_echo()
    client = Client(app_name=args.name, **_address(args, args.connect))
    client.connect()
    try:
        _ready()
        _proto.wait_for_stdin_eof()
    finally:
        _proto.stop_within(client.stop, STOP_WAIT, "Client.stop()")


def client_sync(args, timer):
    client = Client(app_name="client", **_address(args, args.connect))
    conn = client.connect()
    try:
        echo = conn.rpc().echo
        _proto.emit_result(_proto.run_sync(echo, _proto.check_echo, args, timer))
    finally:
        _proto.stop_within(client.stop, STOP_WAIT, "Client.stop()")


def client_concurrent(args, timer):
    from daffi.aio import AsyncClient

    async def gather(workers):
        await asyncio.gather(*(run() for run in workers))

    async def main():
        client = AsyncClient(app_name="client", **_address(args, args.connect))
        conn = await client.connect()
        try:
            echo = conn.rpc().echo
            _proto.emit_result(await _proto.run_concurrent(echo, args, timer, gather))
        finally:
            try:
                await asyncio.wait_for(client.stop(), STOP_WAIT)
            except asyncio.TimeoutError:
                _proto.stop_hung("AsyncClient.stop()", STOP_WAIT)

    asyncio.run(main())


def client_threads(args, timer):
    client = Client(app_name="client", **_address(args, args.connect))
    conn = client.connect()
    try:
        _proto.emit_result(_proto.run_threads(lambda: conn.rpc().echo, args, timer))
    finally:
        _proto.stop_within(client.stop, STOP_WAIT, "Client.stop()")


def client_broadcast(args, timer):
    from daffi._bindings import get_available_members  # what cast() itself consults

    client = Client(app_name="client", **_address(args, args.connect))
    conn = client.connect()
    try:
        nodes = [_proto.node_name(i) for i in range(_proto.W4_NODES)]
        conn.wait_for_members(*nodes, timeout=_WAIT, interval=0.01)
        deadline = time.monotonic() + _WAIT
        while True:
            members = get_available_members(client._conn_num)
            offering = {m.get("name") for m in members if _proto.ECHO in (m.get("methods") or [])}
            if offering.issuperset(nodes):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every node offers echo: {members}")
            time.sleep(0.01)
        echo = conn.cast().echo
        _proto.emit_result(_proto.run_sync(echo, _proto.check_broadcast, args, timer))
    finally:
        _proto.stop_within(client.stop, STOP_WAIT, "Client.stop()")


def main():
    args = _proto.parse_args()
    if args.role in ("server", "controller"):
        serve(args, node=args.role == "server")
    elif args.role == "worker":
        worker(args)
    elif args.workload in ("w2", "w5"):
        client_concurrent(args, _proto.Timer())
    elif args.workload == "w6":
        client_threads(args, _proto.Timer())
    elif args.workload == "w4":
        client_broadcast(args, _proto.Timer())
    else:
        client_sync(args, _proto.Timer())


if __name__ == "__main__":
    main()
