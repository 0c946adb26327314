"""The ``daffi`` command (also ``python -m daffi``).

Commands: ``controller`` (run a standalone controller), ``nodes``, ``callbacks``,
``schedules ls`` and ``schedules cancel`` (look at a running system), ``call`` (call a
callback by name), ``demo`` (the scheduling demo). ``daffi COMMAND --help`` describes each;
docs/cli.md has an example session.

Errors are one line on stderr (``daffi: ...``), never a traceback. Exit codes:

* 0: done;
* 1: the operation failed (a remote error, an unknown process, callback or schedule, a
  timeout, a controller that stopped because of an error);
* 2: usage error (an unknown command or option, a bad value, options that do not go
  together);
* 3: no controller answered at the address within ``--connect-timeout``, or it refused this
  process (authentication, not a daffi controller);
* 130: interrupted by Ctrl+C (``daffi controller`` stops cleanly and exits 0).

Shell completion is click's: add ``eval "$(_DAFFI_COMPLETE=bash_source daffi)"`` to
``~/.bashrc`` (``zsh_source`` to ``~/.zshrc``; ``_DAFFI_COMPLETE=fish_source daffi | source``
in fish).
"""

from __future__ import annotations

import logging
import sys

import click

from daffi.__about__ import __version__
from daffi.cli.calling import call
from daffi.cli.connection import (
    EXIT_USAGE,
    LOG_LEVELS,
    CliError,
    check_endpoint,
    setup_logging,
)
from daffi.cli.system import callbacks, nodes, schedules

__all__ = ["cli", "main"]

PROG_NAME = "daffi"
#: Ctrl+C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(
    __version__, "-V", "--version", prog_name=PROG_NAME, message="%(prog)s %(version)s"
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """daffi: call functions in other Python processes.

    Run a controller, see the nodes of a running system, their callbacks and schedules,
    cancel a schedule, or call a callback by name.
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command()
@click.option("--name", default="controller", show_default=True, help="The controller's name.")
@click.option("--address", metavar="URL", help="Listen on this address (scheme://...).")
@click.option("--host", help="TCP host to listen on (default: a Unix socket).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="TCP port, with --host (default: a free one, printed).",
)
@click.option(
    "--unix-sock-path",
    metavar="DIR",
    help="Directory of the Unix socket (default: the per-user one).",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    envvar="DAFFI_LOG_LEVEL",
    show_envvar=True,
    help="The least severe log records shown on stderr.",
)
def controller(
    name: str,
    address: str | None,
    host: str | None,
    port: int | None,
    unix_sock_path: str | None,
    log_level: str,
) -> None:
    """Run a standalone controller until Ctrl+C.

    Once it listens it prints "daffi controller NAME listening on ADDRESS" on stdout; its
    log (nodes joining and leaving) goes to stderr.
    """
    check_endpoint(address, host, port, unix_sock_path)
    setup_logging(log_level)
    # Our stdout line says where it listens; the same news in the log would say it twice.
    for handler in logging.getLogger().handlers:
        handler.addFilter(_drop_listening_record)
    from daffi import Global
    from daffi.exceptions import DaffiError

    try:
        g = Global(
            process_name=name,
            init_controller=True,
            init_node=False,
            address=address,
            host=host,
            port=port,
            unix_sock_path=unix_sock_path,
        )
    except DaffiError as exc:
        raise CliError(exc.message or str(exc)) from None
    click.echo(f"daffi controller {name!r} listening on {g.address}")
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
    except DaffiError as exc:  # the controller died of an error (logged with its traceback)
        raise CliError(exc.message or str(exc)) from None


def _drop_listening_record(record: logging.LogRecord) -> bool:
    """False for the controller's own "listening on" record: the command prints that line."""
    return not (record.name == "daffi.controller" and " listening on " in str(record.msg))


@cli.command()
def demo() -> None:
    """Run the scheduling demo: three processes on a shortened timeline (about 15 s)."""
    from daffi.cli.demo import main as run_demo

    code = run_demo()
    if code:
        raise click.exceptions.Exit(code)


cli.add_command(nodes)
cli.add_command(callbacks)
cli.add_command(schedules)
cli.add_command(call)


def main(argv: list[str] | None = None) -> int:
    """Run the ``daffi`` command with ``argv`` (default: the process's); its exit code."""
    try:
        result = cli.main(args=argv, prog_name=PROG_NAME, standalone_mode=False)
    except click.UsageError as exc:
        hint = ""
        if exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        _error(f"{exc.format_message()}{hint}")
        return EXIT_USAGE
    except click.ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code
    except click.Abort:
        _error("interrupted")
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0


def _error(message: str) -> None:
    text = " ".join(message.split())  # one line, whatever the message held
    click.echo(f"{PROG_NAME}: {text}", err=True)


if __name__ == "__main__":
    sys.exit(main())
