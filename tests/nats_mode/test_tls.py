"""TLS to the NATS servers: Global's ssl_ca (and ssl_certificate / ssl_key for a server that
checks client certificates), as for a controller; certificates made by trustme."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from daffi import Global
from daffi.decorators import fetcher
from daffi.exceptions import AuthenticationError, InitializationError
from daffi.registry import CallbackRegistry

from ._servers import LOOPBACK, NatsServer, start_server
from .conftest import require_nats

pytestmark = pytest.mark.anyio


@fetcher
async def add(a: int, b: int) -> int: ...


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    server = ca.issue_cert(LOOPBACK)
    client = ca.issue_cert("client.daffi.test")
    files = {
        "ca": tmp_path / "ca.pem",
        "server": tmp_path / "server.pem",
        "client": tmp_path / "client.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_and_cert_chain_pem.write_to_path(str(files["server"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return {name: str(path) for name, path in files.items()}


@pytest.fixture
def tls_server(tmp_path: Path, pki: dict[str, str]) -> Iterator[NatsServer]:
    """A nats-server that requires TLS and a client certificate signed by the test CA."""
    require_nats()
    server = start_server(
        tmp_path,
        "tls",
        extra=[
            "--tls",
            "--tlscert",
            pki["server"],
            "--tlskey",
            pki["server"],
            "--tlsverify",
            "--tlscacert",
            pki["ca"],
        ],
    )
    try:
        yield server
    finally:
        server.stop()


async def test_nodes_talk_over_mutual_tls(
    tls_server: NatsServer, pki: dict[str, str], anyio_backend: str
) -> None:
    tls = {"ssl_ca": pki["ca"], "ssl_certificate": pki["client"], "ssl_key": pki["client"]}
    address = f"nats://{tls_server.url}"
    registry = CallbackRegistry()
    registry.add(lambda a, b: a + b, "add")
    async with (
        Global("worker", address=address, registry=registry, **tls),
        Global("caller", address=address, registry=CallbackRegistry(), **tls) as caller,
    ):
        await caller.wait_function_async("add", timeout=5)
        with caller.as_current():
            assert await add(20, 22) == 42


async def test_a_node_without_tls_is_told_the_server_requires_it(
    tls_server: NatsServer, anyio_backend: str
) -> None:
    with pytest.raises(AuthenticationError, match=r"requires TLS.*give this Global ssl_ca"):
        async with Global("plain", address=f"nats://{tls_server.url}", connect_timeout=5):
            pass


async def test_a_node_without_a_client_certificate_is_refused(
    tls_server: NatsServer, pki: dict[str, str], anyio_backend: str
) -> None:
    with pytest.raises((AuthenticationError, InitializationError)):
        async with Global(
            "anonymous", address=f"nats://{tls_server.url}", ssl_ca=pki["ca"], connect_timeout=3
        ):
            pass
