"""Chaos harness, its instruments: how it watches the controller and talks to it by hand.

Part of the real-process chaos harness (issue 11, see ``_chaos_network.py`` and
``_chaos_attacks.py``). This module holds what the other two build on:

- :class:`ChaosError`, raised when the harness cannot run an attack;
- the controller's measurements: its RSS (VmRSS in ``/proc/<pid>/status``, :func:`rss_mib`),
  its open descriptors (:func:`open_fds`) and a :class:`Sampler` taking both every 50 ms in
  a thread;
- the protocol by hand: :class:`RawPeer`, a blocking raw connection to the controller's Unix
  socket that sends whatever frames an attack builds, the payload helpers
  (:func:`args_payload`, :func:`value_payload`), :func:`trickle_closed` (for a raw socket
  trickling a frame: has the controller closed it?), and :func:`echo_round_trip`, the check
  that the controller still routes (a fresh node's ``echo`` round trip through it).

Nothing here asserts timings or memory: those are figures to report.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from daffi._codec import PayloadCodec
from daffi._frames import DEFAULT_MAX_FRAME_SIZE, encode_frame, first_frame
from daffi._protocol import (
    PROTOCOL_VERSION,
    Bye,
    Call,
    CallbackInfo,
    Error,
    Hello,
    Message,
    Result,
    Welcome,
)

__all__ = [
    "ChaosError",
    "RawPeer",
    "Sampler",
    "args_payload",
    "echo_round_trip",
    "open_fds",
    "rss_mib",
    "socket_path",
    "trickle_closed",
    "value_payload",
]

_codec = PayloadCodec()
_probes = itertools.count(1)


class ChaosError(AssertionError):
    """The harness could not run an attack: a program died, or a line never came."""


# -- measuring the controller ----------------------------------------------------------------


def rss_mib(pid: int) -> float | None:
    """The resident set size of process ``pid`` in MiB (VmRSS), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def open_fds(pid: int) -> int | None:
    """How many file descriptors process ``pid`` has open, or None if it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Sampler:
    """Samples a process's RSS and open descriptors every ``interval`` s in a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0.0
        self.peak_fds = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> None:
        rss = rss_mib(self.pid)
        fds = open_fds(self.pid)
        if rss is not None:
            self.peak_rss = max(self.peak_rss, rss)
            self.samples += 1
        if fds is not None:
            self.peak_fds = max(self.peak_fds, fds)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# -- the protocol by hand --------------------------------------------------------------------


def args_payload(*args: Any, **kwargs: Any) -> msgspec.Raw:
    """A call's payload, as a real node encodes ``f(*args, **kwargs)``."""
    return msgspec.Raw(_codec.encode_args(args, kwargs))


def value_payload(value: Any) -> msgspec.Raw:
    """A result's or a stream item's payload, as a real node encodes ``value``."""
    return msgspec.Raw(_codec.encode_value(value))


def socket_path(sock_dir: str) -> str:
    return str(Path(sock_dir) / "daffi.sock")


class RawPeer:
    """One blocking raw connection to the controller's Unix socket (the harness's attacker).

    The synchronous twin of ``tests/integration/_raw.RawPeer``: it sends whatever frames an
    attack builds and reads what the controller sends back.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()

    @classmethod
    def connect(cls, sock_dir: str, timeout: float = 10.0) -> RawPeer:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path(sock_dir))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    @classmethod
    def join(
        cls,
        sock_dir: str,
        name: str,
        callbacks: tuple[CallbackInfo, ...] = (),
        timeout: float = 10.0,
    ) -> RawPeer:
        """Connect, say ``Hello`` as node ``name`` and wait for the ``Welcome``."""
        peer = cls.connect(sock_dir, timeout)
        try:
            peer.send(Hello(PROTOCOL_VERSION, name, ("msgpack",), callbacks))
            welcome = peer.receive(timeout)
        except BaseException:
            peer.close()
            raise
        if not isinstance(welcome, Welcome):
            peer.close()
            raise ChaosError(f"the controller answered {name!r}'s Hello with {welcome!r}")
        return peer

    def send(self, *messages: Message) -> None:
        """Send ``messages`` in one write."""
        self.send_bytes(b"".join(bytes(encode_frame(msg)) for msg in messages))

    def send_bytes(self, data: bytes, timeout: float = 10.0) -> None:
        """Send ``data``, waiting at most ``timeout`` s for the controller to read it."""
        self.sock.settimeout(timeout)
        self.sock.sendall(data)

    def receive(self, timeout: float = 10.0) -> Message:
        """The next message from the controller.

        Raises:
            EOFError: the controller closed the connection.
            TimeoutError: nothing whole came in ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            taken = first_frame(self._buf, DEFAULT_MAX_FRAME_SIZE, "the controller")
            if taken is not None:
                del self._buf[: len(taken[1])]
                return taken[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message from the controller")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 16)
            except (ConnectionError, BrokenPipeError):
                raise EOFError from None
            except TimeoutError:
                raise TimeoutError("no message from the controller") from None
            if not chunk:
                raise EOFError
            self._buf += chunk

    def receive_until(self, kinds: type | tuple[type, ...], timeout: float = 10.0) -> Any:
        """The next message of type ``kinds``, skipping others (directory news, pings)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.receive(max(deadline - time.monotonic(), 0.001))
            if isinstance(msg, kinds):
                return msg

    def closed_by_controller(self, timeout: float = 5.0) -> bool:
        """Read until the controller closes the connection (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.receive(max(deadline - time.monotonic(), 0.001))
        except EOFError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def trickle_closed(sock: socket.socket) -> bool:
    """Send one more byte of a frame being trickled (``sock`` non-blocking): True if the
    controller closed the connection."""
    try:
        sock.send(b"\x00")
    except BlockingIOError:
        pass
    except OSError:
        return True
    try:
        while sock.recv(1 << 16):  # directory news
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True  # recv returned b"": closed


def echo_round_trip(sock_dir: str, timeout: float = 10.0) -> str | None:
    """Join as a fresh node, call ``echo`` once and check the answer.

    Returns None when the round trip succeeded, else why it did not.
    """
    name = f"probe-{os.getpid()}-{next(_probes)}"
    value = secrets.token_hex(8)
    try:
        peer = RawPeer.join(sock_dir, name, timeout=timeout)
    except (OSError, EOFError, ChaosError) as exc:
        return f"could not join: {exc!r}"
    try:
        peer.send(Call(1, "echo", args_payload(value), name, timeout=timeout))
        reply = peer.receive_until((Result, Error), timeout)
        if isinstance(reply, Error):
            return f"echo failed: {reply.error!r}"
        got = msgspec.msgpack.decode(reply.payload)
        if got != value:
            return f"echo({value!r}) returned {got!r}"
        with contextlib.suppress(OSError):
            peer.send(Bye("probe done"))
        return None
    except (OSError, EOFError, TimeoutError) as exc:
        return f"no answer: {exc!r}"
    finally:
        peer.close()
