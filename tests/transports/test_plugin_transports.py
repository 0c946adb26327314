"""Transports that change the bytes (a plugin, TLS) see every frame; plain sockets stay fast.

A transport declares ``PLAIN_SOCKET`` when its streams are plain sockets carrying daffi's
frames unchanged; only then may a connection bypass its stream (direct writes, the asyncio
reader, call, work and served channels). ``xor+unix://`` (``_xor_plugin.py``), loaded through
the real ``daffi.transports`` entry-point group, XORs every byte: a frame written to its
socket by anything but the plugin's ``send`` arrives as garbage. It subclasses the unix
transport and its streams expose ``raw_socket``, so nothing but the capability rule keeps
daffi off the socket. ``tls+tcp://`` wraps tcp in anyio's TLS, which passes ``raw_socket``
through too.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.abc
import anyio.to_thread
import pytest
from anyio.streams.tls import TLSListener, TLSStream

import daffi._backends
from daffi import Global
from daffi._backends import TESTED_ANYIO, anyio_internals_known
from daffi._frames import FrameReader
from daffi._local_link import LocalConnection
from daffi._protocol import Call, Result
from daffi.decorators import alias, fetcher
from daffi.registry import CallbackRegistry
from daffi.transports import (
    PLAIN_SOCKET,
    Address,
    Listening,
    MemoryTransport,
    TcpTransport,
    Transport,
    UnixTransport,
    _registry,
    get_transport,
    register_transport,
)

from . import _xor_plugin
from ._xor_plugin import TRAFFIC, XorStream, XorUnixTransport

pytestmark = pytest.mark.timeout(60)

BACKENDS = ["asyncio", "trio"]
WHERE = ["callee", "third"]  # the controller runs in the callee's process, or in a third one

# Small values, bytes that are the XOR key, and a frame large enough for the large-read paths.
PAYLOADS: list[Any] = [0, "text", b"\x00\x5a" * 10, list(range(100)), b"z" * 300_000]


@fetcher
def echo(x):
    pass


@alias("echo")
@fetcher
async def echo_async(x):
    pass


def echo_cb(x: Any) -> Any:
    return x


def _registry_with_echo() -> CallbackRegistry:
    registry = CallbackRegistry()
    registry.add(echo_cb, "echo")
    return registry


# ---------------------------------------------------------------- the plugin, via entry points


@pytest.fixture
def xor_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Install ``xor+unix`` as a distribution declaring a ``daffi.transports`` entry point
    (a ``.dist-info`` directory on ``sys.path``), so the registry finds and loads it the way
    it loads any installed plugin."""
    site = tmp_path / "site"
    dist_info = site / "daffi_xor_test_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: daffi-xor-test-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{_registry.ENTRY_POINT_GROUP}]\n"
        f"xor+unix = {_xor_plugin.__name__}:{XorUnixTransport.__name__}\n"
    )
    monkeypatch.syspath_prepend(str(site))
    # The registry scans the installed distributions once per process: make it scan again
    # (now with the plugin), and forget it again afterwards.
    monkeypatch.setattr(_registry, "_entry_points", None)
    monkeypatch.setattr(_registry, "_registered", {})
    monkeypatch.setattr(_registry, "_instances", {})
    TRAFFIC.clear()
    yield
    TRAFFIC.clear()


def test_the_plugin_is_found_through_its_entry_point(xor_plugin: None) -> None:
    transport = get_transport("xor+unix")
    assert type(transport) is XorUnixTransport
    assert _registry._plugin_entry_points()["xor+unix"].value.endswith(":XorUnixTransport")
    # A subclass of the unix transport, but it declares nothing: capabilities are not
    # inherited, so its connections never bypass its streams.
    assert transport.capabilities == frozenset()


def test_which_transports_declare_plain_sockets() -> None:
    assert PLAIN_SOCKET in TcpTransport.capabilities
    assert PLAIN_SOCKET in UnixTransport.capabilities
    assert MemoryTransport.capabilities == frozenset()
    assert XorUnixTransport.capabilities == frozenset()
    assert TlsTcpTransport.capabilities == frozenset()

    class FasterUnix(UnixTransport):  # changes nothing about the bytes, and says so
        capabilities: ClassVar[frozenset[str]] = frozenset({PLAIN_SOCKET})

    class ThirdParty(Transport):
        scheme = "third"

        async def connect(self, address: Address) -> anyio.abc.ByteStream:
            raise NotImplementedError

        async def listen(self, address: Address) -> Listening:
            raise NotImplementedError

    assert PLAIN_SOCKET in FasterUnix.capabilities
    assert ThirdParty.capabilities == frozenset()


# ---------------------------------------------------------------- networks of Globals


