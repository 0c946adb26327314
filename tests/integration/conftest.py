"""Fixtures for in-process multi-node tests over the memory transport.

Every test gets its own ``memory://`` network: a standalone controller (``controller``) and a
factory for nodes (``make_node``), each node with a private ``CallbackRegistry`` so that tests
never touch the process-wide default registry.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Protocol

import pytest

from daffi import Global
from daffi.registry import CallbackRegistry


class NodeFactory(Protocol):
    def __call__(
        self, name: str, callbacks: Mapping[str, Callable[..., Any]] | None = None, **kwargs: Any
    ) -> Global: ...


@pytest.fixture
def address() -> str:
    """A memory transport address that no other test uses."""
    return f"memory://daffi-it-{uuid.uuid4().hex}"


@pytest.fixture
async def controller(address: str, anyio_backend: str) -> AsyncIterator[Global]:
    """A standalone controller (no node) listening on ``address``, running in the test's loop."""
    async with Global("ctrl", init_controller=True, init_node=False, address=address) as g:
        yield g


@pytest.fixture
def make_node(address: str, controller: Global) -> NodeFactory:
    """Build (not start) a node of the test's network: enter it with ``async with``.

    ``callbacks`` maps remote names to functions; they go to a registry of the node's own
    (available afterwards as ``node.registry``).
    """

    def factory(
        name: str, callbacks: Mapping[str, Callable[..., Any]] | None = None, **kwargs: Any
    ) -> Global:
        registry = CallbackRegistry()
        for cb_name, fn in (callbacks or {}).items():
            registry.add(fn, cb_name)
        return Global(name, address=address, registry=registry, **kwargs)

    return factory


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A fresh private directory (mode 0700, short path under /tmp) for a Unix socket."""
    path = tempfile.mkdtemp(prefix="daffi-it-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
