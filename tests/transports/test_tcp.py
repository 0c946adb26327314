"""TCP transport specifics: exact binding, port reporting, port-in-use errors, NODELAY."""

from __future__ import annotations

import errno
import socket
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.stapled import MultiListener

from daffi.transports import Address, TcpTransport, tcp

from ._helpers import echo, receive_exactly, serving

pytestmark = pytest.mark.anyio

LOOPBACK = Address(scheme="tcp", host="127.0.0.1", port=0)


def _bound_addresses(listener: anyio.abc.Listener[anyio.abc.ByteStream]) -> list[tuple[str, int]]:
    """(host, port) of every socket behind a TCP listener."""
    assert isinstance(listener, MultiListener)
    addresses: list[tuple[str, int]] = []
    for inner in listener.listeners:
        local = inner.extra(anyio.abc.SocketAttribute.local_address)
        assert isinstance(local, tuple)
        addresses.append((local[0], local[1]))
    return addresses


async def test_binds_only_the_given_host_and_reports_the_real_port() -> None:
    with anyio.fail_after(10):
        async with await TcpTransport().listen(LOOPBACK) as listening:
            port = listening.address.port
            assert port is not None
            assert port > 0
            assert listening.address == Address(scheme="tcp", host="127.0.0.1", port=port)
            # One socket, on loopback only: never widened to 0.0.0.0 or "::".
            assert _bound_addresses(listening.listener) == [("127.0.0.1", port)]


async def test_port_in_use_names_the_address() -> None:
    transport = TcpTransport()
    with anyio.fail_after(10):
        async with await transport.listen(LOOPBACK) as first:
            with pytest.raises(OSError, match="already in use") as info:
                await transport.listen(first.address)
            assert info.value.errno == errno.EADDRINUSE
            assert str(first.address) in str(info.value)


async def test_host_with_several_addresses_gets_one_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name resolving to 127.0.0.1 and ::1 is bound on both, on the same port."""
    addresses: list[tuple[socket.AddressFamily, tcp._SockAddr]] = [
        (socket.AF_INET, ("127.0.0.1", 0)),
        (socket.AF_INET6, ("::1", 0, 0, 0)),
    ]

    async def fake_resolve(
        host: str, port: int
    ) -> list[tuple[socket.AddressFamily, tcp._SockAddr]]:
        assert host == "localhost"
        return [(family, (sockaddr[0], port, *sockaddr[2:])) for family, sockaddr in addresses]

    monkeypatch.setattr(tcp, "_resolve", fake_resolve)
    with anyio.fail_after(10):
        address = Address(scheme="tcp", host="localhost", port=0)
        async with await TcpTransport().listen(address) as listening:
            port = listening.address.port
            assert listening.address == Address(scheme="tcp", host="localhost", port=port)
            bound = _bound_addresses(listening.listener)
            # ::1 is skipped (not an error) where IPv6 is unavailable.
            assert bound[0] == ("127.0.0.1", port)
            assert {p for _, p in bound} == {port}
            assert len(bound) in (1, 2)


async def test_connections_use_tcp_nodelay() -> None:
    server_nodelay: list[int] = []

    async def record_nodelay(stream: anyio.abc.ByteStream) -> None:
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        server_nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        await echo(stream)

    transport = TcpTransport()
    with anyio.fail_after(10):
        async with (
            serving(LOOPBACK, record_nodelay) as listening,
            await transport.connect(listening.address) as stream,
        ):
            sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            await stream.send(b"x")
            assert await receive_exactly(stream, 1) == b"x"
    assert server_nodelay
    assert server_nodelay[0] != 0


async def test_connect_refused_keeps_the_error_type() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = Address(scheme="tcp", host="127.0.0.1", port=port)
    with anyio.fail_after(5), pytest.raises(ConnectionRefusedError, match=str(address)):
        await TcpTransport().connect(address)


@pytest.mark.parametrize(
    "address",
    [
        Address(scheme="tcp", port=8888),
        Address(scheme="tcp", host="127.0.0.1"),
        Address(scheme="tcp", host="", port=8888),
    ],
)
async def test_missing_host_or_port_is_rejected(address: Address) -> None:
    with anyio.fail_after(5), pytest.raises(ValueError, match="needs a host and a port"):
        await TcpTransport().listen(address)


async def test_connect_to_port_zero_is_rejected() -> None:
    with anyio.fail_after(5), pytest.raises(ValueError, match="port 0"):
        await TcpTransport().connect(LOOPBACK)


async def test_bind_now_knows_the_port_before_the_loop_serves_it() -> None:
    """What a controller created inside a running loop does: bind in the constructor (no
    loop needed), serve later."""
    transport = TcpTransport()
    bound = transport.bind_now(LOOPBACK)
    assert bound is not None
    assert bound.address.scheme == "tcp"
    assert bound.address.port not in (None, 0)
    with anyio.fail_after(10):
        async with await transport.adopt(bound) as listening, anyio.create_task_group() as tg:
            assert listening.address == bound.address
            tg.start_soon(listening.listener.serve, echo)
            async with await transport.connect(bound.address) as stream:
                await stream.send(b"hi")
                assert await receive_exactly(stream, 2) == b"hi"
            tg.cancel_scope.cancel()


def test_bind_now_names_an_address_in_use() -> None:
    transport = TcpTransport()
    first = transport.bind_now(LOOPBACK)
    assert first is not None
    try:
        with pytest.raises(OSError, match="already in use") as info:
            transport.bind_now(first.address)
        assert info.value.errno == errno.EADDRINUSE
    finally:
        first.close()


def test_a_subclass_that_listens_its_own_way_does_not_bind_ahead() -> None:
    """Binding ahead would serve the plain sockets and skip its own listen (TLS, say)."""

    class Wrapping(TcpTransport):
        scheme = "wrapping"

        async def listen(self, address: Address) -> Any:
            raise NotImplementedError

    assert Wrapping().bind_now(Address(scheme="wrapping", host="127.0.0.1", port=0)) is None
