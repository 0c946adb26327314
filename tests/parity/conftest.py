"""Fixtures of the parity matrix (see ``_net.py``): the wire each cell runs over (a private
Unix socket directory, or TLS on loopback TCP with certificates made once per session), a
private socket directory per test, and a check that no daffi thread outlives its test."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from ._net import LOOPBACK, WIRES, Pki, Wire


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A short private directory for the Unix socket (AF_UNIX paths are ~104 bytes at most)."""
    path = tempfile.mkdtemp(prefix="dfpar-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pki() -> Iterator[Pki]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made by ``trustme``
    for this session and written (each key with its certificate in one PEM file) to a
    private temp directory, removed at the end of the session."""
    directory = Path(tempfile.mkdtemp(prefix="dfpar-pki-"))

    def write(name: str, blob: trustme.Blob) -> str:
        path = directory / name
        blob.write_to_path(str(path))
        return str(path)

    try:
        ca = trustme.CA()
        server = ca.issue_cert(LOOPBACK)
        client = ca.issue_cert("client.daffi.test")
        yield Pki(
            ca=write("ca.pem", ca.cert_pem),
            server=write("server.pem", server.private_key_and_cert_chain_pem),
            client=write("client.pem", client.private_key_and_cert_chain_pem),
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=WIRES)
def wire(request: pytest.FixtureRequest) -> Wire:
    """The wire of the cell (its id, ``unix`` or ``tls``, is in the test's name): a private
    Unix socket directory, or mutual TLS and a token on loopback TCP (see ``_net.py``). The
    certificates are only made when a ``tls`` cell runs."""
    if request.param == "unix":
        return Wire.unix(request.getfixturevalue("sock_dir"))
    return Wire.tls(request.getfixturevalue("pki"))


def _daffi_threads() -> set[threading.Thread]:
    return {
        t for t in threading.enumerate() if t.name.startswith(("daffi", "parity")) and t.is_alive()
    }


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Every daffi thread a test started (loop, worker, channel threads) ends within 5 s of
    the test's Globals stopping, so nothing a failing cell left behind runs into the next."""
    before = _daffi_threads()
    yield
    deadline = time.monotonic() + 5.0
    while True:
        left = _daffi_threads() - before
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"daffi threads still running after the test: {sorted(t.name for t in left)}"
