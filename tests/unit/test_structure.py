"""The package's shape: no import cycle inside ``daffi/``, and the public names it promises.

Imports are read from the source, all of them: at module level, inside functions (imports
made on first use) and under ``if TYPE_CHECKING:``. A cycle through any of them is a cycle
between responsibilities, whether or not Python happens to tolerate it at import time.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib

import pytest

import daffi

ROOT = pathlib.Path(daffi.__file__).parent


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported(module: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module`` imports (a package's submodules named in
    ``from package import name`` count as imported)."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            names = [name for name in submodules if name in known] or [base]
        else:
            continue
        targets.update(name for name in names if name in known and name != module)
    return targets


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imported(name, path, known) for name, path in modules.items()}


def test_the_graph_sees_imports_of_every_kind() -> None:
    graph = import_graph()
    assert "daffi._executor" in graph["daffi._dispatch"]  # module level
    assert "daffi.scheduling" in graph["daffi._schedule_host"]  # inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_inside_daffi() -> None:
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


PUBLIC = {
    "daffi": {
        "BG",
        "BROADCAST",
        "FG",
        "PERIOD",
        "Args",
        "AsyncResult",
        "AuthenticationError",
        "Callback",
        "DaffiError",
        "Fetcher",
        "Global",
        "GlobalContextError",
        "InitializationError",
        "NodeInfo",
        "ProtocolError",
        "RemoteCallError",
        "RemoteStoppedUnexpectedly",
        "ScheduledTask",
        "SchedulerTask",
        "TimeoutError",
        "UnableToFindCandidate",
        "__version__",
        "callback",
        "fetcher",
        "get_g",
    },
    "daffi.decorators": {"__body_unknown__", "alias", "callback", "fetcher", "local"},
    "daffi.codec": {
        "ArgumentTypeError",
        "PayloadCodec",
        "PayloadDecodeError",
        "PayloadEncodeError",
        "PayloadStructureError",
        "get_converter",
        "register_structure_hook",
        "register_unstructure_hook",
    },
    "daffi.registry": {
        "Args",
        "Callback",
        "CallbackEntry",
        "CallbackRegistry",
        "Fetcher",
        "__body_unknown__",
        "alias",
        "callback",
        "default_registry",
        "fetcher",
        "local",
    },
    "daffi.metrics": {
        "DEFAULT_BUCKETS",
        "CallRecord",
        "CallbackStats",
        "CallbackSummary",
        "MetricsHook",
        "RunKind",
        "RunOutcome",
    },
    "daffi.execution_modifiers": {
        "ALL_EXEC_MODIFIERS",
        "AT_TIME_PAST_TOLERANCE",
        "BG",
        "BROADCAST",
        "FG",
        "MAX_AT_TIMES",
        "MIN_PERIOD_INTERVAL",
        "PERIOD",
        "AtTime",
        "Duration",
        "ExecModifier",
        "is_exec_modifier",
        "is_exec_modifier_type",
        "normalize_modifier",
    },
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_public_exports(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = set(getattr(module, "__all__", ()))
    assert exported == PUBLIC[module_name]
    for name in exported:
        value = getattr(module, name)  # every promised name is there
        if inspect.isclass(value) or inspect.isfunction(value):
            # public objects do not advertise private homes in their repr or pickles
            assert value.__module__.startswith("daffi")


def test_the_top_level_names_are_the_same_objects_as_their_homes() -> None:
    from daffi import execution_modifiers, registry

    assert daffi.FG is execution_modifiers.FG
    assert daffi.callback is registry.callback
    assert daffi.Fetcher is registry.Fetcher
