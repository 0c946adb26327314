"""A mypy plugin: proxy fetchers' ``...`` bodies, and the methods of ``Fetcher`` subclasses.

Enable it in the project's mypy configuration::

    [tool.mypy]
    plugins = ["daffi.mypy"]

It does two things; nothing else about type checking changes.

**Proxy bodies.** A proxy fetcher (``@fetcher`` over a function whose body is ``...``,
``pass`` or a docstring, or such a public method of a ``Fetcher`` subclass) never runs its
body: calling it runs the remote callback. mypy checks a body against its own return
annotation before any decorator applies, so under ``--strict`` it reports
``Missing return statement [empty-body]`` for ``def add(a: int, b: int) -> int: ...``. The
plugin marks those bodies the way mypy marks definitions under ``if TYPE_CHECKING:`` (exempt
for the same reason: they never run). For ``@fetcher`` functions this happens when mypy parses
a module that imports daffi, before names are resolved, so the decorator is recognised by its
spelling: ``fetcher``, ``<module>.fetcher``, a name it was imported as (``from daffi import
fetcher as f``) or a call of any of these (``@fetcher(BG)``).

**Fetcher methods.** At run time ``Fetcher.__init_subclass__`` turns each public method of a
subclass (not starting with ``_``, not ``@local``, a plain function: static and class methods,
properties and otherwise decorated methods are left alone; ``@alias`` is fine) into a fetcher
that runs with the class's ``exec_modifier``. The plugin makes mypy see the same: each such
method is typed as if decorated with one of the typing-only functions of
``daffi.registry._typing``, so that on an instance it is a fetcher with the method's
parameters (without ``self``), a ``.call(..., exec_modifier=X)`` typed like ``@fetcher``'s,
and calls that return what the modifier gives: ``T`` for ``FG`` (also when the class sets no
modifier), ``AsyncResult[T]`` for ``BG``, ``dict[str, T]`` for ``BROADCAST``,
``ScheduledTask`` for ``PERIOD(...)``, an awaitable of these for ``async def`` methods. The
modifier is read from the class body (``exec_modifier = PERIOD(interval="5s")``, ``= BG``,
``= BG(timeout=3)``, annotated or not), else from the nearest base class that sets it (the
body of one in the same module, the type mypy inferred for one in another module); one
spelled otherwise (``exec_modifier = MODIFIERS[name]``) types calls as ``Any``, arguments
still checked. This happens in semantic analysis, once a class's bases are known (so
``Fetcher`` may have any name) and before its body is analyzed: mypy's
``get_customize_class_mro_hook``, which the plugin answers for every class. mypy uses the
first plugin that answers it, so list ``daffi.mypy`` after any other plugin that customizes
class MROs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mypy.nodes import (
    GDEF,
    AssignmentStmt,
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
    SymbolTableNode,
    TypeInfo,
    Var,
)
from mypy.plugin import ClassDefContext, Plugin
from mypy.semanal import is_trivial_body
from mypy.types import CallableType, Instance, TypeType, get_proper_type

__all__ = ["DaffiPlugin", "plugin"]

_FETCHER = "fetcher"
_FETCHER_CLASS = "daffi.registry._fetcher.Fetcher"
# Decorators a Fetcher method may carry and still be a fetcher.
_METHOD_DECORATORS = frozenset({"alias"})
# The typing-only functions that type a Fetcher method, and the name their module is bound
# to in a module that needs them (a dunder no program defines, so it cannot clash).
_TYPING_MODULE = "daffi.registry._typing"
_TYPING_ALIAS = "__daffi_mypy_typing__"
# A modifier's name (as spelled, or its class) -> the function typing the methods it runs.
_METHOD_TYPES = {
    "FG": "fg_method",
    "BG": "bg_method",
    "BROADCAST": "broadcast_method",
    "PERIOD": "period_method",
}
_DEFAULT = "fg_method"  # Fetcher.exec_modifier
_UNKNOWN = "unknown_method"  # an exec_modifier the plugin cannot read
_MODIFIERS_MODULE = "daffi.execution_modifiers"
_PRI_MED = 10  # mypy.build.PRI_MED: the priority of a top-level ``import X``


class DaffiPlugin(Plugin):
    """Marks proxy fetchers' bodies and types the methods of ``Fetcher`` subclasses."""

    def get_additional_deps(self, file: MypyFile) -> list[tuple[int, str, int]]:
        """Mark the ``@fetcher`` proxy bodies of a just-parsed module.

        Called once per parsed module, before semantic analysis: the only hook that sees a
        module-level function's body before mypy checks it. A module that imports daffi
        also depends on the module of the typing functions, which its Fetcher classes use.
        """
        if not _imports_daffi(file.imports):
            return []
        _mark_statements(file.defs, _spellings(file.imports, _FETCHER))
        return [(_PRI_MED, _TYPING_MODULE, -1)]

    def get_customize_class_mro_hook(
        self, fullname: str
    ) -> Callable[[ClassDefContext], None] | None:
        """Every class: called once its bases are known and before its body is analyzed."""
        return _type_fetcher_class


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


def _spellings(imports: Iterable[Statement], name: str) -> frozenset[str]:
    """``name`` and what ``from daffi... import name as other`` renames it to."""
    found = {name}
    for node in imports:
        if isinstance(node, ImportFrom) and _is_daffi(node.id):
            found.update(alias for imported, alias in node.names if imported == name and alias)
    return frozenset(found)


