"""Command line: ``python -m daffi demo`` and ``python -m daffi controller``."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daffi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the scheduling demo (three processes)")
    controller = commands.add_parser("controller", help="run a standalone controller")
    controller.add_argument("--name", default="controller", help="process name")
    controller.add_argument("--host", help="TCP host to listen on (default: a Unix socket)")
    controller.add_argument("--port", type=int, help="TCP port (default: a free one)")
    controller.add_argument("--unix-sock-path", help="directory of the Unix socket")
    controller.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from daffi.cli.demo import main as demo

        return demo()

    logging.basicConfig(level=args.log_level.upper())
    from daffi import Global
    from daffi.exceptions import DaffiError

    try:
        g = Global(
            process_name=args.name,
            init_controller=True,
            init_node=False,
            host=args.host,
            port=args.port,
            unix_sock_path=args.unix_sock_path,
        )
    except DaffiError as exc:
        print(f"daffi: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"daffi controller {args.name!r} listening on {g.address}", flush=True)
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
    except DaffiError as exc:  # the controller died of an error (logged with its traceback)
        print(f"daffi: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
