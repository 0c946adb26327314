"""Finding transports by scheme: built-ins, registrations, entry-point plugins."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import anyio
import anyio.abc
import pytest

import daffi.transports
from daffi.transports import (
    Address,
    Listening,
    MemoryTransport,
    TcpTransport,
    Transport,
    UnixTransport,
    _registry,
    available_schemes,
    get_transport,
    register_transport,
)

from ._helpers import echo, receive_exactly, serving


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let each test register transports without leaking them into other tests."""
    monkeypatch.setattr(_registry, "_registered", {})
    monkeypatch.setattr(_registry, "_instances", {})


class LoopbackTransport(Transport):
    """A third-party-style transport: ``loop://name`` (a host) carried over memory streams."""

    scheme = "loop"

    async def connect(self, address: Address) -> anyio.abc.ByteStream:
        self._check_scheme(address)
        return await MemoryTransport().connect(Address(scheme="memory", path=address.host))

    async def listen(self, address: Address) -> Listening:
        self._check_scheme(address)
        inner = await MemoryTransport().listen(Address(scheme="memory", path=address.host))
        return Listening(listener=inner.listener, address=address)


def test_public_api_is_exactly_what_is_documented() -> None:
    assert sorted(daffi.transports.__all__) == sorted(
        [
            "PLAIN_SOCKET",
            "Address",
            "Listening",
            "MemoryTransport",
            "TcpTransport",
            "Transport",
            "UnixTransport",
            "available_schemes",
            "default_unix_socket_dir",
            "get_transport",
            "memory_stream_pair",
            "register_transport",
        ]
    )
    for name in daffi.transports.__all__:
        assert getattr(daffi.transports, name) is not None


def test_builtins_are_found_and_shared() -> None:
    assert isinstance(get_transport("tcp"), TcpTransport)
    assert isinstance(get_transport("unix"), UnixTransport)
    assert isinstance(get_transport("memory"), MemoryTransport)
    assert get_transport("tcp") is get_transport("tcp")
    assert {"tcp", "unix", "memory"} <= set(available_schemes())
    assert available_schemes() == sorted(available_schemes())


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown transport scheme 'carrier-pigeon'") as info:
        get_transport("carrier-pigeon")
    assert "memory, tcp, unix" in str(info.value)


@pytest.mark.anyio
async def test_registered_transport_is_used_end_to_end(memory_name: str) -> None:
    register_transport("loop", LoopbackTransport)
    assert "loop" in available_schemes()
    assert isinstance(get_transport("loop"), LoopbackTransport)
    address = Address.parse(f"loop://{memory_name}")
    with anyio.fail_after(5):
        async with serving(address, echo) as listening:
            assert listening.address == address
            async with await get_transport(address.scheme).connect(address) as stream:
                await stream.send(b"via plugin")
                assert await receive_exactly(stream, 10) == b"via plugin"


def test_registration_replaces_a_builtin() -> None:
    register_transport("tcp", LoopbackTransport)
    assert isinstance(get_transport("tcp"), LoopbackTransport)


def test_register_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="invalid transport scheme"):
        register_transport("Not A Scheme", LoopbackTransport)
    with pytest.raises(TypeError, match="expects a Transport subclass"):
        register_transport("loop", object)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expects a Transport subclass"):
        register_transport("loop", LoopbackTransport())  # type: ignore[arg-type]


def test_the_project_declares_the_builtin_entry_points() -> None:
    """The installed distribution exposes the built-ins through the plugin group too."""
    declared = _registry._plugin_entry_points()
    assert declared["tcp"].value == "daffi.transports.tcp:TcpTransport"
    assert declared["unix"].value == "daffi.transports.unix:UnixTransport"
    assert declared["memory"].value == "daffi.transports.memory:MemoryTransport"


def _fake_plugins(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    group = _registry.ENTRY_POINT_GROUP
    monkeypatch.setattr(
        _registry,
        "_entry_points",
        {name: EntryPoint(name=name, value=value, group=group) for name, value in values.items()},
    )


def test_entry_point_plugins_load_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_plugins(monkeypatch, loop=f"{__name__}:LoopbackTransport")
    assert "loop" in available_schemes()
    assert isinstance(get_transport("loop"), LoopbackTransport)


def test_broken_plugins_say_which_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_plugins(
        monkeypatch,
        missing="daffi_no_such_module:Transport",
        wrong="daffi.transports:Address",
    )
    with pytest.raises(ImportError, match="daffi_no_such_module"):
        get_transport("missing")
    with pytest.raises(TypeError, match=r"not a daffi\.transports\.Transport subclass"):
        get_transport("wrong")
