"""Shared by the daffi 2 style programs: the address from argv, whole-line prints, and the
three ways a daffi 2 program keeps a node running.

Address: ``tcp HOST PORT`` -> ``Global(host=HOST, port=PORT)``; ``unix DIR`` ->
``Global(unix_sock_path=DIR)``.

Run modes (``serve``):
- ``join``: ``g = Global(...)`` at top level, then ``g.join()`` (daffi 2's sync node);
- ``asyncio``: ``asyncio.run(main())`` where main does ``g = Global(...)`` and
  ``await g.join_async()`` (daffi 2's async node, no ``async with``);
- ``trio``: the same under ``trio.run(main)``.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import Any

from daffi import Global

_print_lock = threading.Lock()


def say(*parts: object) -> None:
    """Print one whole line, even when callbacks print from several threads."""
    line = " ".join(str(part) for part in parts) + "\n"
    with _print_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def result(key: str, value: Any) -> None:
    """``RESULT <key> <json>``: what the tests parse."""
    say("RESULT", key, json.dumps(value, sort_keys=True))


def address(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The ``Global`` keyword arguments for the address, and the remaining args."""
    kind = argv[0] if argv else ""
    if kind == "tcp":
        return {"host": argv[1], "port": int(argv[2])}, argv[3:]
    if kind == "unix":
        return {"unix_sock_path": argv[1]}, argv[2:]
    raise SystemExit(f"unknown address {kind!r}: use 'tcp HOST PORT' or 'unix DIR'")


def serve(mode: str, make: Callable[[], Global]) -> None:
    """Run the Global ``make()`` builds until it is stopped, as daffi 2 programs did."""
    if mode == "join":
        g = make()
        say("READY", g.process_name)
        g.join()
        return

    async def main() -> None:
        g = make()  # inside the running loop, no `async with`
        say("READY", g.process_name)
        await g.join_async()

    if mode == "trio":
        import trio

        trio.run(main)
    elif mode == "asyncio":
        import asyncio

        asyncio.run(main())
    else:
        raise SystemExit(f"unknown mode {mode!r}: use join, asyncio or trio")
