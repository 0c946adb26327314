"""A TCP relay on loopback for the security tests: it forwards every connection to an
upstream address, records every byte in both directions, and can cut its connections and
hold new ones (a network outage the test controls).

Threads only (no event loop): the test drives daffi programs in other processes and waits on
their output meanwhile. Every socket and thread the relay starts is closed and joined in
:meth:`Relay.close`.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Recorded", "Relay"]

_CHUNK = 65536


@dataclass
class Recorded:
    """The bytes one direction of one relayed connection carried, in order."""

    connection: int
    #: "up" (client to upstream) or "down" (upstream to client)
    direction: str
    data: bytearray = field(default_factory=bytearray)


class Relay:
    """Listens on ``127.0.0.1:<port>`` and forwards each connection to ``upstream``.

    While :meth:`hold` is in effect, new connections are accepted but not forwarded (their
    bytes wait in the socket) until :meth:`release`.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        #: sockets of the connections being forwarded (cut by hold), and the held ones
        self._live: list[socket.socket] = []
        self._held: list[socket.socket] = []
        #: every socket opened, closed in close() (only shut down before, so that no thread
        #: ever uses a closed descriptor)
        self._sockets: list[socket.socket] = []
        self._recorded: list[Recorded] = []
        self._threads: list[threading.Thread] = []
        self._wake_read, self._wake_write = socket.socketpair()
        self._spawn(self._accept_loop)

    # ------------------------------------------------------------------ the test's controls

    def hold(self) -> None:
        """Cut every connection being forwarded; hold the new ones until :meth:`release`."""
        with self._lock:
            self._open.clear()
            live, self._live = self._live, []
        for sock in live:
            _cut(sock)

    def release(self) -> None:
        """Forward the held connections and the new ones again."""
        self._open.set()

    def held(self) -> int:
        """How many accepted connections wait for :meth:`release`."""
        with self._lock:
            return len(self._held)

    def recorded(self) -> list[Recorded]:
        """Copies of every direction of every connection relayed so far."""
        with self._lock:
            return [Recorded(r.connection, r.direction, bytearray(r.data)) for r in self._recorded]

    def close(self) -> None:
        """Stop accepting, cut every connection, join the relay's threads, close its sockets."""
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        self._open.set()
        self._wake_write.send(b"x")
        for sock in sockets:
            _cut(sock)
        while alive := [thread for thread in self._threads if thread.is_alive()]:
            for thread in alive:
                thread.join(5)
        for sock in [*self._sockets, self._listener, self._wake_read, self._wake_write]:
            sock.close()

    # ------------------------------------------------------------------ threads

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while True:
                ready = [key.fileobj for key, _ in selector.select()]
                if self._wake_read in ready:
                    return
                client, _ = self._listener.accept()
                with self._lock:
                    if self._closed:
                        client.close()
                        return
                    self._held.append(client)
                    self._sockets.append(client)
                self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        while True:
            self._open.wait()
            with self._lock:
                if self._closed:
                    break
                if not self._open.is_set():
                    continue  # held again meanwhile
                self._held.remove(client)
                try:
                    upstream = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    _cut(client)
                    return
                upstream.settimeout(None)
                self._sockets.append(upstream)
                number = len(self._recorded) // 2
                up = Recorded(number, "up")
                down = Recorded(number, "down")
                self._recorded += [up, down]
                self._live += [client, upstream]
            self._spawn(self._pump, client, upstream, up)
            self._spawn(self._pump, upstream, client, down)
            return
        _cut(client)

    def _pump(self, source: socket.socket, sink: socket.socket, record: Recorded) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := source.recv(_CHUNK):
                    with self._lock:
                        record.data += data
                    sink.sendall(data)
        finally:
            # One side gone: the connection is over for both (daffi never half-closes).
            _cut(source)
            _cut(sink)


def _cut(sock: socket.socket) -> None:
    """Shut ``sock`` down: its peer sees the connection end, and a thread blocked in
    ``recv`` on it wakes up (it is closed later, by :meth:`Relay.close`)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