def _never_raw(everyone: list[Global]) -> None:
    """No connection of these Globals may bypass its stream, and no channel exists."""
    links = 0
    for g in everyone:
        node = g._runtime.node
        if node is not None:
            assert node.channels is None, f"{g.process_name} opened call channels"
            conn = node.conn
            if not isinstance(conn, LocalConnection):
                assert conn is not None
                assert conn.plain_socket is False
                assert conn.detach_socket() is None
                links += 1
        controller = g._runtime.controller
        if controller is not None:
            assert controller.channels.served_threads == 0
            for peer in controller.peers.values():
                assert not peer.channels
                if not isinstance(peer.conn, LocalConnection):
                    assert peer.conn.plain_socket is False
                    links += 1
    assert links >= 2  # at least the caller's end and the controller's end


def _frames(streams: list[XorStream], direction: str, kind: type, name: str = "echo") -> int:
    """How many ``kind`` frames went through the plugin's streams in ``direction``."""
    count = 0
    for stream in streams:
        data = stream.sent if direction == "sent" else stream.received
        reader = FrameReader(1 << 30, "test", bytes(data))
        while (taken := reader.next_frame()) is not None:
            msg = taken[0]
            if isinstance(msg, kind) and (not isinstance(msg, Call) or msg.name == name):
                count += 1
    return count


def _assert_all_frames_went_through_the_plugin(calls: int) -> None:
    ends = [s for s in TRAFFIC if s.side == "connect"]
    accepted = [s for s in TRAFFIC if s.side == "accept"]
    assert ends
    assert accepted
    # Every call left the caller through the plugin, reached the controller through it, and
    # every result came back the same way (the callee's own link, when it has one, too).
    assert _frames(ends, "sent", Call) == calls
    assert _frames(accepted, "received", Call) == calls
    assert _frames(accepted, "sent", Result) == calls
    assert _frames(ends, "received", Result) == calls


@asynccontextmanager
async def network(address: str, where: str, **options: Any) -> AsyncIterator[list[Global]]:
    """The caller (first), the callee offering ``echo``, and maybe a third Global with the
    controller, all in the test's loop."""
    async with AsyncExitStack() as stack:
        everyone: list[Global] = []
        if where == "third":
            ctrl = Global("ctrl", init_controller=True, init_node=False, address=address)
            everyone.append(await stack.enter_async_context(ctrl))
            address = str(ctrl.address)  # the port actually bound (tcp port 0)
            callee = Global("callee", address=address, registry=_registry_with_echo(), **options)
        else:
            callee = Global(
                "callee",
                init_controller=True,
                address=address,
                registry=_registry_with_echo(),
                **options,
            )
        everyone.append(await stack.enter_async_context(callee))
        caller = Global("caller", address=str(callee.address), registry=CallbackRegistry())
        everyone.insert(0, await stack.enter_async_context(caller))
        await caller.wait_function_async("echo", timeout=10)
        yield everyone


async def _call_both_ways(caller: Global) -> int:
    """Each payload from an async caller, then from a plain thread; returns the calls made."""
    with caller.as_current():
        for value in PAYLOADS:
            assert await echo_async(value) == value

    def from_a_thread() -> list[Any]:
        with caller.as_current():
            return [echo(value) for value in PAYLOADS]

    assert await anyio.to_thread.run_sync(from_a_thread) == PAYLOADS
    return 2 * len(PAYLOADS)


@pytest.mark.anyio
@pytest.mark.parametrize("where", WHERE)
async def test_a_plugin_that_transforms_bytes_sees_every_frame(
    xor_plugin: None, socket_dir: Path, where: str
) -> None:
    with anyio.fail_after(30):
        async with network(f"xor+unix://{socket_dir}/x.sock", where) as everyone:
            calls = await _call_both_ways(everyone[0])
            _never_raw(everyone)
    _assert_all_frames_went_through_the_plugin(calls)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_plugin_that_transforms_bytes_in_background_threads(
    xor_plugin: None, socket_dir: Path, backend: str, where: str
) -> None:
    """Globals in their own threads (the sync face): a ``def`` fetcher from a plain thread,
    the callee offering a ``def`` callback (which would open a work channel, and make its
    controller serve call channels in threads, over a plain socket)."""
    address = f"xor+unix://{socket_dir}/x.sock"
    started: list[Global] = []
    try:
        if where == "third":
            started.append(
                Global(
                    "ctrl", init_controller=True, init_node=False, address=address, backend=backend
                )
            )
            started.append(
                Global("callee", address=address, registry=_registry_with_echo(), backend=backend)
            )
        else:
            started.append(
                Global(
                    "callee",
                    init_controller=True,
                    address=address,
                    registry=_registry_with_echo(),
                    backend=backend,
                )
            )
        caller = Global("caller", address=address, registry=CallbackRegistry(), backend=backend)
        started.append(caller)
        caller.wait_function("echo", timeout=10)
        with caller.as_current():
            for _ in range(3):
                assert [echo(value) for value in PAYLOADS] == PAYLOADS
        _never_raw(started)
    finally:
        for g in reversed(started):
            g.stop()
    _assert_all_frames_went_through_the_plugin(3 * len(PAYLOADS))


