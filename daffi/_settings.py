"""What ``Global(...)`` is given: its arguments checked, and what they imply (the address).

:meth:`Settings.check` raises ``InitializationError`` for arguments that cannot work, in the
order the constructor has always checked them; :class:`Configured` is the view of a Global's
settings that the runtime reads (and, once the controller listens, updates: the address).

A Global is also given the environment: ``DAFFI_ADDRESS`` and ``DAFFI_AUTH_TOKEN`` stand in
for arguments it was not given (an argument always wins), and ``DAFFI_LOG_LEVEL`` sets the
level of the ``daffi`` logger (:func:`apply_log_level`). See docs/configuration.md.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from daffi._environment import default_process_name, log_level_from_environment
from daffi._nats_address import NatsSettings, nats_settings
from daffi._tls import TLS_SCHEME, TlsConfig, tls_config
from daffi.exceptions import InitializationError
from daffi.metrics import MetricsHook
from daffi.registry._store import CallbackRegistry, default_registry
from daffi.transports import Address

__all__ = [
    "ADDRESS_VARIABLE",
    "AUTH_TOKEN_VARIABLE",
    "Configured",
    "Hook",
    "Settings",
    "address_from_environment",
    "auth_secret",
    "default_state_dir",
    "resolve_address",
    "validate_port",
]

#: the environment variable a Global reads its ``auth_token`` from when it is not given
AUTH_TOKEN_VARIABLE = "DAFFI_AUTH_TOKEN"
#: the environment variable a Global reads its ``address`` from when given no address at all
ADDRESS_VARIABLE = "DAFFI_ADDRESS"

Hook = Callable[..., Any]


class Configured(Protocol):
    """The settings of a Global, as its runtime reads them.

    The hooks are read when they run, so a hook assigned after construction is used.
    """

    process_name: str
    init_controller: bool
    init_node: bool
    address: Address
    port: int | None
    on_init: Hook | None
    on_node_connect: Hook | None
    on_node_disconnect: Hook | None
    backend: str
    connect_timeout: float | None
    registry: CallbackRegistry
    workers: int
    max_frame_size: int
    heartbeat_interval: float
    max_concurrent_calls: int
    min_period_interval: float
    max_connections: int
    frame_timeout: float
    max_callbacks: int
    max_registration_size: int
    max_calls_in_flight: int
    tls: TlsConfig | None
    auth_secret: bytes | None
    ssl_bind_names: bool
    allow_transfer: bool
    allow_pickle: bool
    state_dir: str | None
    metrics: MetricsHook | None
    nats: NatsSettings | None


@dataclass(frozen=True)
class Settings:
    """The checked arguments of ``Global(...)`` (see its docstring for their meaning)."""

    process_name: str
    init_controller: bool
    init_node: bool
    address: Address
    on_init: Hook | None
    on_node_connect: Hook | None
    on_node_disconnect: Hook | None
    backend: str
    connect_timeout: float | None
    registry: CallbackRegistry
    workers: int
    max_frame_size: int
    heartbeat_interval: float
    max_concurrent_calls: int
    min_period_interval: float
    max_connections: int
    frame_timeout: float
    max_callbacks: int
    max_registration_size: int
    max_calls_in_flight: int
    #: the TLS this Global speaks (None: plaintext); see daffi._tls
    tls: TlsConfig | None
    #: the shared secret proven in every handshake (None: no token authentication)
    auth_secret: bytes | None
    #: a controller with mutual TLS admits a node only under a name its certificate carries
    ssl_bind_names: bool
    #: this node runs functions other processes send it (``transfer_and_call``)
    allow_transfer: bool
    #: this node sends and accepts pickled payloads with peers that allow them too
    allow_pickle: bool
    #: where the node keeps its state (durable schedules); None: nowhere (a generated name)
    state_dir: str | None
    #: given a record of each run of this node's callbacks (see daffi.metrics)
    metrics: MetricsHook | None
    #: the level ``DAFFI_LOG_LEVEL`` asks for (None: unset); applied by :func:`apply_log_level`
    log_level: int | None = None
    #: NATS mode (a ``nats://`` address): the servers and TLS; None: controller mode
    nats: NatsSettings | None = None

    @classmethod
    def check(
        cls,
        *,
        process_name: str | None,
        init_controller: bool,
        init_node: bool,
        host: str | None,
        port: int | str | None,
        unix_sock_path: str | os.PathLike[str] | None,
        ssl_certificate: str | os.PathLike[str] | None,
        ssl_key: str | os.PathLike[str] | None,
        ssl_ca: str | os.PathLike[str] | None,
        auth_token: str | bytes | None,
        ssl_bind_names: bool,
        allow_transfer: bool,
        allow_pickle: bool,
        state_dir: str | os.PathLike[str] | None,
        on_init: Hook | None,
        on_node_connect: Hook | None,
        on_node_disconnect: Hook | None,
        address: str | None,
        backend: str,
        connect_timeout: float | None,
        registry: CallbackRegistry | None,
        workers: int,
        max_frame_size: int,
        heartbeat_interval: float,
        max_concurrent_calls: int,
        min_period_interval: float,
        max_connections: int,
        frame_timeout: float,
        max_callbacks: int,
        max_registration_size: int,
        max_calls_in_flight: int,
        metrics: MetricsHook | None = None,
    ) -> Settings:
        """Check the arguments and derive what they imply.

        Raises:
            InitializationError: an argument (or a combination) cannot work.
        """
        if not init_controller and not init_node:
            raise InitializationError(
                "No components were found in current process. Provide at least one required "
                "argument `init_controller=True` or `init_node=True`."
            )
        generated = process_name is None
        if process_name is None:
            process_name = default_process_name()
        name = str(process_name)
        if not name:
            raise InitializationError("process_name must not be empty")
        node_state_dir = _state_dir(state_dir, name, generated=generated)
        from_environment = None
        if address is None and host is None and port is None and unix_sock_path is None:
            from_environment = address_from_environment()
            address = from_environment
        try:
            resolved, tls, nats = _address_and_tls(
                address,
                host,
                port,
                unix_sock_path,
                ssl_certificate=ssl_certificate,
                ssl_key=ssl_key,
                ssl_ca=ssl_ca,
                controller=bool(init_controller),
                node=bool(init_node),
                auth_token=auth_token,
            )
        except InitializationError as exc:
            if from_environment is None:
                raise
            raise InitializationError(
                f"the environment variable {ADDRESS_VARIABLE}={from_environment!r} cannot be "
                f"used: {exc}"
            ) from None
        if ssl_bind_names and (tls is None or not tls.mutual):
            raise InitializationError(
                "ssl_bind_names binds node names to client certificates: it needs a "
                "controller with mutual TLS (ssl_certificate, ssl_key and ssl_ca)"
            )
        secret = None if nats is not None else auth_secret(auth_token)
        if backend not in ("asyncio", "trio"):
            raise InitializationError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        from daffi._backends import require_backend  # checks, does not import trio

        require_backend(backend)  # InitializationError: pip install 'daffi[trio]'
        if workers < 1:
            raise InitializationError(f"workers must be at least 1, not {workers!r}")
        if not (isinstance(max_connections, int) and max_connections >= 1):
            raise InitializationError(
                f"max_connections must be a positive int, not {max_connections!r}"
            )
        for limit_name, limit in (
            ("max_callbacks", max_callbacks),
            ("max_registration_size", max_registration_size),
            ("max_calls_in_flight", max_calls_in_flight),
        ):
            if not (isinstance(limit, int) and limit >= 1):
                raise InitializationError(f"{limit_name} must be a positive int, not {limit!r}")
        if not (isinstance(frame_timeout, int | float) and frame_timeout > 0):
            raise InitializationError(
                f"frame_timeout must be a positive number of seconds, not {frame_timeout!r}"
            )
        if not (isinstance(min_period_interval, int | float) and min_period_interval > 0):
            raise InitializationError(
                f"min_period_interval must be a positive number of seconds, not "
                f"{min_period_interval!r}"
            )
        for hook_name, hook in (
            ("on_init", on_init),
            ("on_node_connect", on_node_connect),
            ("on_node_disconnect", on_node_disconnect),
            ("metrics", metrics),
        ):
            if hook is not None and not callable(hook):
                raise InitializationError(f"{hook_name} must be callable, not {hook!r}")
        if allow_pickle or allow_transfer:
            from daffi._pickling import require_cloudpickle  # checks, does not import it

            require_cloudpickle()  # InitializationError: pip install 'daffi[pickle]'
        log_level = log_level_from_environment()
        return cls(
            process_name=name,
            # NATS routes the calls: no controller runs (a daffi 2 program's
            # init_controller=True runs as a node there, unchanged)
            init_controller=bool(init_controller) and nats is None,
            init_node=bool(init_node),
            address=resolved,
            on_init=on_init,
            on_node_connect=on_node_connect,
            on_node_disconnect=on_node_disconnect,
            backend=backend,
            connect_timeout=connect_timeout,
            registry=registry if registry is not None else default_registry,
            workers=workers,
            max_frame_size=max_frame_size,
            heartbeat_interval=heartbeat_interval,
            max_concurrent_calls=max_concurrent_calls,
            min_period_interval=float(min_period_interval),
            max_connections=max_connections,
            frame_timeout=float(frame_timeout),
            max_callbacks=max_callbacks,
            max_registration_size=max_registration_size,
            max_calls_in_flight=max_calls_in_flight,
            tls=tls,
            auth_secret=secret,
            ssl_bind_names=bool(ssl_bind_names),
            allow_transfer=bool(allow_transfer),
            allow_pickle=bool(allow_pickle),
            state_dir=node_state_dir,
            metrics=metrics,
            log_level=log_level,
            nats=nats,
        )


def _address_and_tls(
    address: str | None,
    host: str | None,
    port: int | str | None,
    unix_sock_path: str | os.PathLike[str] | None,
    *,
    ssl_certificate: str | os.PathLike[str] | None,
    ssl_key: str | os.PathLike[str] | None,
    ssl_ca: str | os.PathLike[str] | None,
    controller: bool,
    node: bool,
    auth_token: object,
) -> tuple[Address, TlsConfig | None, NatsSettings | None]:
    """The address (``tls://`` read as TCP with TLS), the TLS this Global speaks, and, for a
    ``nats://`` address, what it connects to NATS with (see :func:`nats_settings`)."""
    if address is not None and address.lower().startswith("nats://"):
        nats = nats_settings(
            address,
            node=node,
            auth_token=auth_token,
            ssl_certificate=None if ssl_certificate is None else os.fspath(ssl_certificate),
            ssl_key=None if ssl_key is None else os.fspath(ssl_key),
            ssl_ca=None if ssl_ca is None else os.fspath(ssl_ca),
        )
        return Address("nats", path=str(nats.servers).removeprefix("nats://")), None, nats
    tls_address = address is not None and address.lower().startswith(TLS_SCHEME + "://")
    if tls_address:
        assert address is not None
        address = "tcp" + address[len(TLS_SCHEME) :]
    resolved = resolve_address(address, host, port, unix_sock_path, init_controller=controller)
    tls = tls_config(
        certificate=ssl_certificate,
        key=ssl_key,
        ca=ssl_ca,
        tls_address=tls_address,
        scheme=resolved.scheme,
        controller=controller,
        node=node,
    )
    return resolved, tls, None


#: the names :func:`default_process_name` gave in this process (never twice)
def _state_dir(
    state_dir: str | os.PathLike[str] | None, name: str, *, generated: bool
) -> str | None:
    """The node's state directory: ``state_dir`` made absolute, else the default one of
    ``name`` (:func:`default_state_dir`), else None for a
    generated name (a restart could not find it)."""
    if state_dir is not None:
        try:
            path = os.fspath(state_dir)
        except TypeError:
            raise InitializationError(
                f"state_dir must be a path (str or os.PathLike), not {type(state_dir).__name__}"
            ) from None
        if not path:
            raise InitializationError("state_dir must not be empty")
        return os.path.abspath(os.path.expanduser(path))
    if generated:
        return None
    return default_state_dir(name)


def default_state_dir(process_name: str) -> str:
    """The state directory of a node named ``process_name`` when ``Global`` is given none:
    ``$XDG_STATE_HOME/daffi/<name>`` (``~/.local/state/daffi/<name>``; on Windows under
    ``%LOCALAPPDATA%``). The name is percent-encoded where it is not a plain file name."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~")
    else:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "state"
        )
    part = urllib.parse.quote(process_name, safe="")
    if part.startswith("."):  # never ".", ".." or a hidden directory
        part = "%2E" + part[1:]
    return os.path.join(base, "daffi", part)


def address_from_environment() -> str | None:
    """The address ``DAFFI_ADDRESS`` gives (None: unset or blank), as a Global given no
    address reads it."""
    return os.environ.get(ADDRESS_VARIABLE, "").strip() or None


def auth_secret(auth_token: str | bytes | None) -> bytes | None:
    """The shared secret: ``auth_token``, else the ``DAFFI_AUTH_TOKEN`` environment variable
    (unset or empty: None, no token authentication); text is UTF-8 encoded.

    Raises:
        InitializationError: an empty or non-text ``auth_token``.
    """
    if auth_token is None:
        auth_token = os.environ.get(AUTH_TOKEN_VARIABLE) or None
        if auth_token is None:
            return None
    if not isinstance(auth_token, str | bytes | bytearray) or not auth_token:
        kind = type(auth_token).__name__
        given = f"an empty {kind}" if isinstance(auth_token, str | bytes | bytearray) else kind
        raise InitializationError(
            "auth_token must be a non-empty str or bytes (or None to read "
            f"{AUTH_TOKEN_VARIABLE}), not {given}"
        )
    return auth_token.encode() if isinstance(auth_token, str) else bytes(auth_token)


def resolve_address(
    address: str | None,
    host: str | None,
    port: int | str | None,
    unix_sock_path: str | os.PathLike[str] | None,
    *,
    init_controller: bool,
) -> Address:
    """Where the controller listens (or the node connects): ``address`` if given, else TCP
    ``host:port``, else the Unix socket in ``unix_sock_path`` (by default a private per-user
    directory)."""
    if address is not None:
        if host is not None or port is not None or unix_sock_path is not None:
            raise InitializationError(
                "Provide either 'address' or host/port/unix_sock_path, not both"
            )
        try:
            return Address.parse(address)
        except ValueError as exc:
            raise InitializationError(str(exc)) from None
    if host is not None and unix_sock_path is not None:
        raise InitializationError(
            "Provide either 'unix_sock_path' argument or combination of 'host' and 'port' "
            "to connect via unix socket or via tcp respectively"
        )
    if host is not None:
        return Address(
            "tcp", host=str(host), port=validate_port(port, init_controller=init_controller)
        )
    if port is not None:
        raise InitializationError("port was given without host; pass host='127.0.0.1' too")
    if os.name == "nt":
        raise InitializationError(
            "Windows platform doesn't support unix sockets. Provide host and port to use TCP"
        )
    directory = os.fspath(unix_sock_path) if unix_sock_path is not None else None
    if directory is None:
        from daffi.transports.unix import default_unix_socket_dir

        directory = default_unix_socket_dir()
    return Address("unix", path=os.path.join(directory, "daffi.sock"))


def validate_port(port: int | str | None, *, init_controller: bool) -> int:
    """The TCP port as an int; 0 (pick a free one) only for a controller."""
    if port is None:
        if init_controller:
            return 0
        raise InitializationError(
            "a node needs the controller's port: pass port=... (only a controller may omit "
            "it to pick a free one)"
        )
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise InitializationError(f"port must be an integer, not {port!r}") from None
    if not 0 <= value <= 65535 or (value == 0 and not init_controller):
        raise InitializationError(f"port {port!r} is out of range (1..65535)")
    return value
