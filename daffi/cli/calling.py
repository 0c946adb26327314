"""``daffi call NAME ARGS...``: call a callback by name once, as ``FG`` does, and print its
result."""

from __future__ import annotations

import json
import pprint
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from daffi.cli.connection import CliError, Connection, connect, connection_options
from daffi.cli.output import echo_json

if TYPE_CHECKING:
    from daffi import Global

__all__ = ["call", "call_by_name", "parse_value"]


def parse_value(text: str) -> Any:
    """A command-line value: what it means as JSON (``3``, ``"3"``, ``[1, 2]``, ``null``), or
    the text itself when it is not JSON (``Bob``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_keyword(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint="'--kwarg'")
    return name, parse_value(value)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("args", nargs=-1)
@click.option(
    "-k",
    "--kwarg",
    "kwargs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A keyword argument (repeatable); VALUE is read like ARGS.",
)
@click.option("--receiver", metavar="NODE", help="The node that runs it (default: any).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up (and cancel the remote run) after this long (default: wait).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@connection_options
def call(
    connection: Connection,
    name: str,
    args: tuple[str, ...],
    kwargs: tuple[str, ...],
    receiver: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Call callback NAME once with ARGS and print what it returns.

    Each of ARGS is read as JSON when it is JSON (3, 2.5, true, null, "text", [1, 2],
    {"a": 1}) and as text otherwise (Bob). Put -- before ARGS that could be read as
    options of this command (-k, --json...).
    A text result is printed as is, other results as Python shows them; with --json, every
    result is printed as JSON. A generator callback's items are printed one a line as they
    arrive.
    """
    positional = tuple(parse_value(text) for text in args)
    keywords = dict(parse_keyword(text) for text in kwargs)
    from daffi.exceptions import DaffiError

    with connect(connection) as g:
        try:
            result = call_by_name(g, name, positional, keywords, receiver, timeout)
            if isinstance(result, Iterator):
                for item in result:
                    _echo_result(item, as_json)
            else:
                _echo_result(result, as_json)
        except DaffiError as exc:
            raise CliError(exc.message or str(exc)) from None


def call_by_name(
    g: Global,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    receiver: str | None,
    timeout: float | None,
) -> Any:
    """Call callback ``name`` with ``FG`` through ``g`` (``g.call``); its result (an
    iterator of items for a generator callback)."""
    return g.call[name](*args, **kwargs).fg(timeout=timeout, receiver=receiver)


def _echo_result(value: Any, as_json: bool) -> None:
    if as_json:
        echo_json(value)
    elif isinstance(value, str):
        click.echo(value)
    else:
        click.echo(pprint.pformat(value))
