"""How the commands that talk to a running system reach it: the connection options, the
short-lived node they connect as, and the errors and exit codes they end with."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from daffi._settings import ADDRESS_VARIABLE, address_from_environment

if TYPE_CHECKING:
    from daffi import Global

__all__ = [
    "ADDRESS_VARIABLE",
    "EXIT_FAILED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "LOG_LEVELS",
    "CliError",
    "Connection",
    "UnreachableError",
    "check_endpoint",
    "connect",
    "connection_options",
    "setup_logging",
]

#: the operation failed (a remote error, an unknown process or callback, a lost connection)
EXIT_FAILED = 1
#: the command line is wrong (click's own code for usage errors)
EXIT_USAGE = 2
#: no controller answered, or it refused this process (authentication, not a daffi controller)
EXIT_UNREACHABLE = 3

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class CliError(click.ClickException):
    """The operation failed: reported as one line on stderr, exit code ``EXIT_FAILED``."""

    exit_code = EXIT_FAILED


class UnreachableError(CliError):
    """No controller answered, or it refused this process: exit code ``EXIT_UNREACHABLE``."""

    exit_code = EXIT_UNREACHABLE


@dataclass(frozen=True)
class Connection:
    """Where the controller is and how to join it (the connection options, checked)."""

    address: str | None
    host: str | None
    port: int | None
    unix_sock_path: str | None
    auth_token: str | None
    connect_timeout: float

    def describe(self) -> str:
        if self.address is not None:
            return self.address
        if self.host is not None:
            return f"tcp://{self.host}:{self.port}"
        directory = self.unix_sock_path
        if directory is None:
            from daffi.transports.unix import default_unix_socket_dir

            try:
                directory = default_unix_socket_dir()
            except OSError:  # the node's own error says what is wrong with it
                return "the per-user Unix socket"
        return f"unix://{os.path.join(directory, 'daffi.sock')}"


def setup_logging(level: str) -> None:
    """Log records of ``level`` and above to stderr, one line each."""
    logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # DAFFI_LOG_LEVEL set the daffi logger's own level at import: the option wins.
    logging.getLogger("daffi").setLevel(level.upper())


def check_endpoint(
    address: str | None, host: str | None, port: int | None, unix_sock_path: str | None
) -> None:
    """Refuse option combinations that cannot name one controller (a usage error)."""
    if address is not None and (host or port is not None or unix_sock_path):
        raise click.UsageError("give either --address or --host/--port/--unix-sock-path")
    if host is not None and unix_sock_path is not None:
        raise click.UsageError("give either --host/--port (TCP) or --unix-sock-path, not both")
    if port is not None and host is None:
        raise click.UsageError(f"--port needs --host too (e.g. --host 127.0.0.1 --port {port})")
    if address is not None:
        from daffi.transports import Address

        try:
            Address.parse(address)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the connection options; it receives them as ``connection``."""

    @functools.wraps(func)
    def command(
        *args: Any,
        address: str | None,
        host: str | None,
        port: int | None,
        unix_sock_path: str | None,
        auth_token: str | None,
        connect_timeout: float,
        log_level: str,
        **kwargs: Any,
    ) -> Any:
        setup_logging(log_level)
        check_endpoint(address, host, port, unix_sock_path)
        if address is None and host is None and unix_sock_path is None:
            address = address_from_environment()
            if address is not None:
                try:
                    check_endpoint(address, None, None, None)
                except click.UsageError as exc:
                    raise click.UsageError(f"${ADDRESS_VARIABLE}: {exc.message}") from None
        kwargs["connection"] = Connection(
            address, host, port, unix_sock_path, auth_token or None, connect_timeout
        )
        return func(*args, **kwargs)

    decorated: Callable[..., Any] = command
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return decorated


_OPTIONS = [
    click.option(
        "--address",
        metavar="URL",
        help=(
            "The controller's address, e.g. tcp://127.0.0.1:8888 or "
            f"unix:///run/app/daffi.sock (default: ${ADDRESS_VARIABLE}, else the per-user "
            "Unix socket)."
        ),
    ),
    click.option("--host", help="The controller's TCP host."),
    click.option("--port", type=click.IntRange(1, 65535), help="The controller's TCP port."),
    click.option(
        "--unix-sock-path", metavar="DIR", help="The directory of the controller's Unix socket."
    ),
    click.option(
        "--auth-token",
        envvar="DAFFI_AUTH_TOKEN",
        show_envvar=True,
        metavar="TOKEN",
        help="The shared secret of the system, if it has one.",
    ),
    click.option(
        "--connect-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=3.0,
        show_default=True,
        metavar="SECONDS",
        help="How long to wait for the controller.",
    ),
    click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default="error",
        show_default=True,
        envvar="DAFFI_LOG_LEVEL",
        show_envvar=True,
        help="The least severe of daffi's log records shown on stderr.",
    ),
]


@contextlib.contextmanager
def connect(connection: Connection) -> Iterator[Global]:
    """Join the system as a short-lived node named ``daffi-cli-<pid>``; stop it on exit.

    Raises:
        UnreachableError: no controller answered in time, or it refused this node.
    """
    from daffi import Global
    from daffi.exceptions import DaffiError
    from daffi.registry import CallbackRegistry

    try:
        g = Global(
            process_name=f"daffi-cli-{os.getpid()}",
            host=connection.host,
            port=connection.port,
            unix_sock_path=connection.unix_sock_path,
            address=connection.address,
            auth_token=connection.auth_token,
            connect_timeout=connection.connect_timeout,
            registry=CallbackRegistry(),  # offers nothing, whatever was imported
        )
    except DaffiError as exc:
        raise UnreachableError(
            f"cannot reach the controller at {connection.describe()}: {exc.message or exc}"
        ) from None
    try:
        yield g
    finally:
        g.stop()