def _mark_statements(statements: Iterable[Statement], fetcher_names: frozenset[str]) -> None:
    """Exempt the trivial bodies of the ``@fetcher`` functions among ``statements``."""
    for node in statements:
        if isinstance(node, Decorator):
            if any(_decorator_name(expr) in fetcher_names for expr in node.decorators):
                _exempt(node.func)
            _mark_statements(node.func.body.body, fetcher_names)
        elif isinstance(node, FuncDef):
            _mark_statements(node.body.body, fetcher_names)
        elif isinstance(node, ClassDef):
            _mark_statements(node.defs.body, fetcher_names)
        elif isinstance(node, IfStmt):
            for block in [*node.body, node.else_body]:
                if block is not None:
                    _mark_statements(block.body, fetcher_names)
        elif isinstance(node, Block):
            _mark_statements(node.body, fetcher_names)


def _type_fetcher_class(ctx: ClassDefContext) -> None:
    """Type the public methods of a ``Fetcher`` subclass as fetcher methods (in place).

    Runs during semantic analysis, when the class's bases are resolved and its body is not
    analyzed yet; each method becomes as if decorated with one of the typing functions of
    ``daffi.registry._typing``, chosen by the class's ``exec_modifier``. Idempotent: mypy
    may analyze a class more than once.
    """
    info = ctx.cls.info
    if info.fullname == _FETCHER_CLASS or not info.has_base(_FETCHER_CLASS):
        return
    typing_module = ctx.api.modules.get(_TYPING_MODULE)
    if typing_module is None:  # daffi without the typing functions: leave the class alone
        return
    body = ctx.cls.defs.body
    if not _type_methods(body, _modifier_of(info)):
        return
    names = ctx.api.modules[ctx.api.cur_mod_id].names
    if _TYPING_ALIAS not in names:
        names[_TYPING_ALIAS] = SymbolTableNode(
            GDEF, typing_module, module_public=False, module_hidden=True
        )


def _modifier_of(info: TypeInfo) -> str:
    """The typing function for the ``exec_modifier`` that ``info``'s instances run with.

    Read from the class bodies of the MRO (``exec_modifier = PERIOD(...)``, ``= BG``), or
    from the inferred type of a base class already checked (another module's).
    """
    for klass in info.mro:
        if klass.fullname == _FETCHER_CLASS:
            return _DEFAULT
        own = _own_modifier(klass.defn.defs.body)
        if own is not None:
            return own
        symbol = klass.names.get("exec_modifier")
        if symbol is not None and isinstance(symbol.node, Var):
            return _modifier_type(symbol.node)
    return _DEFAULT


def _modifier_type(var: Var) -> str:
    """The typing function for a base's ``exec_modifier`` variable, by its inferred type."""
    proper = get_proper_type(var.type)
    if isinstance(proper, TypeType):
        proper = get_proper_type(proper.item)
    if isinstance(proper, Instance):
        fullname = proper.type.fullname
    elif isinstance(proper, CallableType) and proper.is_type_obj():  # the class: ``= BG``
        fullname = proper.type_object().fullname
    else:
        return _UNKNOWN
    module, _, name = fullname.rpartition(".")
    if module == _MODIFIERS_MODULE and name in _METHOD_TYPES:
        return _METHOD_TYPES[name]
    return _UNKNOWN


def _own_modifier(body: Iterable[Statement]) -> str | None:
    """The typing function for the ``exec_modifier = ...`` a class body sets, if any."""
    found = None
    for node in body:
        if isinstance(node, AssignmentStmt) and any(
            isinstance(target, NameExpr) and target.name == "exec_modifier"
            for target in node.lvalues
        ):
            found = _METHOD_TYPES.get(_decorator_name(node.rvalue) or "", _UNKNOWN)
    return found


def _type_methods(body: list[Statement], method_type: str) -> bool:
    """Give the public methods of a Fetcher class body a typing decorator (in place).

    As at run time (``Fetcher.__init_subclass__`` converts plain functions only), a method
    is a fetcher when it does not start with ``_`` and has no decorator but ``@alias``;
    ``@local``, ``@staticmethod``, ``@property`` and other decorators leave it alone. Returns
    whether the body has such methods; False when it had them typed already.
    """
    typed = False
    for index, node in enumerate(body):
        if isinstance(node, FuncDef) and not node.name.startswith("_"):
            _exempt(node)
            body[index] = _decorated(node, method_type)
            typed = True
        elif (
            isinstance(node, Decorator)
            and not node.func.name.startswith("_")
            and all(_decorator_name(expr) in _METHOD_DECORATORS for expr in node.decorators)
        ):
            _exempt(node.func)
            typing = _typing_function(method_type, node)
            node.decorators.insert(0, typing)  # outermost: applied to what @alias returns
            node.original_decorators.insert(0, typing)
            typed = True
    return typed


def _decorated(func: FuncDef, method_type: str) -> Decorator:
    """``func`` as if written with ``@__daffi_mypy_typing__.<method_type>`` above it."""
    var = Var(func.name)
    var.is_ready = False
    var.set_line(func)
    func.is_decorated = True
    decorator = Decorator(func, [_typing_function(method_type, func)], var)
    decorator.set_line(func)
    return decorator


def _typing_function(method_type: str, at: FuncDef | Decorator) -> MemberExpr:
    expr = MemberExpr(NameExpr(_TYPING_ALIAS), method_type)
    expr.set_line(at)
    expr.expr.set_line(at)
    return expr


def _exempt(func: FuncDef) -> None:
    if is_trivial_body(func.body):
        func.is_mypy_only = True


def _decorator_name(expr: Expression) -> str | None:
    """``fetcher`` for ``fetcher``, ``daffi.fetcher``, ``fetcher(BG)``; None for the rest."""
    if isinstance(expr, CallExpr):
        expr = expr.callee
    if isinstance(expr, NameExpr | MemberExpr):
        return expr.name
    return None
