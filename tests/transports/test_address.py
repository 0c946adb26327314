"""Address text form: parsing, printing and clear errors for garbage."""

from __future__ import annotations

import pytest

from daffi.transports import Address


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("tcp://127.0.0.1:8888", Address(scheme="tcp", host="127.0.0.1", port=8888)),
        ("tcp://localhost:0", Address(scheme="tcp", host="localhost", port=0)),
        ("tcp://[::1]:8888", Address(scheme="tcp", host="::1", port=8888)),
        ("tcp://[fe80::1%eth0]:1", Address(scheme="tcp", host="fe80::1%eth0", port=1)),
        ("unix:///tmp/x/daffi.sock", Address(scheme="unix", path="/tmp/x/daffi.sock")),
        ("unix://relative/daffi.sock", Address(scheme="unix", path="relative/daffi.sock")),
        ("memory://name", Address(scheme="memory", path="name")),
        ("nats://demo.nats.io:4222", Address(scheme="nats", host="demo.nats.io", port=4222)),
        ("nats://host/subject", Address(scheme="nats", host="host", path="/subject")),
        ("my+ws://[::1]:80/a/b", Address(scheme="my+ws", host="::1", port=80, path="/a/b")),
    ],
)
def test_parse_and_str_are_inverses(text: str, address: Address) -> None:
    assert Address.parse(text) == address
    assert str(address) == text
    assert Address.parse(str(address)) == address


def test_scheme_is_case_insensitive() -> None:
    assert Address.parse("TCP://127.0.0.1:1") == Address(scheme="tcp", host="127.0.0.1", port=1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected scheme://"),
        ("127.0.0.1:8888", "expected scheme://"),
        ("://x", "expected scheme://"),
        ("1tcp://x:1", "not a valid scheme"),
        ("tcp://", "expected tcp://host:port"),
        ("tcp://127.0.0.1", "expected tcp://host:port"),
        ("tcp://127.0.0.1:", "is not a number"),
        ("tcp://127.0.0.1:http", "is not a number"),
        ("tcp://127.0.0.1:65536", "is not a number"),
        ("tcp://127.0.0.1:-1", "is not a number"),
        ("tcp://:8888", "missing host"),
        ("tcp://::1:8888", "must be in brackets"),
        ("tcp://[::1:8888", "expected an IPv6 host"),
        ("tcp://[::1]8888", "expected an IPv6 host"),
        ("tcp://127.0.0.1:80/path", "expected tcp://host:port"),
        ("tcp://bad host:80", "whitespace"),
        ("unix://", "expected unix://<socket path>"),
        ("memory://", "expected memory://<name>"),
        ("nats://", "nothing after"),
    ],
)
def test_parse_rejects_garbage_clearly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Address.parse(text)
    assert repr(text) in str(info.value)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(TypeError, match="expected an address string"):
        Address.parse(b"tcp://127.0.0.1:1")  # type: ignore[arg-type]


@pytest.mark.parametrize("port", [-1, 65536, True])
def test_invalid_port_is_rejected(port: int) -> None:
    with pytest.raises(ValueError, match="invalid port"):
        Address(scheme="tcp", host="127.0.0.1", port=port)


def test_invalid_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid address scheme"):
        Address(scheme="TCP")


def test_addresses_are_hashable_values() -> None:
    a = Address(scheme="memory", path="x")
    assert {a: 1}[Address(scheme="memory", path="x")] == 1
    with pytest.raises(AttributeError):
        a.path = "y"  # type: ignore[misc]
