"""A griffe extension for the docs site: Sphinx cross-reference roles as Markdown code.

daffi's docstrings are Google style but name other objects with Sphinx roles
(``:meth:`stop```, ``:class:`~daffi.Global```), which mkdocstrings would print literally.
Each role becomes inline code with the text Sphinx would show: ``stop()``, ``Global``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(
    r":(?:py:)?(?P<role>attr|meth|class|func|data|const|mod|exc|obj|type):"
    r"`(?P<tilde>~?)(?P<target>[^`<]*?)(?:\s*<(?P<explicit>[^`>]+)>)?`"
)


def _as_code(match: re.Match[str]) -> str:
    title = match["target"].strip()
    if match["explicit"] is None:
        if match["tilde"]:
            title = title.rsplit(".", 1)[-1]
        if match["role"] in ("meth", "func") and not title.endswith(")"):
            title += "()"
    return f"`{title}`"


def roles_as_code(text: str) -> str:
    """*text* with every Sphinx cross-reference role written as inline code."""
    return ROLE.sub(_as_code, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = roles_as_code(obj.docstring.value)
