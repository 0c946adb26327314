"""Fixtures of the call-channel and work-channel tests (see ``_helpers.py``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from ._helpers import Net


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A short private directory for the Unix socket (AF_UNIX paths are ~104 bytes at most)."""
    path = tempfile.mkdtemp(prefix="daffi-s-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def net(sock_dir: str) -> Iterator[Net]:
    network = Net(sock_dir)
    try:
        yield network
    finally:
        network.stop_all()
