"""Shared by the chaos programs: the command line every one of them takes, whole-line prints.

Every program takes ``BACKEND SOCK_DIR`` first: the event loop its daffi core runs on
(``asyncio`` or ``trio``) and the directory of the controller's Unix socket.
"""

from __future__ import annotations

import argparse
import sys
import threading

_print_lock = threading.Lock()


def say(*parts: object) -> None:
    """Print one whole line, even when callbacks and hooks print from other threads."""
    line = " ".join(str(part) for part in parts) + "\n"
    with _print_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser that already takes ``BACKEND SOCK_DIR``."""
    made = argparse.ArgumentParser(description=(description or "").split("\n\n")[0])
    made.add_argument("backend", choices=["asyncio", "trio"])
    made.add_argument("sock_dir", help="directory of the controller's Unix socket")
    return made
