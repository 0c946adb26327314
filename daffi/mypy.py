"""A mypy plugin: the ``...`` body of a proxy fetcher is not an empty function body.

A proxy fetcher (``@fetcher`` over a function whose body is ``...``, ``pass`` or a docstring,
or a public method of a ``Fetcher`` subclass with such a body) never runs its body: calling
it runs the remote callback. mypy checks a body against its own return annotation before any
decorator applies, so under ``--strict`` (``warn_no_return``) it reports
``Missing return statement [empty-body]`` for ``def add(a: int, b: int) -> int: ...``.

Enable the plugin in the project's mypy configuration::

    [tool.mypy]
    plugins = ["daffi.mypy"]

It marks those bodies the way mypy marks definitions under ``if TYPE_CHECKING:`` (which are
exempt from the check for the same reason: they never run). Only modules that import daffi
are looked at, and a function counts as a fetcher when one of its decorators is spelled
``fetcher``, ``<module>.fetcher`` or a call of either (``@fetcher(BG)``), or when it is a public
method of a class whose bases include ``Fetcher`` or ``<module>.Fetcher`` (the plugin sees
the code before names are resolved, so it goes by these spellings). Nothing else changes:
arguments and return types are checked as without the plugin.
"""

from __future__ import annotations

from collections.abc import Iterable

from mypy.nodes import (
    Block,
    CallExpr,
    ClassDef,
    Decorator,
    Expression,
    FuncDef,
    IfStmt,
    Import,
    ImportAll,
    ImportFrom,
    MemberExpr,
    MypyFile,
    NameExpr,
    Statement,
)
from mypy.plugin import Plugin
from mypy.semanal import is_trivial_body

__all__ = ["DaffiPlugin", "plugin"]

_FETCHER = "fetcher"
_FETCHER_CLASS = "Fetcher"
# Decorators a Fetcher method may carry and still be a fetcher.
_METHOD_DECORATORS = frozenset({"alias"})


class DaffiPlugin(Plugin):
    """Exempts the trivial bodies of proxy fetchers from mypy's empty-body check."""

    def get_additional_deps(self, file: MypyFile) -> list[tuple[int, str, int]]:
        """Mark the proxy fetchers of a just-parsed module; no dependencies are added.

        Called once per parsed module, before semantic analysis: the only hook that sees a
        module-level function's body before mypy checks it.
        """
        if _imports_daffi(file.imports):
            _mark_statements(file.defs)
        return []


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return DaffiPlugin


def _imports_daffi(imports: Iterable[Statement]) -> bool:
    for node in imports:
        if isinstance(node, ImportFrom | ImportAll) and _is_daffi(node.id):
            return True
        if isinstance(node, Import) and any(_is_daffi(name) for name, _ in node.ids):
            return True
    return False


def _is_daffi(module: str) -> bool:
    return module == "daffi" or module.startswith("daffi.")


def _mark_statements(statements: Iterable[Statement]) -> None:
    for node in statements:
        if isinstance(node, Decorator):
            if any(_names(expr, _FETCHER) for expr in node.decorators):
                _exempt(node.func)
        elif isinstance(node, ClassDef):
            if any(_names(expr, _FETCHER_CLASS) for expr in node.base_type_exprs):
                _mark_methods(node.defs.body)
            _mark_statements(node.defs.body)
        elif isinstance(node, IfStmt):
            for block in [*node.body, node.else_body]:
                if block is not None:
                    _mark_statements(block.body)
        elif isinstance(node, Block):
            _mark_statements(node.body)


def _mark_methods(statements: Iterable[Statement]) -> None:
    for node in statements:
        if isinstance(node, FuncDef) and not node.name.startswith("_"):
            _exempt(node)
        elif (
            isinstance(node, Decorator)
            and not node.func.name.startswith("_")
            and all(_decorator_name(expr) in _METHOD_DECORATORS for expr in node.decorators)
        ):
            _exempt(node.func)


def _exempt(func: FuncDef) -> None:
    if is_trivial_body(func.body):
        func.is_mypy_only = True


def _names(expr: Expression, name: str) -> bool:
    return _decorator_name(expr) == name


def _decorator_name(expr: Expression) -> str | None:
    """``fetcher`` for ``fetcher``, ``daffi.fetcher``, ``fetcher(BG)``; None for the rest."""
    if isinstance(expr, CallExpr):
        expr = expr.callee
    if isinstance(expr, NameExpr | MemberExpr):
        return expr.name
    return None
