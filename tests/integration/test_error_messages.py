"""Errors that tell users what went wrong where they once misled (issue 14): a fetcher called
after its Global stopped, a node pointed at a server that is no daffi controller, a node
whose controller is not there."""

from __future__ import annotations

import functools
import logging
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from daffi import Global
from daffi._connection import Connection
from daffi._frames import encode_frame
from daffi._greeting import Introduction
from daffi._protocol import PROTOCOL_VERSION, Welcome
from daffi.decorators import fetcher
from daffi.exceptions import GlobalContextError, InitializationError, ProtocolError
from daffi.registry import CallbackRegistry

pytestmark = pytest.mark.anyio


@fetcher
async def add(a, b):
    pass


# ---------------------------------------------------------------- a Global that was stopped


async def test_a_fetcher_called_after_its_global_stopped_names_it(anyio_backend: str) -> None:
    with anyio.fail_after(10):
        async with Global(
            "worker",
            init_controller=True,
            address=f"memory://daffi-it-{uuid.uuid4().hex}",
            registry=CallbackRegistry(),
        ) as g:
            assert repr(g).endswith("running>")

        with pytest.raises(GlobalContextError) as stopped:
            await add(1, 2)
    message = str(stopped.value)
    assert "Global 'worker'" in message
    assert "because it was stopped" in message
    assert "not initialized" not in message
    assert "create a new daffi.Global(...)" in message


# ---------------------------------------------------------------- a server that is no controller

Reply = Callable[[anyio.abc.ByteStream], Awaitable[None]]

HTTP_ERROR = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def answering(answer: bytes, *, read_first: bool = True) -> Reply:
    """A server's side of a connection: read what the client sends (if ``read_first``), then
    send ``answer``, then keep the connection open until the client closes it (closing with
    unread bytes would reset it, and the answer could be lost)."""

    async def reply(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            try:
                if read_first:
                    await stream.receive()
                await stream.send(answer)
                while True:
                    await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                pass

    return reply


def silent() -> Reply:
    async def reply(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            try:
                while True:
                    await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                pass

    return reply


@dataclass
class Server:
    """A server on a loopback port or a Unix socket that is no daffi controller."""

    #: the arguments that point a Global at it
    options: dict[str, Any]
    #: how daffi names its address
    address: str
    #: opens a connection to it
    connect: Callable[[], Awaitable[anyio.abc.ByteStream]]


@pytest.fixture(params=["tcp", "unix"])
async def serve(
    request: pytest.FixtureRequest, sock_dir: str
) -> AsyncIterator[Callable[[Reply], Awaitable[Server]]]:
    """Starts a server that answers every connection with ``reply``."""
    async with anyio.create_task_group() as tg:

        async def start(reply: Reply) -> Server:
            listener: anyio.abc.Listener[anyio.abc.SocketStream]
            if request.param == "tcp":
                listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
                port = listener.extra(anyio.abc.SocketAttribute.local_port)
                server = Server(
                    {"host": "127.0.0.1", "port": port},
                    f"tcp://127.0.0.1:{port}",
                    functools.partial(anyio.connect_tcp, "127.0.0.1", port),
                )
            else:
                path = Path(sock_dir) / "daffi.sock"
                listener = await anyio.create_unix_listener(path)
                server = Server(
                    {"unix_sock_path": sock_dir},
                    f"unix://{path}",
                    functools.partial(anyio.connect_unix, path),
                )
            tg.start_soon(listener.serve, reply)
            return server

        yield start
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        pytest.param(HTTP_ERROR, "with 'HTTP/1.1 400 Bad Request'", id="http"),
        # a TLS alert (protocol_version): what a TLS server says to a plaintext client
        pytest.param(b"\x15\x03\x01\x00\x02\x02\x46", "with a TLS record", id="tls"),
        # a binary protocol's greeting (a MySQL server's first packet)
        pytest.param(
            b"J\x00\x00\x00\n8.0.36\x00" + bytes(64), "with the bytes 4a 00 00 00 0a", id="binary"
        ),
    ],
)
async def test_a_node_pointed_at_a_server_that_is_no_controller_fails_at_once(
    serve: Callable[[Reply], Awaitable[Server]], answer: bytes, said: str
) -> None:
    server = await serve(answering(answer))
    # Well under the handshake's 10 s and the default connect_timeout's 30 s: the first
    # bytes tell.
    with anyio.fail_after(3), pytest.raises(InitializationError) as refused:
        async with Global("probe", registry=CallbackRegistry(), **server.options):
            pass
    message = str(refused.value)
    assert f"the server at {server.address} answered {said}" in message
    assert "not the daffi protocol" in message
    if said == "with a TLS record":
        assert "requires TLS" in message
    else:
        assert "is this a daffi controller?" in message


