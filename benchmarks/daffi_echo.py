"""daffi's side of W1: an echo callback behind a controller, and a client that times it.

    python -m benchmarks.daffi_echo server --transport tcp|unix [--path DIR]
        [--security plain|tls|token|mtls-token --certs DIR]
    python -m benchmarks.daffi_echo client --transport tcp|unix (--port P | --path DIR)
        [--security ... --certs DIR] [--mode sync] --calls N --warmup W [--deadline S]

The server runs the controller and offers ``echo``; it prints ``READY {"port": P}`` (or
``{"path": DIR}``) once listening and stops when its stdin closes. The client is a plain
synchronous program: it declares an ``echo`` fetcher, waits for the callback, warms up, then
times ``N`` sequential FG calls and prints one JSON line: the timed round. A client still
running after ``--deadline`` seconds prints every thread's traceback to stderr and exits.
"""

from __future__ import annotations

import argparse
import faulthandler
from typing import Any

from benchmarks._common import announce_ready, print_round, time_calls, wait_for_stdin_eof, where
from daffi import Global, callback, fetcher
from daffi.metrics import CallbackStats

_CONNECT_TIMEOUT = 30.0
#: the token of the token modes (a benchmark's, not a secret)
BENCH_TOKEN = "bench-token-0123456789abcdef"
#: --security modes: what a Global is given beyond its address (files in --certs)
SECURITY_MODES = ("plain", "tls", "token", "mtls-token")


def security_kwargs(mode: str, certs: str | None, *, server: bool) -> dict[str, Any]:
    """The ``Global`` arguments of a ``--security`` mode; the files are ``ca.pem``,
    ``server.pem`` and ``client.pem`` (certificate and key in one file) in ``certs``."""
    kwargs: dict[str, Any] = {}
    if mode in ("token", "mtls-token"):
        kwargs["auth_token"] = BENCH_TOKEN
    if mode in ("tls", "mtls-token"):
        assert certs is not None, "--certs is required for TLS modes"
        pem = f"{certs}/server.pem" if server else f"{certs}/client.pem"
        if server or mode == "mtls-token":
            kwargs["ssl_certificate"] = kwargs["ssl_key"] = pem
        if not server or mode == "mtls-token":
            kwargs["ssl_ca"] = f"{certs}/ca.pem"
    return kwargs


def serve(
    transport: str,
    path: str | None,
    security: dict[str, Any] | None = None,
    *,
    metrics: bool = False,
) -> None:
    @callback
    def echo(x: Any) -> Any:
        return x

    security = dict(security or {})
    if metrics:
        security["metrics"] = CallbackStats()
    if transport == "tcp":
        g = Global(process_name="bench-server", init_controller=True, host="127.0.0.1", **security)
        info: dict[str, Any] = {"port": g.port}
    else:
        assert path is not None, "--path is required for unix"
        g = Global(process_name="bench-server", init_controller=True, **where(path), **security)
        info = {"path": path}
    with g:
        announce_ready(**info)
        wait_for_stdin_eof()


def run_client(args: argparse.Namespace) -> None:
    @fetcher
    def echo(x: Any) -> Any:
        pass

    security = security_kwargs(args.security, args.certs, server=False)
    if args.transport == "tcp":
        g = Global(process_name="bench-client", host="127.0.0.1", port=args.port, **security)
    else:
        g = Global(process_name="bench-client", **where(args.path))
    with g:
        g.wait_function("echo", timeout=_CONNECT_TIMEOUT)

        def call(i: int) -> None:
            if echo(i) != i:
                raise AssertionError(f"daffi echo of {i} came back wrong")

        time_calls(call, args.warmup)
        print_round(time_calls(call, args.calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--transport", choices=("tcp", "unix"), required=True)
    parser.add_argument("--port", type=int)
    parser.add_argument("--path")
    parser.add_argument("--mode", choices=("sync",), default="sync", help="`def` fetcher")
    parser.add_argument("--security", choices=SECURITY_MODES, default="plain")
    parser.add_argument("--certs", help="directory of ca.pem, server.pem, client.pem")
    parser.add_argument(
        "--metrics", action="store_true", help="server: count every run with CallbackStats"
    )
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--deadline", type=float, default=300.0)
    args = parser.parse_args()
    if args.transport == "unix" and args.path is None:
        parser.error("--path is required with --transport unix")
    if args.transport == "tcp" and args.role == "client" and args.port is None:
        parser.error("--port is required for a tcp client")
    if args.security != "plain" and args.transport != "tcp":
        parser.error("--security other than plain needs --transport tcp")
    if args.role == "server":
        serve(
            args.transport,
            args.path,
            security_kwargs(args.security, args.certs, server=True),
            metrics=args.metrics,
        )
    else:
        faulthandler.dump_traceback_later(args.deadline, exit=True)
        run_client(args)


if __name__ == "__main__":
    main()
