"""What a ``nats://`` address means: the servers, the subject namespace, credentials files,
TLS, and the subjects daffi uses under the namespace.

``nats://[user:password@]host:port[,host:port...][/namespace][?creds=FILE&nkey=FILE]`` (a
token is ``nats://token@host:port``). The namespace (default ``daffi``) prefixes every
subject, so several daffi systems can share one NATS cluster:

- ``<ns>.presence``: every node's announcements (``NodeUp``, ``NodeDown``);
- ``<ns>.node.<name>``: everything addressed to node ``name``;
- ``<ns>.ret.<name>.<call id>``: the reply subject of a call, answered only by the NATS
  server when nobody listens on its target's subject (no responders).
"""

from __future__ import annotations

import importlib.util
import re
import ssl
import urllib.parse
from dataclasses import dataclass

from daffi.exceptions import InitializationError

__all__ = ["NatsServers", "NatsSettings", "Subjects", "nats_settings", "require_nats"]

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def require_nats() -> None:
    """Check that nats-py is installed (without importing it).

    Raises:
        InitializationError: it is not; the message says what to install.
    """
    try:
        found = importlib.util.find_spec("nats") is not None
    except (ImportError, ValueError):  # ValueError: a module hidden as sys.modules[...] = None
        found = False
    if not found:
        raise InitializationError(
            "a nats:// address needs the NATS client: pip install 'daffi[nats]'"
        )


@dataclass(frozen=True)
class NatsServers:
    """A ``nats://`` address, parsed: the servers, the subject namespace, credentials files.

    Attributes:
        servers: the server URLs, each ``nats://[userinfo@]host:port``.
        namespace: the first token(s) of every subject daffi uses.
        credentials: a ``.creds`` file (JWT and nkey seed), or None.
        nkey_seed: a file holding an nkey seed, or None.
    """

    servers: tuple[str, ...]
    namespace: str = "daffi"
    credentials: str | None = None
    nkey_seed: str | None = None

    @classmethod
    def parse(cls, text: str) -> NatsServers:
        """Parse ``nats://...`` (see the module docstring).

        Raises:
            ValueError: it is not such an address.
        """
        scheme, sep, rest = text.partition("://")
        if not sep or scheme.lower() != "nats":
            raise ValueError(f"invalid NATS address {text!r}: expected nats://host:port")
        rest, _, query = rest.partition("?")
        hosts, _, namespace = rest.partition("/")
        servers = tuple(f"nats://{host.strip()}" for host in hosts.split(",") if host.strip())
        if not servers:
            raise ValueError(f"invalid NATS address {text!r}: no server (nats://host:port)")
        for server in servers:
            parsed = urllib.parse.urlsplit(server)
            try:
                port = parsed.port
            except ValueError:
                raise ValueError(f"invalid NATS address {text!r}: bad port in {server!r}") from None
            if not parsed.hostname:
                raise ValueError(f"invalid NATS address {text!r}: no host in {server!r}")
            del port
        namespace = namespace.strip("/") or "daffi"
        if not _NAMESPACE_RE.match(namespace):
            raise ValueError(
                f"invalid NATS address {text!r}: the namespace {namespace!r} may hold letters, "
                "digits, '_', '-' and dots between them"
            )
        options = urllib.parse.parse_qs(query, keep_blank_values=True)
        unknown = set(options) - {"creds", "nkey"}
        if unknown:
            raise ValueError(
                f"invalid NATS address {text!r}: unknown option(s) {sorted(unknown)} "
                "(known: creds, nkey)"
            )
        return cls(
            servers,
            namespace,
            credentials=options["creds"][-1] if "creds" in options else None,
            nkey_seed=options["nkey"][-1] if "nkey" in options else None,
        )

    def __str__(self) -> str:
        """The address without passwords or tokens (for log lines and errors)."""
        shown = []
        for server in self.servers:
            parsed = urllib.parse.urlsplit(server)
            shown.append(f"{parsed.hostname}:{parsed.port or 4222}")
        return f"nats://{','.join(shown)}/{self.namespace}"


@dataclass(frozen=True)
class NatsSettings:
    """What a Global in NATS mode connects with: the servers, and TLS (None: plaintext,
    unless a server URL asks for it)."""

    servers: NatsServers
    tls: ssl.SSLContext | None = None


def nats_settings(
    address: str,
    *,
    node: bool,
    auth_token: object,
    ssl_certificate: str | None,
    ssl_key: str | None,
    ssl_ca: str | None,
) -> NatsSettings:
    """Check a ``Global(address="nats://...")``.

    Raises:
        InitializationError: the address does not parse, only a controller is asked for
            (``init_node=False``: NATS routes, there is no controller to run; with a node,
            ``init_controller=True`` is ignored), ``auth_token`` is given (NATS
            authenticates: credentials go in the address), TLS is half configured, or
            nats-py is not installed.
    """
    try:
        servers = NatsServers.parse(address)
    except ValueError as exc:
        raise InitializationError(str(exc)) from None
    if not node:
        raise InitializationError(
            "with a nats:// address there is no controller to run: NATS routes the calls. "
            "Run nats-server instead, and every daffi process as a node (init_node=True)"
        )
    if auth_token is not None:
        raise InitializationError(
            "auth_token is a daffi controller's secret; with a nats:// address the NATS "
            "server authenticates: put user:password@ or a token@ in the address, or "
            "?creds=FILE / ?nkey=FILE"
        )
    if (ssl_certificate is None) != (ssl_key is None):
        raise InitializationError("a client certificate needs both ssl_certificate and ssl_key")
    require_nats()
    tls = None
    if ssl_ca is not None or ssl_certificate is not None:
        import ssl as ssl_module

        tls = ssl_module.create_default_context(cafile=ssl_ca)
        if ssl_certificate is not None:
            tls.load_cert_chain(ssl_certificate, ssl_key)
    return NatsSettings(servers, tls)


def subject_token(name: str) -> str:
    """``name`` as one token of a NATS subject: itself when it is plain (letters, digits,
    ``_`` and ``-``), else ``x`` and its UTF-8 bytes in hex."""
    if name and all(c.isascii() and (c.isalnum() or c in "_-") for c in name):
        return name
    return "x" + name.encode().hex()


@dataclass(frozen=True)
class Subjects:
    """The subjects of one namespace (see the module docstring)."""

    namespace: str

    @property
    def presence(self) -> str:
        return f"{self.namespace}.presence"

    def node(self, name: str) -> str:
        return f"{self.namespace}.node.{subject_token(name)}"

    def returns(self, name: str) -> str:
        return f"{self.namespace}.ret.{subject_token(name)}"
