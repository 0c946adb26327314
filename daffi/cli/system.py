"""Commands that look at a running system: ``daffi nodes``, ``daffi callbacks``,
``daffi schedules ls`` and ``daffi schedules cancel``.

They read what the public API tells a node: ``Global.nodes`` (the connected nodes: where
from, since when, what they offer), ``Global.registered_callbacks`` (what each offers),
``Global.get_scheduled_tasks_async`` and ``Global.cancel_scheduled_task_by_uuid_async``.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click

from daffi.cli.connection import CliError, Connection, connect, connection_options
from daffi.cli.output import echo_json, echo_table, format_moment, format_signature

__all__ = ["callbacks", "nodes", "schedules"]

T = TypeVar("T")

#: inspect.Parameter kinds by number, as CallbackInfo carries them
_KIND_NAMES = (
    "positional_only",
    "positional_or_keyword",
    "var_positional",
    "keyword_only",
    "var_keyword",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the nodes' answers.",
)


@click.command()
@connection_options
@json_option
def nodes(connection: Connection, as_json: bool) -> None:
    """List the connected nodes: where each connected from, since when, its callbacks.

    The address is the controller's view: host:port over TCP, the process id over a Unix
    socket, in-process for the node in the controller's own process. The controller itself
    is not a node (unless it runs one), and this command's own node is left out.
    """
    with connect(connection) as g:
        listed = sorted(g.nodes.values(), key=lambda info: info.name)
    if as_json:
        echo_json(
            [
                {
                    "name": info.name,
                    "address": info.address,
                    "connected_since": None
                    if info.connected_since is None
                    else info.connected_since.isoformat(),
                    "callbacks": list(info.callbacks),
                }
                for info in listed
            ]
        )
        return
    rows = [
        [
            info.name,
            info.address or "-",
            format_moment(
                None if info.connected_since is None else info.connected_since.timestamp()
            ),
            ", ".join(info.callbacks) or "-",
        ]
        for info in listed
    ]
    echo_table(["NODE", "ADDRESS", "CONNECTED SINCE", "CALLBACKS"], rows)


@click.command()
@connection_options
@json_option
def callbacks(connection: Connection, as_json: bool) -> None:
    """List every callback offered, with its parameters and the nodes that offer it."""
    with connect(connection) as g:
        directory = g.registered_callbacks
    offered: dict[Any, list[str]] = {}
    for node_name in sorted(directory):
        for info in directory[node_name].values():
            offered.setdefault(info, []).append(node_name)
    listed = sorted(offered.items(), key=lambda item: (item[0].name, item[1]))
    if as_json:
        echo_json([_callback_json(info, offering) for info, offering in listed])
        return
    rows = [
        [info.name, format_signature(info.params), _callback_kind(info), ", ".join(offering)]
        for info, offering in listed
    ]
    echo_table(["CALLBACK", "PARAMETERS", "KIND", "NODES"], rows)


def _callback_kind(info: Any) -> str:
    prefix = "async " if info.is_async else ""
    return prefix + ("generator" if info.is_generator else "function")


def _callback_json(info: Any, offering: list[str]) -> dict[str, Any]:
    return {
        "name": info.name,
        "signature": format_signature(info.params),
        "params": [
            {"name": p.name, "kind": _KIND_NAMES[p.kind], "has_default": p.has_default}
            for p in info.params
        ],
        "is_async": info.is_async,
        "is_generator": info.is_generator,
        "nodes": offering,
    }


@click.group()
def schedules() -> None:
    """List or cancel the schedules (PERIOD) that nodes run."""


@schedules.command("ls")
@click.argument("process", required=False)
@connection_options
@timeout_option
@json_option
def list_schedules(
    connection: Connection, process: str | None, timeout: float, as_json: bool
) -> None:
    """List the schedules PROCESS runs (every connected node's when PROCESS is not given).

    Each schedule shows its uuid, callback, trigger, whether it is durable, its next run
    (local time), how many runs it made and skipped, and its last error.
    """
    from daffi.exceptions import DaffiError

    with connect(connection) as g:
        names = [process] if process is not None else sorted(g.registered_callbacks)
        found: dict[str, list[dict[str, Any]]] = {}
        failures: dict[str, str] = {}

        async def list_one(name: str) -> None:
            try:
                with anyio.fail_after(timeout):
                    found[name] = await g.get_scheduled_tasks_async(name)
            except DaffiError as exc:
                failures[name] = exc.message or str(exc)
            except builtins.TimeoutError:
                failures[name] = f"no answer within {timeout:g} s"

        async def list_all() -> None:
            async with anyio.create_task_group() as tg:
                for name in names:
                    tg.start_soon(list_one, name)

        anyio.run(list_all)
    if process is not None and failures:
        raise CliError(f"cannot list the schedules of {process!r}: {failures[process]}")
    listing = [dict(item, node=name) for name in sorted(found) for item in found[name]]
    if as_json:
        echo_json(listing)
    else:
        echo_table(
            SCHEDULE_COLUMNS,
            [_schedule_row(item) for item in listing],
        )
    for name in sorted(failures):
        click.echo(f"daffi: cannot list the schedules of {name!r}: {failures[name]}", err=True)
    if failures:
        raise click.exceptions.Exit(1)


SCHEDULE_COLUMNS = (
    *("NODE", "UUID", "CALLBACK", "TRIGGER", "DURABLE"),
    *("NEXT RUN", "RUNS", "SKIPPED", "LAST ERROR"),
)


def _schedule_row(item: dict[str, Any]) -> list[str]:
    return [
        item["node"],
        str(item.get("uuid", "")),
        str(item.get("func_name", "")),
        describe_trigger(item),
        "yes" if item.get("durable") else "no",
        format_moment(item.get("next_run")),
        str(item.get("runs", 0)),
        str(item.get("skipped", 0)),
        item.get("last_error") or "-",
    ]


def describe_trigger(item: dict[str, Any]) -> str:
    """``every 5 s``, ``cron */5 * * * * (Europe/Berlin)``, ``at 2026-...``: in words."""
    kind = item.get("kind")
    if kind == "interval":
        return f"every {item['interval']:g} s"
    if kind == "cron":
        return f"cron {item['cron']} ({item.get('timezone') or 'local time'})"
    if kind == "at_time":
        times = item.get("at_time") or []
        if len(times) == 1:
            return f"at {format_moment(times[0])}"
        return f"at {len(times)} times"
    return str(kind)


@schedules.command("cancel")
@click.argument("process")
@click.argument("uuid")
@connection_options
@timeout_option
def cancel_schedule(connection: Connection, process: str, uuid: str, timeout: float) -> None:
    """Cancel schedule UUID on PROCESS (any unique start of the uuid will do).

    A run in progress is interrupted if it is async; no further runs start.
    """
    with connect(connection) as g:
        listing = _bounded(
            timeout, f"the schedules of {process!r}", g.get_scheduled_tasks_async, process
        )
        matching = [item for item in listing if str(item.get("uuid", "")).startswith(uuid)]
        if not matching:
            raise CliError(f"{process!r} runs no schedule whose uuid starts with {uuid!r}")
        if len(matching) > 1:
            raise CliError(
                f"{uuid!r} is the start of {len(matching)} schedules' uuids on {process!r}; "
                "give more of it"
            )
        full_uuid = str(matching[0]["uuid"])
        cancelled = _bounded(
            timeout,
            f"{process!r} to cancel {full_uuid}",
            g.cancel_scheduled_task_by_uuid_async,
            process,
            full_uuid,
        )
    if not cancelled:
        raise CliError(f"schedule {full_uuid} on {process!r} had already ended")
    click.echo(f"cancelled {matching[0].get('func_name')} {full_uuid} on {process}")


def _bounded(timeout: float, what: str, func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await func(*args)`` in a loop of its own, given up after ``timeout`` seconds.

    Raises:
        CliError: the time ran out, or ``func`` raised a daffi error.
    """
    from daffi.exceptions import DaffiError

    async def run() -> T:
        with anyio.fail_after(timeout):
            return await func(*args)

    try:
        return anyio.run(run)
    except DaffiError as exc:
        raise CliError(str(exc)) from None
    except builtins.TimeoutError:
        raise CliError(f"gave up waiting for {what} after {timeout:g} s") from None
