"""Shared by the modifier programs: the transport from the command line, whole-line prints.

tcp HOST PORT   ->  Global(host=HOST, port=PORT)
unix DIR        ->  Global(unix_sock_path=DIR)
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

_print_lock = threading.Lock()


def say(*parts: object) -> None:
    """Print one whole line, even when callbacks run in several worker threads at once."""
    line = " ".join(str(part) for part in parts) + "\n"
    with _print_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def report(label: str, **facts: Any) -> None:
    """Print ``<label> <json>``: what a test parses."""
    say(label, json.dumps(facts, sort_keys=True))


def transport_options(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Return the ``Global`` keyword arguments for the transport and the remaining args."""
    kind = argv[0] if argv else ""
    if kind == "tcp":
        return {"host": argv[1], "port": int(argv[2])}, argv[3:]
    if kind == "unix":
        return {"unix_sock_path": argv[1]}, argv[2:]
    raise SystemExit(f"unknown transport {kind!r}: use 'tcp HOST PORT' or 'unix DIR'")
