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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module marked ``pytest.mark.fabrics("memory", "nats")`` runs each test over each
    fabric: a controller on the memory transport, and NATS mode (a nats-server of this
    worker, a subject namespace per test, no controller)."""
    marker = metafunc.definition.get_closest_marker("fabrics")
    if marker is not None and "fabric" in metafunc.fixturenames:
        metafunc.parametrize("fabric", marker.args, indirect=True)


@pytest.fixture
def fabric(request: pytest.FixtureRequest) -> str:
    """How the test's nodes are connected: ``"memory"`` (the default) or ``"nats"``."""
    return str(getattr(request, "param", "memory"))


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One nats-server for this test worker (each test uses a namespace of its own)."""
    import importlib.util

    from nats_mode._servers import nats_server_binary, start_server

    if nats_server_binary() is None or importlib.util.find_spec("nats") is None:
        pytest.skip("NATS mode needs nats-server and nats-py")
    server = start_server(tmp_path_factory.mktemp("nats"), "integration")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def address(fabric: str, request: pytest.FixtureRequest) -> str:
    """An address no other test uses: a memory transport name, or a NATS namespace."""
    unique = uuid.uuid4().hex
    if fabric == "nats":
        return f"nats://{request.getfixturevalue('nats_url')}/it{unique}"
    return f"memory://daffi-it-{unique}"


@pytest.fixture
async def running_controller(
    address: str, fabric: str, anyio_backend: str
) -> AsyncIterator[Global | None]:
    """A standalone controller (no node) listening on ``address``, running in the test's
    loop; None in NATS mode, which has no controller."""
    if fabric == "nats":
        yield None
        return
    async with Global("ctrl", init_controller=True, init_node=False, address=address) as g:
        yield g


@pytest.fixture
def controller(running_controller: Global | None) -> Global:
    """The test's controller; a test that uses it is about the controller itself, and is
    skipped in NATS mode, which has none."""
    if running_controller is None:
        pytest.skip("about the controller itself: NATS mode has no controller")
    return running_controller


@pytest.fixture
def make_node(address: str, running_controller: Global | None) -> NodeFactory:
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
