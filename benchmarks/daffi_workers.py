"""daffi processes that serve the workloads after W1 (the clients are in ``daffi_clients.py``).

    python -m benchmarks.daffi_workers server --path DIR
    python -m benchmarks.daffi_workers controller --path DIR
    python -m benchmarks.daffi_workers node --path DIR --name NAME

Every role prints ``READY {"path": DIR}`` once it is up and stops when its stdin closes.

* ``server``: controller and node in one process (as W1's server), offering

  - ``echo(x)``: a ``def`` callback (runs in a worker thread), and ``aecho(x)``: the same as
    ``async def`` (runs on the loop) - W2, W3;
  - ``count_up(n)``: a generator callback yielding ``0..n-1`` - streams (a);
  - ``sink(x)`` (``def``) and ``asink(x)`` (``async def``): append ``x`` to a list - streams (b);
    ``sink_report()`` returns ``[how many, whether they are 0..n-1 in order]`` and clears it.

* ``controller``: a controller that offers nothing (``init_node=False``), so a BROADCAST
  reaches only the worker nodes - W4.
* ``node``: a node (no controller) named ``NAME`` offering ``echo(x)`` - W4's broadcast members.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from benchmarks._common import announce_ready, wait_for_stdin_eof, where
from daffi import Global, callback

_CONNECT_TIMEOUT = 30.0
_received: list[Any] = []


def _offer_server_callbacks() -> None:
    @callback
    def echo(x: Any) -> Any:
        return x

    @callback
    async def aecho(x: Any) -> Any:
        return x

    @callback
    def count_up(n: int) -> Iterator[int]:
        yield from range(n)

    @callback
    def sink(x: Any) -> None:
        _received.append(x)

    @callback
    async def asink(x: Any) -> None:
        _received.append(x)

    @callback
    def sink_report() -> list[Any]:
        report = [len(_received), _received == list(range(len(_received)))]
        _received.clear()
        return report


def _offer_node_callbacks() -> None:
    @callback
    def echo(x: Any) -> Any:
        return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("server", "controller", "node"))
    parser.add_argument(
        "--path",
        required=True,
        help="directory of the Unix socket, or a daffi address (nats://...)",
    )
    parser.add_argument("--name", help="process name (node)")
    args = parser.parse_args()
    if args.role == "server":
        _offer_server_callbacks()
        g = Global(process_name="bench-server", init_controller=True, **where(args.path))
    elif args.role == "controller":
        g = Global(
            process_name="bench-controller",
            init_controller=True,
            init_node=False,
            **where(args.path),
        )
    else:
        if not args.name:
            parser.error("--name is required for a node")
        _offer_node_callbacks()
        g = Global(process_name=args.name, **where(args.path), connect_timeout=_CONNECT_TIMEOUT)
    with g:
        announce_ready(path=args.path)
        wait_for_stdin_eof()


if __name__ == "__main__":
    main()
