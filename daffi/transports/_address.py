"""Transport addresses: ``scheme://...`` strings and their parsed form."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Address"]

# RFC 3986 scheme syntax; schemes are case-insensitive, so they are stored lower-case.
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*$")
_PATH_SCHEMES = frozenset({"unix", "memory"})
_EXAMPLES = "tcp://127.0.0.1:8888, tcp://[::1]:8888, unix:///tmp/daffi.sock or memory://name"


@dataclass(frozen=True)
class Address:
    """Where a transport connects to or listens on.

    Which fields are used depends on the scheme: ``tcp`` uses ``host`` and ``port``
    (port 0 asks the listener to pick a free port), ``unix`` uses ``path`` as the
    socket file and ``memory`` uses ``path`` as the in-process name. Third-party
    transports may use any of them; their text form is ``scheme://host:port/path``.

    Attributes:
        scheme: The transport scheme, lower-case (``"tcp"``, ``"unix"``, ``"memory"``...).
        host: Host name or IP address (without brackets for IPv6).
        port: TCP port, 0-65535.
        path: Socket file path, in-process name, or a third-party path.
    """

    scheme: str
    host: str | None = None
    port: int | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if not _SCHEME_RE.match(self.scheme):
            raise ValueError(
                f"invalid address scheme {self.scheme!r}: expected lower-case letters, "
                f"digits, '+', '-' or '.' starting with a letter, e.g. 'tcp'"
            )
        # bool is an int subclass; True as a port is always a bug.
        if self.port is not None and (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 0 <= self.port <= 65535
        ):
            raise ValueError(f"invalid port {self.port!r}: expected an integer in 0..65535")

    def __str__(self) -> str:
        if self.scheme in _PATH_SCHEMES or self.host is None:
            return f"{self.scheme}://{self.path or ''}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path or ''}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse the text form produced by ``str(address)``.

        Args:
            text: For example ``"tcp://127.0.0.1:8888"``, ``"tcp://[::1]:8888"``,
                ``"unix:///tmp/x/daffi.sock"`` or ``"memory://name"``.

        Returns:
            The parsed address; ``Address.parse(str(a)) == a`` for valid addresses.

        Raises:
            ValueError: If the text is not ``scheme://...`` or misses what the scheme
                needs (tcp: host and port; unix and memory: a path or name).
        """
        if not isinstance(text, str):
            raise TypeError(f"expected an address string, got {type(text).__name__}")
        scheme, sep, rest = text.partition("://")
        if not sep or not scheme:
            raise ValueError(f"invalid address {text!r}: expected scheme://..., e.g. {_EXAMPLES}")
        scheme = scheme.lower()
        if not _SCHEME_RE.match(scheme):
            raise ValueError(
                f"invalid address {text!r}: {scheme!r} is not a valid scheme; "
                f"expected scheme://..., e.g. {_EXAMPLES}"
            )
        if scheme in _PATH_SCHEMES:
            if not rest:
                what = "socket path" if scheme == "unix" else "name"
                raise ValueError(
                    f"invalid address {text!r}: expected {scheme}://<{what}>, "
                    f"e.g. {'unix:///tmp/daffi.sock' if scheme == 'unix' else 'memory://name'}"
                )
            return cls(scheme=scheme, path=rest)

        netloc, slash, path = rest.partition("/")
        host, port = _parse_netloc(text, netloc)
        if scheme == "tcp" and (host is None or port is None or slash):
            raise ValueError(
                f"invalid address {text!r}: expected tcp://host:port, "
                f"e.g. tcp://127.0.0.1:8888 or tcp://[::1]:8888"
            )
        if host is None and not slash:
            raise ValueError(f"invalid address {text!r}: nothing after {scheme}://")
        return cls(scheme=scheme, host=host, port=port, path=slash + path if slash else None)


def _parse_netloc(text: str, netloc: str) -> tuple[str | None, int | None]:
    """Split ``host[:port]`` / ``[v6]:port``, reporting errors against the whole ``text``."""
    if not netloc:
        return None, None
    if netloc.startswith("["):
        host, bracket, tail = netloc[1:].partition("]")
        if not bracket or not host or (tail and not tail.startswith(":")):
            raise ValueError(
                f"invalid address {text!r}: expected an IPv6 host as [address]:port, "
                f"e.g. tcp://[::1]:8888"
            )
        port_text = tail[1:] if tail else None
    else:
        if netloc.count(":") > 1:
            raise ValueError(
                f"invalid address {text!r}: IPv6 hosts must be in brackets, e.g. tcp://[::1]:8888"
            )
        host, colon, port_part = netloc.partition(":")
        port_text = port_part if colon else None
        if not host:
            raise ValueError(f"invalid address {text!r}: missing host before ':'")
    if any(c.isspace() for c in host):
        raise ValueError(f"invalid address {text!r}: the host contains whitespace")
    if port_text is None:
        return host, None
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(
            f"invalid address {text!r}: port {port_text!r} is not a number in 0..65535"
        )
    return host, int(port_text)
