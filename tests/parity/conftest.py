"""Fixtures of the parity matrix (see ``_net.py``): a private socket directory per test, and
a check that no daffi thread outlives its test."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A short private directory for the Unix socket (AF_UNIX paths are ~104 bytes at most)."""
    path = tempfile.mkdtemp(prefix="dfpar-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _daffi_threads() -> set[threading.Thread]:
    return {
        t for t in threading.enumerate() if t.name.startswith(("daffi", "parity")) and t.is_alive()
    }


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Every daffi thread a test started (loop, worker, channel threads) ends within 5 s of
    the test's Globals stopping, so nothing a failing cell left behind runs into the next."""
    before = _daffi_threads()
    yield
    deadline = time.monotonic() + 5.0
    while True:
        left = _daffi_threads() - before
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"daffi threads still running after the test: {sorted(t.name for t in left)}"