# ---------------------------------------------------------------- TLS over tcp


class TlsTcpTransport(TcpTransport):
    """``tls+tcp://host:port``: tcp wrapped in anyio's TLS (which passes ``raw_socket``
    through). Declares no capability, as its parent's promise no longer holds."""

    scheme = "tls+tcp"
    server_context: ClassVar[ssl.SSLContext | None] = None
    client_context: ClassVar[ssl.SSLContext | None] = None

    async def connect(self, address: Address) -> anyio.abc.ByteStream:
        stream = await super().connect(address)
        return await TLSStream.wrap(
            stream,
            hostname=address.host,
            ssl_context=self.client_context,
            standard_compatible=False,
        )

    async def listen(self, address: Address) -> Listening:
        assert self.server_context is not None
        inner = await super().listen(address)
        listener = TLSListener(inner.listener, self.server_context, standard_compatible=False)
        return Listening(
            listener=listener,
            address=Address(scheme=self.scheme, host=inner.address.host, port=inner.address.port),
        )


@pytest.fixture
def tls_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    monkeypatch.setattr(TlsTcpTransport, "server_context", server)
    monkeypatch.setattr(TlsTcpTransport, "client_context", client)
    monkeypatch.setattr(_registry, "_registered", {})
    monkeypatch.setattr(_registry, "_instances", {})
    register_transport("tls+tcp", TlsTcpTransport)


@pytest.mark.anyio
@pytest.mark.parametrize("where", WHERE)
async def test_tls_streams_are_never_written_raw(tls_transport: None, where: str) -> None:
    """A frame written to the socket under TLS would break the peer's TLS session."""
    with anyio.fail_after(30):
        async with network("tls+tcp://127.0.0.1:0", where) as everyone:
            await _call_both_ways(everyone[0])
            _never_raw(everyone)
            conn = everyone[0]._runtime.node.conn  # type: ignore[union-attr]
            assert isinstance(conn.stream, TLSStream)  # type: ignore[union-attr]


# ---------------------------------------------------------------- plain sockets stay fast


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", ["unix", "tcp"])
async def test_plain_socket_transports_keep_their_fast_paths(
    socket_dir: Path, scheme: str, anyio_backend: str
) -> None:
    address = f"unix://{socket_dir}/p.sock" if scheme == "unix" else "tcp://127.0.0.1:0"
    with anyio.fail_after(30):
        async with network(address, "third") as everyone:
            caller = everyone[0]
            await _call_both_ways(caller)
            node = caller._runtime.node
            assert node is not None
            conn = node.conn
            assert conn is not None
            assert not isinstance(conn, LocalConnection)
            assert conn.plain_socket is True
            assert conn._direct.can_write
            # The asyncio reader replaces anyio's protocol (the installed anyio is tested).
            assert (conn._reader is not None) == (anyio_backend == "asyncio")
            assert node.channels is not None  # the thread's calls used a call channel
            assert node.channels._all


@pytest.mark.anyio
async def test_untested_anyio_internals_fall_back_to_the_public_stream_path(
    socket_dir: Path, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an anyio outside the tested range, asyncio connections use anyio's public
    stream API only (no reader, no direct writes); trio's direct path is public API."""
    monkeypatch.setattr(daffi._backends, "anyio_internals_known", lambda: False)
    with anyio.fail_after(30):
        async with network(f"unix://{socket_dir}/f.sock", "third") as everyone:
            await _call_both_ways(everyone[0])
            conn = everyone[0]._runtime.node.conn  # type: ignore[union-attr]
            assert conn.plain_socket is True  # type: ignore[union-attr]
            assert conn._reader is None  # type: ignore[union-attr]
            assert conn._direct.can_write == (anyio_backend == "trio")  # type: ignore[union-attr]


def test_the_installed_anyio_is_in_the_tested_range() -> None:
    assert anyio_internals_known()


@pytest.mark.parametrize(
    ("version", "known"),
    [("4.10.0", False), ("4.11.0", True), ("4.16.0", True), ("4.99", True), ("5.0.0", False)],
)
def test_the_anyio_version_guard(
    monkeypatch: pytest.MonkeyPatch, version: str, known: bool
) -> None:
    import daffi._backends

    assert TESTED_ANYIO == ((4, 11), (5, 0))
    major, minor = (int(part) for part in version.split(".")[:2])
    monkeypatch.setattr(daffi._backends, "installed_anyio_version", lambda: (major, minor))
    assert anyio_internals_known.__wrapped__() is known  # type: ignore[attr-defined]


def test_the_installed_anyio_version_is_read_without_importlib_metadata() -> None:
    import importlib.metadata

    import daffi._backends

    expected = tuple(int(part) for part in importlib.metadata.version("anyio").split(".")[:2])
    assert daffi._backends.installed_anyio_version() == expected
