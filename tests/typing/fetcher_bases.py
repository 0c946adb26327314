"""A Fetcher class that tests/typing/fetcher_methods.py derives from (another module, so the
plugin reads its ``exec_modifier`` from the type mypy inferred, not from its source)."""

from __future__ import annotations

from daffi import BG, Fetcher


class BackgroundBase(Fetcher):
    exec_modifier = BG

    def ping(self, n: int) -> int: ...
