"""What the call-channel and work-channel tests share: a small network of background-thread
Globals over a Unix socket (or TCP), accessors for their internals, and raw-socket helpers
for speaking the wire protocol by hand."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from daffi import Global
from daffi._channel import ChannelPool
from daffi._codec import default_codec
from daffi._controller import Controller
from daffi._frames import _decoder
from daffi._node import Node
from daffi._protocol import Message
from daffi.registry import CallbackRegistry


class Outcome:
    """Runs ``fn`` in a thread; keeps its value or exception and when it ended."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self.value: Any = None
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.value = self._fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.done.set()


class Net:
    """Starts a controller and nodes on one transport; stops them all at teardown."""

    def __init__(self, sock_dir: str) -> None:
        self.sock_dir = sock_dir
        self.transport = "unix"
        self.controller: Global | None = None
        self.started: list[Global] = []

    def _where(self) -> dict[str, Any]:
        if self.transport == "tcp":
            assert self.controller is not None
            return {"host": "127.0.0.1", "port": self.controller.port}
        return {"unix_sock_path": self.sock_dir}

    def start_controller(
        self,
        callbacks: dict[str, Callable[..., Any]] | None = None,
        *,
        name: str = "ctrl",
        backend: str = "asyncio",
        transport: str = "unix",
        **options: Any,
    ) -> Global:
        """The controller, its own node offering ``callbacks``; ``options`` go to ``Global``
        (``workers``, ``max_concurrent_calls``...)."""
        self.transport = transport
        where: dict[str, Any] = (
            {"host": "127.0.0.1", "port": 0}
            if transport == "tcp"
            else {"unix_sock_path": self.sock_dir}
        )
        g = Global(
            name,
            init_controller=True,
            registry=registry_with(callbacks),
            connect_timeout=5,
            backend=backend,
            **where,
            **options,
        )
        self.started.append(g)
        self.controller = g
        return g

    def node(
        self,
        name: str,
        callbacks: dict[str, Callable[..., Any]] | None = None,
        *,
        backend: str = "asyncio",
    ) -> Global:
        g = Global(
            name,
            registry=registry_with(callbacks),
            connect_timeout=5,
            backend=backend,
            **self._where(),
        )
        self.started.append(g)
        return g

    def stop_all(self) -> None:
        for g in reversed(self.started):
            g.stop()


def registry_with(callbacks: dict[str, Callable[..., Any]] | None) -> CallbackRegistry:
    registry = CallbackRegistry()
    for name, func in (callbacks or {}).items():
        registry.add(func, name)
    return registry


def node_of(g: Global) -> Node:
    assert g._runtime.node is not None
    return g._runtime.node


def pool_of(g: Global) -> ChannelPool:
    pool = node_of(g).channels
    assert pool is not None, f"{g!r} has no call channels"
    return pool


def controller_of(g: Global) -> Controller:
    assert g._runtime.controller is not None
    return g._runtime.controller


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def raw_connect(controller: Global) -> socket.socket:
    """A plain blocking socket to the controller's listener."""
    address = controller.address
    if address.scheme == "tcp":
        assert address.host is not None
        assert address.port is not None
        sock = socket.create_connection((address.host, address.port), timeout=2)
    else:
        assert address.path is not None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2)
        sock.connect(address.path)
    return sock


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def read_frame(sock: socket.socket, timeout: float = 2.0) -> Message | None:
    """The next frame from ``sock``, or None if the peer closed the connection."""
    sock.settimeout(timeout)
    header = _recv_exact(sock, 4)
    if header is None:
        return None
    body = _recv_exact(sock, int.from_bytes(header, "big"))
    if body is None:
        return None
    return _decoder.decode(body)


def closed_by_peer(sock: socket.socket, timeout: float = 2.0) -> bool:
    """True if the peer closes ``sock`` within ``timeout`` (frames before that are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            return True  # reset by the peer
        if not chunk:
            return True


def encoded_args(*args: Any) -> msgspec.Raw:
    return msgspec.Raw(default_codec.encode_args(args, {}))
