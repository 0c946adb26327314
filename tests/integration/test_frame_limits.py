"""A payload too large for one frame is refused where it is made, with a clear error.

A peer closes a connection that sends a frame over ``max_frame_size``, which would fail
every call on that connection. So the caller checks its arguments (and stream items), and
the callee its result, before anything is sent: the caller gets ``PayloadEncodeError`` (or
the callee's as a remote error), and the connections stay up.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from daffi import Global
from daffi._codec import PayloadEncodeError
from daffi.decorators import fetcher
from daffi.exceptions import RemoteCallError
from daffi.registry import CallbackRegistry

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

LIMIT = 256 * 1024


@fetcher
async def echo(x):
    pass


@fetcher
async def grow(n):
    pass


def echo_cb(x: object) -> object:
    return x


def grow_cb(n: int) -> bytes:
    return b"x" * n


@pytest.fixture
def sock_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="daffi-fl-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _registry() -> CallbackRegistry:
    registry = CallbackRegistry()
    registry.add(echo_cb, "echo")
    registry.add(grow_cb, "grow")
    return registry


@contextlib.asynccontextmanager
async def server_and_client(sock_dir: str) -> AsyncIterator[tuple[Global, Global]]:
    """A controller whose node offers ``echo`` and ``grow``, and a client; both at LIMIT."""
    async with (
        Global(
            process_name="server",
            init_controller=True,
            unix_sock_path=sock_dir,
            registry=_registry(),
            max_frame_size=LIMIT,
        ) as server,
        Global(
            process_name="client",
            unix_sock_path=sock_dir,
            registry=CallbackRegistry(),
            max_frame_size=LIMIT,
        ) as client,
    ):
        yield server, client


async def test_oversized_arguments_and_results_are_refused_and_nothing_breaks(
    sock_dir: str, anyio_backend: str
) -> None:
    async with server_and_client(sock_dir) as (server, client):
        await client.wait_function_async("echo", timeout=5)
        node = client._runtime.node
        assert node is not None
        conn = node.conn

        with client.as_current():
            # Arguments: refused by the caller, before sending.
            with pytest.raises(PayloadEncodeError, match=r"arguments of 'echo'.*max_frame_size"):
                await echo(b"x" * LIMIT)
            # A result: refused by the callee, which answers with that error instead.
            with pytest.raises(RemoteCallError, match=r"result of 'grow'.*max_frame_size") as err:
                await grow(LIMIT)
            assert err.value.remote_type == "PayloadEncodeError"
            # Sizes that fit still work, on the same connections.
            assert await echo(b"y" * (LIMIT // 2)) == b"y" * (LIMIT // 2)
            assert await grow(1000) == b"x" * 1000
        assert node.conn is conn  # the client never had to reconnect
        assert server._runtime.controller is not None
        assert set(server._runtime.controller.peers) == {"server", "client"}


def test_oversized_arguments_from_a_sync_caller(sock_dir: str) -> None:
    """The same on a call channel (a def fetcher called from a plain thread)."""

    @fetcher
    def echo(x):
        pass

    server = Global(
        process_name="server",
        init_controller=True,
        unix_sock_path=sock_dir,
        registry=_registry(),
        max_frame_size=LIMIT,
    )
    try:
        client = Global(
            process_name="client",
            unix_sock_path=sock_dir,
            registry=CallbackRegistry(),
            max_frame_size=LIMIT,
        )
        try:
            client.wait_function("echo", timeout=5)
            with client.as_current():
                with pytest.raises(PayloadEncodeError, match="max_frame_size"):
                    echo(b"x" * LIMIT)
                assert echo(b"ok") == b"ok"
            node = client._runtime.node
            assert node is not None
            assert node.channels is not None
            assert not node.channels.disabled
        finally:
            client.stop()
    finally:
        server.stop()


async def test_a_generous_limit_leaves_room_for_the_envelope(
    sock_dir: str, anyio_backend: str
) -> None:
    """A payload just under the limit, less the envelope, still goes through."""
    async with server_and_client(sock_dir) as (_, client):
        await client.wait_function_async("echo", timeout=5)
        size = LIMIT - LIMIT // 8 - 64  # the envelope room is 1/8 of a small limit
        with client.as_current():
            with anyio.fail_after(10):
                assert len(await echo(b"z" * size)) == size
