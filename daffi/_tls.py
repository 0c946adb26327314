"""TLS around any stream transport: the contexts ``Global(ssl_*)`` asks for, the handshakes
on both ends, and what a failed handshake means, said in one line.

TLS is not a transport of its own: daffi seals and opens the bytes of a connection itself
(:mod:`daffi._cipher`), on every path, so a TLS connection over a transport that declares
:data:`daffi.transports.PLAIN_SOCKET` keeps its fast paths (direct writes, call, work and
served channels), and every byte on the socket is sealed.

Who does what (the rule ``Settings.check`` applies through :func:`tls_config`):

* a **controller** serves TLS when given ``ssl_certificate`` and ``ssl_key``; with
  ``ssl_ca`` as well it requires a client certificate signed by that CA (mutual TLS);
* a **node** speaks TLS to its controller when given ``ssl_ca`` (the CA its controller's
  certificate is checked against), a client certificate (``ssl_certificate`` and
  ``ssl_key``, for mutual TLS) or a ``tls://host:port`` address (checked against the
  system's CA store when no ``ssl_ca`` is given); it always checks the host name;
* a node in the controller's process talks to it in memory: no TLS there.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from dataclasses import dataclass

import anyio
import anyio.abc

from daffi._cipher import Cipher, handshake
from daffi.exceptions import InitializationError

__all__ = [
    "TLS_SCHEME",
    "TlsConfig",
    "TlsHandshakeFailed",
    "certificate_names",
    "looks_like_tls",
    "tls_config",
]

logger = logging.getLogger("daffi.tls")

#: ``tls://host:port``: TCP with TLS, the server checked against ``ssl_ca`` or the system store
TLS_SCHEME = "tls"

# OpenSSL's reasons for a first record that is not TLS at all (a plaintext peer).
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE"}
)
_NO_CLIENT_CERT = frozenset(
    {"PEER_DID_NOT_RETURN_A_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"}
)


class TlsHandshakeFailed(Exception):
    """A node's TLS handshake with its controller failed; the message says why and what to
    check. Not retried before the node's first connection (its start raises it, as an
    ``AuthenticationError`` when a certificate was refused, else an ``InitializationError``):
    a wrong certificate does not fix itself."""

    def __init__(self, message: str, *, authentication: bool) -> None:
        super().__init__(message)
        #: a certificate was refused (by either end), not a mismatch of configurations
        self.authentication = authentication


@dataclass(frozen=True)
class TlsConfig:
    """The TLS a Global speaks: the controller's server context, the node's client context
    (each None when that side is not run or speaks plaintext)."""

    server: ssl.SSLContext | None = None
    client: ssl.SSLContext | None = None
    #: the controller requires client certificates
    mutual: bool = False
    #: the node presents a client certificate
    client_certificate: bool = False

    async def accept(
        self, stream: anyio.abc.ByteStream, timeout: float, peer: str
    ) -> Cipher | None:
        """The server side of the handshake on a new connection: its cipher (None: the
        handshake failed or took longer than ``timeout`` seconds; logged in one line, and
        ``stream`` closed)."""
        assert self.server is not None
        why: str | None = None
        with anyio.move_on_after(timeout) as scope:
            try:
                return await handshake(stream, self.server, server_side=True)
            except ssl.SSLError as exc:
                why = _server_side_failure(exc)
            except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                why = "the peer closed the connection during the TLS handshake"
        if scope.cancelled_caught:
            why = f"no TLS handshake within {timeout} s"
        logger.warning("refused a connection from %s: %s", peer, why)
        await anyio.aclose_forcefully(stream)
        return None

    async def connect(
        self, stream: anyio.abc.ByteStream, hostname: str | None, label: str
    ) -> Cipher:
        """The client side of the handshake with the controller at ``label``, checking its
        certificate for ``hostname``: the connection's cipher.

        Raises:
            TlsHandshakeFailed: it failed; the message says why (logged in one line too).
        """
        assert self.client is not None
        try:
            return await handshake(stream, self.client, server_side=False, hostname=hostname)
        except BaseException as exc:
            await anyio.aclose_forcefully(stream)
            if not isinstance(exc, ssl.SSLError | anyio.BrokenResourceError | anyio.EndOfStream):
                raise
            raise self._failed(exc, label) from exc

    def connect_blocking(
        self, sock: socket.socket, hostname: str | None, label: str
    ) -> ssl.SSLSocket:
        """The client side of the handshake on a blocking socket (a call or work channel,
        which its thread reads and writes itself), within the socket's timeout.

        Raises:
            TlsHandshakeFailed: it failed (the socket is closed).
        """
        assert self.client is not None
        try:
            return self.client.wrap_socket(sock, server_hostname=hostname)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise self._failed(exc, label) from exc

    def _failed(self, exc: BaseException, label: str) -> TlsHandshakeFailed:
        why, authentication = _client_side_failure(exc, self.client_certificate)
        logger.error("TLS handshake with the controller at %s failed: %s", label, why)
        return TlsHandshakeFailed(
            f"TLS handshake with the controller at {label} failed: {why}",
            authentication=authentication,
        )


def tls_config(
    *,
    certificate: str | os.PathLike[str] | None,
    key: str | os.PathLike[str] | None,
    ca: str | os.PathLike[str] | None,
    tls_address: bool,
    scheme: str,
    controller: bool,
    node: bool,
) -> TlsConfig | None:
    """The TLS these ``Global`` arguments ask for (None: plaintext).

    Raises:
        InitializationError: TLS half configured (a certificate without its key, a TLS
            address or ``ssl_ca`` on a controller without a certificate), asked for on an
            address without a host name to check, or a file that does not load.
    """
    if (certificate is None) != (key is None):
        given, missing = (
            ("ssl_certificate", "ssl_key") if key is None else ("ssl_key", "ssl_certificate")
        )
        raise InitializationError(
            f"{given} was given without {missing}: TLS needs both (the certificate and its "
            "private key); refusing to run without TLS instead"
        )
    wanted = certificate is not None or ca is not None or tls_address
    if not wanted:
        return None
    if scheme != "tcp":
        raise InitializationError(
            f"TLS (ssl_certificate, ssl_key, ssl_ca, tls://) is for TCP addresses, not "
            f"{scheme}://; a Unix socket is protected by its file permissions instead"
        )
    if controller and certificate is None:
        raise InitializationError(
            "a controller serves TLS with ssl_certificate and ssl_key; "
            + ("ssl_ca alone" if ca is not None else "a tls:// address alone")
            + " would leave it without a certificate to present"
        )
    server = _context(server=True, certificate=certificate, key=key, ca=ca) if controller else None
    client = (
        _context(server=False, certificate=certificate, key=key, ca=ca)
        if node and not controller
        else None
    )
    return TlsConfig(
        server=server,
        client=client,
        mutual=controller and ca is not None,
        client_certificate=client is not None and certificate is not None,
    )


def _context(
    *,
    server: bool,
    certificate: str | os.PathLike[str] | None,
    key: str | os.PathLike[str] | None,
    ca: str | os.PathLike[str] | None,
) -> ssl.SSLContext:
    """A server's or a client's context: its own certificate if given; peers verified
    against ``ssl_ca`` alone when given (never the system's store as well: on a
    controller, that would admit any client with a certificate from a public CA), else a
    client trusts the system's store. Clients check host names; TLS 1.2 at least."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certificate is not None:
        _load_chain(context, certificate, key)
    if ca is not None:
        _load_ca(context, ca)
        context.verify_mode = ssl.CERT_REQUIRED
    elif not server:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return context


