"""Shared fixtures: every async test runs on asyncio and trio, and no test reads or writes
the user's own daffi state."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True, scope="session")
def _private_state_home() -> Iterator[None]:
    """Named nodes keep their state under ``$XDG_STATE_HOME/daffi/<name>`` by default: point
    it at a directory of this test session (inherited by the processes tests start), so that
    a durable schedule left by a user's own program is never resumed by a test node."""
    saved = os.environ.get("XDG_STATE_HOME")
    with tempfile.TemporaryDirectory(prefix="daffi-state-") as home:
        os.environ["XDG_STATE_HOME"] = home
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("XDG_STATE_HOME", None)
            else:
                os.environ["XDG_STATE_HOME"] = saved
