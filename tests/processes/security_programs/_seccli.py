"""Shared by the security programs: options from the command line, whole-line prints.

Every program takes the process name and its ``Global`` keyword arguments as one JSON object
(the test builds it: addresses, certificate paths, tokens, timeouts), so no program hard
codes a configuration.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any

_print_lock = threading.Lock()


def say(*parts: object) -> None:
    """Print one whole line (newlines inside a part become spaces)."""
    line = " ".join(str(part).replace("\n", " ") for part in parts) + "\n"
    with _print_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def arguments(argv: list[str]) -> tuple[str, dict[str, Any], list[str]]:
    """``NAME OPTIONS_JSON REST...`` -> the name, the ``Global`` options and the rest."""
    if len(argv) < 2:
        raise SystemExit("usage: PROGRAM NAME OPTIONS_JSON [ARGS...]")
    return argv[0], json.loads(argv[1]), argv[2:]


def log_to_stderr() -> None:
    """daffi's INFO lines too (a node connected, disconnected) on stderr, one per line."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