def _load_chain(
    context: ssl.SSLContext,
    certificate: str | os.PathLike[str] | None,
    key: str | os.PathLike[str] | None,
) -> None:
    try:
        context.load_cert_chain(os.fspath(certificate), os.fspath(key))  # type: ignore[arg-type]
    except (OSError, ssl.SSLError) as exc:
        raise InitializationError(
            f"cannot load the TLS certificate {os.fspath(certificate)!r} with the key "  # type: ignore[arg-type]
            f"{os.fspath(key)!r}: {exc}"  # type: ignore[arg-type]
        ) from None


def _load_ca(context: ssl.SSLContext, ca: str | os.PathLike[str]) -> None:
    path = os.fspath(ca)
    try:
        if os.path.isdir(path):
            context.load_verify_locations(capath=path)
        else:
            context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise InitializationError(
            f"cannot load the CA certificates in {path!r} (ssl_ca): {exc}"
        ) from None


def looks_like_tls(frame_length: int) -> bool:
    """Whether a frame's 4-byte length is really the start of a TLS handshake record
    (``0x16 0x03 ..``): a TLS client talking to a plaintext controller."""
    return frame_length >> 16 == 0x1603


def certificate_names(cipher: Cipher) -> frozenset[str] | None:
    """The names in the peer's certificate on a TLS connection: its DNS subject
    alternative names, or its subject's common name when it has none (None: no
    certificate)."""
    certificate = cipher.peer_certificate()
    if not certificate:
        return None
    names = frozenset(
        str(value) for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS"
    )
    if names:
        return names
    return frozenset(
        str(value)
        for rdn in certificate.get("subject", ())
        for key, value in rdn
        if key == "commonName"
    )


def _reason(exc: BaseException | None) -> str:
    return str(getattr(exc, "reason", "") or "")


def _server_side_failure(exc: ssl.SSLError) -> str:
    reason = _reason(exc)
    if reason in _NOT_TLS:
        return (
            "it does not speak TLS (a plaintext node? give it ssl_ca=... or a tls:// address "
            "to connect to this TLS controller)"
        )
    if reason in _NO_CLIENT_CERT:
        return (
            "it sent no client certificate, and this controller requires one (ssl_ca is set: "
            "mutual TLS); give the node ssl_certificate and ssl_key"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its client certificate does not verify against ssl_ca: {exc.verify_message}"
    if "ALERT" in reason:
        return f"it refused this controller's certificate ({reason.lower()})"
    return f"the TLS handshake failed: {exc}"


def _client_side_failure(exc: BaseException, has_certificate: bool) -> tuple[str, bool]:
    """Why the node's handshake failed, and whether a certificate was refused."""
    ssl_error = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if not isinstance(ssl_error, ssl.SSLError):
        ssl_error = None  # the connection ended (closed, or reset): no TLS reason
    if isinstance(ssl_error, ssl.SSLCertVerificationError):
        return (
            f"the controller's certificate does not verify ({ssl_error.verify_message}); "
            "check ssl_ca and that the certificate names the host the node connects to",
            True,
        )
    reason = _reason(ssl_error)
    if reason in _NOT_TLS:
        return "the controller does not speak TLS (give it ssl_certificate and ssl_key)", False
    if reason in _NO_CLIENT_CERT or ("ALERT" in reason and not has_certificate):
        return (
            "the controller requires a client certificate (mutual TLS); give this node "
            "ssl_certificate and ssl_key signed by the CA the controller trusts",
            True,
        )
    if "ALERT" in reason:
        return f"the controller refused this node's certificate ({reason.lower()})", True
    if ssl_error is None:
        return (
            "the controller closed the connection during the TLS handshake: it does not "
            "speak TLS (give it ssl_certificate and ssl_key), or it refused this node",
            False,
        )
    return str(ssl_error), False
