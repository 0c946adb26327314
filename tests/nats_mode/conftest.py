"""Fixtures of the NATS mode tests: real nats-server processes on loopback ports.

``nats_server`` is one server per test; ``nats_cluster`` three servers routed to each other.
A test that uses them is skipped, with the reason, when nats-server is not installed
(``.ci/run`` installs it) or when nats-py is missing (the ``nats`` extra).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._programs import Fabric, Programs, across_cluster, one_server, programs_in
from ._servers import Cluster, NatsServer, nats_server_binary, start_cluster, start_server


def require_nats() -> None:
    """Skip the test unless nats-server and nats-py are both there."""
    if nats_server_binary() is None:
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    if importlib.util.find_spec("nats") is None:
        pytest.skip("nats-py is not installed (pip install '.[nats]')")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """One nats-server on a free loopback port, stopped by PID after the test."""
    require_nats()
    server = start_server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three nats-servers (A, B, C) with routes between them, stopped by PID."""
    require_nats()
    cluster = start_cluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["one-server", "cluster"])
def fabric(request: pytest.FixtureRequest) -> Fabric:
    if request.param == "one-server":
        return one_server(request.getfixturevalue("nats_server"))
    return across_cluster(request.getfixturevalue("nats_cluster"))


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[Programs]:
    yield from programs_in(tmp_path)
