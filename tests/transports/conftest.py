"""Fixtures for transport tests: short socket directories and unique memory names."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# AF_UNIX paths are limited to ~104-108 bytes; pytest's tmp_path can be longer.
_MAX_SOCKET_DIR_LEN = 80


@pytest.fixture
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    """A private directory short enough to hold Unix sockets, removed afterwards."""
    if len(str(tmp_path)) <= _MAX_SOCKET_DIR_LEN:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="daffi-t-", dir="/tmp"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def memory_name() -> str:
    """A memory transport name no other test uses."""
    return f"test-{uuid.uuid4().hex}"
