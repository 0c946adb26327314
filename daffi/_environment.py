"""What a process takes from its environment rather than from ``Global(...)``: a readable
name when it is given none, and the level of daffi's logging (``DAFFI_LOG_LEVEL``).

The rest of the environment (``DAFFI_ADDRESS``, ``DAFFI_AUTH_TOKEN``) is read with the
arguments it stands in for, in :mod:`daffi._settings`.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import sys
import threading

from daffi.exceptions import InitializationError

__all__ = [
    "LOG_LEVEL_VARIABLE",
    "StderrFallbackHandler",
    "apply_environment_log_level",
    "apply_log_level",
    "default_process_name",
    "log_level_from_environment",
]

#: the environment variable that sets the level of the ``daffi`` logger
LOG_LEVEL_VARIABLE = "DAFFI_LOG_LEVEL"

_generated_names: set[str] = set()
_generated_lock = threading.Lock()
_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def default_process_name() -> str:
    """A readable name for a Global given none: ``<program>-<host>-<pid>-<4 hex digits>``,
    e.g. ``worker-web1-12345-3fa2``.

    ``<program>`` is the script's stem (``python`` for ``-c`` and the interactive prompt; the
    package for ``python -m package``), ``<host>`` the host name's first label; both keep
    only letters, digits and ``_`` (other runs become ``-``). The random part, new for every
    Global and never repeated in a process, keeps the name apart from that of an earlier run
    with the same process id (a restarted container's program is pid 1 again), whose name
    the controller may still hold. A generated name keeps no state (see ``daffi._settings``).
    """
    prefix = f"{_program_name()}-{_host_name()}-{os.getpid()}"
    with _generated_lock:
        while True:
            name = f"{prefix}-{secrets.token_hex(2)}"
            if name not in _generated_names:
                _generated_names.add(name)
                return name


def _safe(text: str, limit: int = 32) -> str:
    return _UNSAFE.sub("-", text).strip("-")[:limit].strip("-")


def _program_name() -> str:
    argv = getattr(sys, "argv", None) or [""]
    script = str(argv[0])
    if script in ("", "-", "-c", "-m"):
        return "python"
    stem, parent = os.path.splitext(os.path.basename(script))[0], os.path.dirname(script)
    if stem == "__main__":  # python -m package: name the package
        stem = os.path.basename(parent)
    return _safe(stem) or "python"


def _host_name() -> str:
    try:
        host = socket.gethostname()
    except OSError:
        host = ""
    return _safe(host.split(".")[0]) or "localhost"


def log_level_from_environment() -> int | None:
    """The level ``DAFFI_LOG_LEVEL`` names: a level name (``debug``, ``INFO``, ``warning``...;
    any case) or a number; None when it is unset or empty.

    Raises:
        InitializationError: the variable names no logging level.
    """
    text = os.environ.get(LOG_LEVEL_VARIABLE, "").strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    level = logging.getLevelName(text.upper())
    if isinstance(level, int):
        return level
    raise InitializationError(
        f"{LOG_LEVEL_VARIABLE} must name a logging level (DEBUG, INFO, WARNING, ERROR, "
        f"CRITICAL) or be a number, not {text!r}"
    )


_log_level_lock = threading.Lock()
#: the level :func:`apply_log_level` gave the ``daffi`` logger (None: it gave none)
_applied_level: int | None = None


def apply_log_level(level: int | None) -> None:
    """Make daffi's records of ``level`` and above visible (``DAFFI_LOG_LEVEL``).

    The ``daffi`` logger gets ``level`` unless the application gave it a level of its own
    (that one wins). Its records still propagate to the application's handlers; a stderr
    handler is added that writes a record only when no other handler would get it (the
    application configured no logging, even later than this call). ``None`` does nothing.
    """
    global _applied_level
    if level is None:
        return
    daffi_logger = logging.getLogger("daffi")
    with _log_level_lock:
        if daffi_logger.level in (logging.NOTSET, _applied_level):
            daffi_logger.setLevel(level)
            _applied_level = level
        if not any(isinstance(h, StderrFallbackHandler) for h in daffi_logger.handlers):
            daffi_logger.addHandler(StderrFallbackHandler())


class StderrFallbackHandler(logging.Handler):
    """Writes a record to ``sys.stderr`` when no other handler gets it: for
    ``DAFFI_LOG_LEVEL`` in a program that configured no logging. Once the application adds
    a handler (to the root logger or a ``daffi`` one), its handlers alone show daffi's
    records, so nothing is written twice."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if self._others_get(record):
            return
        stream = sys.stderr  # read now, like logging.lastResort: it may have been replaced
        if stream is None:
            return
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)

    def _others_get(self, record: logging.LogRecord) -> bool:
        current: logging.Logger | None = logging.getLogger(record.name)
        while current is not None:
            for handler in current.handlers:
                if not isinstance(handler, logging.NullHandler | StderrFallbackHandler):
                    return True
            if not current.propagate:
                return False
            current = current.parent
        return False


def apply_environment_log_level() -> None:
    """:func:`apply_log_level` of ``DAFFI_LOG_LEVEL`` when daffi is imported; a bad value is
    left for the first ``Global`` to report (an import does not fail)."""
    try:
        level = log_level_from_environment()
    except InitializationError:
        return
    apply_log_level(level)