async def test_the_server_is_named_even_when_it_answers_before_it_reads(
    serve: Callable[[Reply], Awaitable[Server]],
) -> None:
    server = await serve(answering(b"SSH-2.0-OpenSSH_9.6\r\n", read_first=False))
    with anyio.fail_after(3), pytest.raises(InitializationError) as refused:
        async with Global("probe", registry=CallbackRegistry(), **server.options):
            pass
    assert f"{server.address} answered with 'SSH-2.0-OpenSSH_9.6'" in str(refused.value)


async def shake_hands_with(server: Server, timeout: float, max_frame_size: int) -> None:
    """A node's handshake with ``server`` (a Global's is bounded by its 10 s)."""
    conn = Connection(await server.connect(), max_frame_size=max_frame_size, peer="the controller")
    try:
        await Introduction("probe", timeout=timeout).shake_hands(conn, (), server.address)
    finally:
        await conn.aclose()


async def test_a_server_that_says_nothing_still_times_out_as_before(
    serve: Callable[[Reply], Awaitable[Server]],
) -> None:
    server = await serve(silent())
    with (
        anyio.fail_after(5),
        pytest.raises(ProtocolError, match=r"^the controller did not answer the handshake$"),
    ):
        await shake_hands_with(server, timeout=0.3, max_frame_size=1 << 20)


async def test_a_daffi_frame_over_the_nodes_limit_is_not_called_foreign(
    serve: Callable[[Reply], Awaitable[Server]],
) -> None:
    welcome = bytes(
        encode_frame(Welcome(PROTOCOL_VERSION, "ctrl", "msgpack", channel_token=bytes(200)))
    )
    server = await serve(answering(welcome))
    with anyio.fail_after(5), pytest.raises(ProtocolError) as failed:
        await shake_hands_with(server, timeout=5, max_frame_size=64)
    assert "over the limit of 64 bytes (max_frame_size)" in str(failed.value)
    assert not isinstance(failed.value, InitializationError)


# ---------------------------------------------------------------- no controller at all


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Warnings(logging.Handler):
    """Records the warnings of ``daffi.node`` and wakes the test at the first one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.first = anyio.Event()  # set in daffi's loop: the test's own

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.first.set()


@pytest.fixture
def node_warnings() -> Iterator[Warnings]:
    handler = Warnings()
    logger = logging.getLogger("daffi.node")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("where", ["tcp", "unix", "unix-no-dir"])
async def test_a_node_without_a_controller_says_so_at_once_and_gives_up_at_connect_timeout(
    where: str, sock_dir: str, node_warnings: Warnings
) -> None:
    if where == "tcp":
        port = free_tcp_port()
        options: dict[str, Any] = {"host": "127.0.0.1", "port": port}
        address = f"tcp://127.0.0.1:{port}"
    else:
        directory = Path(sock_dir) if where == "unix" else Path(sock_dir) / "not" / "made"
        options = {"unix_sock_path": str(directory)}
        address = f"unix://{directory / 'daffi.sock'}"
    failures: list[InitializationError] = []

    async def start() -> None:
        with pytest.raises(InitializationError) as failed:
            async with Global(
                "lonely",
                registry=CallbackRegistry(),
                connect_timeout=3,
                **options,
            ):
                pass
        failures.append(failed.value)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(start)
            with anyio.fail_after(2):  # not after connect_timeout: at once
                await node_warnings.first.wait()
            assert not failures  # the node is still trying when it says so

    warning = node_warnings.messages[0]
    assert f"controller at {address} is not reachable" in warning
    assert "nothing listens there; is it running?" in warning
    assert "keeps trying for up to 3 s (connect_timeout)" in warning
    assert "Global(connect_timeout=...)" in warning
    error = str(failures[0])
    assert address in error
    assert re.search(r"within 3(\.0)? s \(connect_timeout\)", error), error
