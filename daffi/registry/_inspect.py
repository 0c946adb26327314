"""What daffi learns from a function: its portable signature and whether its body is a proxy."""

from __future__ import annotations

import ast
import dis
import inspect
import logging
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

from daffi._protocol import CallbackInfo, ParamInfo
from daffi.exceptions import InitializationError

__all__ = [
    "callback_info",
    "check_arguments",
    "function_kind",
    "has_body",
    "signature_from_info",
]

logger = logging.getLogger("daffi.registry")


class _RemoteDefault:
    """Stands for a default value that lives on the remote side."""

    def __repr__(self) -> str:
        return "..."


_REMOTE_DEFAULT = _RemoteDefault()


def function_kind(fn: Callable[..., Any]) -> tuple[bool, bool, bool]:
    """Return ``(is_async, is_generator, is_async_generator)`` for ``fn``."""
    target = inspect.unwrap(fn)
    if isinstance(target, staticmethod | classmethod):
        target = target.__func__
    return (
        inspect.iscoroutinefunction(target),
        inspect.isgeneratorfunction(target),
        inspect.isasyncgenfunction(target),
    )


def callback_info(name: str, fn: Callable[..., Any]) -> CallbackInfo:
    """Describe ``fn`` (as it will be called: bound methods without ``self``) for peers."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise InitializationError(f"cannot read the signature of callback {name!r}: {exc}") from exc
    params = tuple(
        ParamInfo(p.name, int(p.kind), p.default is not inspect.Parameter.empty)
        for p in sig.parameters.values()
    )
    is_async, is_gen, is_async_gen = function_kind(fn)
    return CallbackInfo(name, params, is_async or is_async_gen, is_gen or is_async_gen)


def signature_from_info(info: CallbackInfo) -> inspect.Signature:
    """Rebuild an ``inspect.Signature`` from a peer's portable description."""
    return inspect.Signature(
        [
            inspect.Parameter(
                p.name,
                inspect._ParameterKind(p.kind),
                default=_REMOTE_DEFAULT if p.has_default else inspect.Parameter.empty,
            )
            for p in info.params
        ]
    )


def check_arguments(
    sig: inspect.Signature, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Raise a clear ``TypeError`` subclass when ``args``/``kwargs`` cannot bind ``sig``."""
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        from daffi.exceptions import ArgumentsError

        raise ArgumentsError(
            f"callback {name!r} expects {name}{sig} but got {_describe(args, kwargs)}: {exc}"
        ) from None


def _describe(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = []
    if args or not kwargs:
        parts.append(f"{len(args)} positional argument{'s' if len(args) != 1 else ''}")
    if kwargs:
        parts.append(f"keyword argument{'s' if len(kwargs) != 1 else ''} {sorted(kwargs)}")
    return " and ".join(parts)


# ---------------------------------------------------------------------- proxy detection


def has_body(fn: Callable[..., Any]) -> bool:
    """Whether a fetcher's body produces the arguments (else it is a proxy).

    A body produces arguments when it has a ``return`` with a value or a ``yield``, outside
    nested functions and classes. Decided from the parsed code; when the source is not
    available, from the bytecode.
    """
    target = inspect.unwrap(fn)
    if isinstance(target, staticmethod | classmethod):
        target = target.__func__
    _, is_gen, is_async_gen = function_kind(target)
    if is_gen or is_async_gen:
        return True
    node = _function_node(target)
    if node is None:
        return _bytecode_returns_value(target)
    return any(_returns_value(stmt) for stmt in node.body)


def _function_node(fn: Callable[..., Any]) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    name = getattr(fn, "__name__", None)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
    return None


def _walk_own(node: ast.AST) -> Iterator[ast.AST]:
    """Walk ``node`` without entering nested functions, lambdas or classes."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        yield from _walk_own(child)


def _returns_value(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return False  # a nested definition's returns are its own
    for node in _walk_own(stmt):
        if isinstance(node, ast.Return) and node.value is not None:
            return True
        if isinstance(node, ast.Yield | ast.YieldFrom):
            return True
    return False


def _bytecode_returns_value(fn: Callable[..., Any]) -> bool:
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    previous: dis.Instruction | None = None
    for instr in dis.get_instructions(code):
        if instr.opname == "RETURN_CONST" and instr.argval is not None:
            return True
        if instr.opname == "RETURN_VALUE" and not (
            previous is not None and previous.opname == "LOAD_CONST" and previous.argval is None
        ):
            return True
        previous = instr
    return False
