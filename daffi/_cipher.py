"""TLS as daffi applies it: one connection's TLS state, used at the byte boundary of every
path a frame takes.

daffi does not hide a TLS connection behind a stream wrapper. It keeps the connection's TLS
state (:class:`Cipher`: an ``ssl.SSLObject`` over two memory BIOs) next to the plain socket,
and every path seals what it writes and opens what it reads with it: the loop's writer and
reader, other threads writing straight to the socket, and a thread the connection is handed
to (:class:`TlsSocket`). So a TLS connection keeps the fast paths of a plain one, and no
byte reaches the socket unsealed. Records are sealed in the order frames are queued (under
the connection's lock), which is the order they are written.

The policy (which contexts, who checks what, what a failure means) is :mod:`daffi._tls`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import Any

import anyio
import anyio.abc

from daffi.exceptions import ProtocolError

__all__ = ["Cipher", "TlsAlert", "TlsSocket", "handshake"]

# plaintext read from the TLS state at a time
_READ_CHUNK = 256 * 1024
# plaintext sealed per TlsSocket.send, so a large frame is not all sealed before any is sent
_SEAL_CHUNK = 256 * 1024


class TlsAlert(ProtocolError):
    """The peer ended the TLS session with an alert (it refused this end's certificate, or
    its lack of one: with TLS 1.3 a client learns it only after the handshake)."""


class Cipher:
    """The TLS state of one connection, safe to use from several threads.

    OpenSSL does not allow reading and writing one connection from two threads at once, so
    both take the cipher's lock. Protocol output that reading produces (a key update, for
    instance) waits in the outgoing BIO and leaves with the next :meth:`seal`, in order.
    """

    def __init__(self, ssl_object: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO):
        self._ssl = ssl_object
        self._in = incoming
        self._out = outgoing
        self._lock = threading.Lock()
        #: the peer closed the TLS session (close_notify): nothing more can be read
        self.ended = False

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        """``data`` as TLS records, after whatever protocol output was waiting."""
        with self._lock:
            if data:
                self._ssl.write(data)
            return self._out.read()

    def open(self, records: bytes | bytearray | memoryview) -> bytes:
        """The plaintext of ``records`` (and of records received before, not opened yet);
        a partial record waits for the rest.

        Raises:
            ssl.SSLError: the records are not valid TLS for this connection.
        """
        with self._lock:
            if records:
                self._in.write(records)
            chunks: list[bytes] = []
            while not self.ended:
                try:
                    chunk = self._ssl.read(_READ_CHUNK)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    self.ended = True
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @property
    def output_pending(self) -> bool:
        """Protocol output waits to be sent (see :meth:`seal` with no data)."""
        return self._out.pending > 0

    def peer_certificate(self) -> dict[str, Any] | None:
        """The peer's verified certificate, decoded (None: it sent none)."""
        return self._ssl.getpeercert() or None


async def handshake(
    stream: anyio.abc.ByteStream,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    hostname: str | None = None,
) -> Cipher:
    """Run the TLS handshake over ``stream`` (a plain byte stream); the connection's
    cipher. Records received past the handshake stay in it, to be opened first.

    A failure sends the alert that says why to the peer before it raises.

    Raises:
        ssl.SSLError: the handshake failed (a certificate refused, not TLS...).
        anyio.EndOfStream, anyio.BrokenResourceError: the peer closed the connection.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    ssl_object = context.wrap_bio(
        incoming, outgoing, server_side=server_side, server_hostname=hostname
    )
    while True:
        try:
            ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            done = False
        except ssl.SSLError:
            if outgoing.pending:
                with (
                    anyio.move_on_after(1),
                    contextlib.suppress(
                        anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
                    ),
                ):
                    await stream.send(outgoing.read())
            raise
        else:
            done = True
        if outgoing.pending:
            await stream.send(outgoing.read())
        if done:
            return Cipher(ssl_object, incoming, outgoing)
        incoming.write(await stream.receive())


class TlsSocket:
    """A non-blocking socket with TLS, for a thread a connection is handed to (a served
    call channel): what it reads and writes is plaintext, sealed and opened with the
    connection's :class:`Cipher`.

    Beside a socket's ``recv``, ``recv_into`` and ``send`` it has what a thread waiting in
    ``poll`` must also look at: :attr:`buffered`, plaintext already opened (the socket will
    not poll readable for it), and :attr:`unsent`, records sealed but not yet taken by the
    socket (:meth:`flush` them when it polls writable).
    """

    def __init__(self, sock: socket.socket, cipher: Cipher) -> None:
        self._sock = sock
        self._cipher = cipher
        self._plain = bytearray()
        self._records = bytearray()  # sealed, not yet sent

    @property
    def buffered(self) -> bool:
        """Plaintext was opened and not yet read."""
        return bool(self._plain)

    @property
    def unsent(self) -> bool:
        """Records wait to be written (see :meth:`flush`)."""
        return bool(self._records)

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        if flag:
            raise ValueError("a TlsSocket is non-blocking")
        self._sock.setblocking(False)

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes of plaintext; ``b""`` when the peer closed the connection.

        Raises:
            BlockingIOError: none is there yet.
            OSError: the socket failed, or what arrived is not valid TLS.
        """
        self._fill()
        data = bytes(self._plain[:size])
        del self._plain[:size]
        return data

    def recv_into(self, buffer: memoryview) -> int:
        """Like :meth:`recv`, into ``buffer``; 0 when the peer closed the connection."""
        self._fill()
        count = min(len(buffer), len(self._plain))
        buffer[:count] = self._plain[:count]
        del self._plain[:count]
        return count

    def _fill(self) -> None:
        # Plaintext is there, or the end of the connection, or an error (BlockingIOError:
        # nothing yet). A partial record is no data: read on.
        while not self._plain:
            if self._cipher.ended:
                return
            records = self._sock.recv(_READ_CHUNK)
            if not records:
                return
            try:
                self._plain += self._cipher.open(records)
            except ssl.SSLError as exc:
                raise OSError(f"invalid TLS record: {exc}") from exc
            if self._cipher.output_pending:
                self._records += self._cipher.seal(b"")

    def send(self, data: memoryview | bytes | bytearray) -> int:
        """Seal some of ``data`` and write what the socket takes; returns how much of
        ``data`` was taken (sealed), the rest of its records wait (:attr:`unsent`).

        Raises:
            BlockingIOError: earlier records still wait for room: nothing was taken.
            OSError: the socket failed.
        """
        if self._records and not self.flush():
            raise BlockingIOError
        chunk = data[:_SEAL_CHUNK]
        self._records += self._cipher.seal(chunk)
        self.flush()
        return len(chunk)

    def flush(self) -> bool:
        """Write the records waiting, as far as the socket takes them; True if none is
        left.

        Raises:
            OSError: the socket failed.
        """
        while self._records:
            try:
                sent = self._sock.send(self._records)
            except (BlockingIOError, InterruptedError):
                return False
            del self._records[:sent]
        return True

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()
