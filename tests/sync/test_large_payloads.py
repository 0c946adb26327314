"""Payloads larger than a socket buffer, over real sockets, both ways, on both backends.

A frame the socket cannot take at once is finished by the connection's writer task; this
must hold in every process role: a sync caller writing from its own thread, the controller
forwarding, and a worker thread replying.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from daffi import Global
from daffi.decorators import fetcher
from daffi.registry import CallbackRegistry

SIZES = [256 * 1024, 1024 * 1024, 5 * 1024 * 1024]


@fetcher
def big_echo(data: bytes) -> bytes:
    """Proxy for the echo callback."""


@fetcher
async def big_echo_async(data: bytes) -> bytes:
    """Proxy for the same callback, awaited."""


def echo(data: bytes) -> bytes:
    return data


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["unix", "tcp"])
def pair(request: pytest.FixtureRequest, backend: str) -> Iterator[tuple[Global, Global]]:
    directory = tempfile.mkdtemp(prefix="daffi-big-", dir="/tmp")
    registry = CallbackRegistry()
    registry.add(echo, "big_echo")
    registry.add(echo, "big_echo_async")
    where: dict[str, Any] = (
        {"unix_sock_path": directory} if request.param == "unix" else {"host": "127.0.0.1"}
    )
    server = Global("big-server", init_controller=True, registry=registry, backend=backend, **where)
    if request.param == "tcp":
        where["port"] = server.port
    client = Global("big-client", registry=CallbackRegistry(), backend=backend, **where)
    try:
        client.wait_function("big_echo", timeout=10)
        yield server, client
    finally:
        client.stop()
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", SIZES)
def test_large_payload_round_trip_from_a_sync_caller(
    pair: tuple[Global, Global], size: int
) -> None:
    _, client = pair
    data = bytes(range(256)) * (size // 256)
    with client.as_current():
        for _ in range(3):
            assert big_echo(data) == data


@pytest.mark.timeout(60)
def test_large_payload_round_trip_from_another_loop(pair: tuple[Global, Global]) -> None:
    _, client = pair
    data = b"\x5a" * (2 * 1024 * 1024)

    async def main() -> None:
        with anyio.fail_after(30), client.as_current():
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(check, data)

    async def check(value: bytes) -> None:
        assert await big_echo_async(value) == value

    anyio.run(main)
