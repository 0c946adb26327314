"""How the commands print: aligned tables, JSON, times and signatures in plain words."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any

import click

__all__ = ["echo_json", "echo_table", "format_moment", "format_signature", "to_json"]

# inspect.Parameter kinds, as CallbackInfo carries them
_POSITIONAL_ONLY, _POSITIONAL_OR_KEYWORD, _VAR_POSITIONAL, _KEYWORD_ONLY, _VAR_KEYWORD = range(5)


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``headers``, columns aligned, the last one left ragged."""
    widths = [len(header) for header in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    for row in [list(headers), *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        click.echo("  ".join(cells).rstrip())


def to_json(value: Any) -> str:
    """``value`` as JSON text; values JSON has no form for (datetimes, bytes...) as text."""
    import msgspec

    try:
        return msgspec.json.encode(value, enc_hook=repr).decode()
    except (TypeError, msgspec.EncodeError):
        return json.dumps(value, default=repr)


def echo_json(value: Any) -> None:
    click.echo(to_json(value))


def format_moment(timestamp: float | None) -> str:
    """A POSIX time as local ISO 8601 with its UTC offset, to the second; ``-`` for none."""
    if timestamp is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(timestamp).astimezone()
    return moment.isoformat(timespec="seconds")


def format_signature(params: Sequence[Any]) -> str:
    """``(a, b=..., *args, c, **kw)`` from a callback's portable parameters."""
    parts: list[str] = []
    marked_keyword_only = False
    for index, param in enumerate(params):
        kind = param.kind
        if kind == _VAR_POSITIONAL:
            parts.append(f"*{param.name}")
            marked_keyword_only = True
        elif kind == _VAR_KEYWORD:
            parts.append(f"**{param.name}")
        else:
            if kind == _KEYWORD_ONLY and not marked_keyword_only:
                parts.append("*")
                marked_keyword_only = True
            parts.append(f"{param.name}=..." if param.has_default else param.name)
        following = params[index + 1].kind if index + 1 < len(params) else None
        if kind == _POSITIONAL_ONLY and following != _POSITIONAL_ONLY:
            parts.append("/")
    return "(" + ", ".join(parts) + ")"
