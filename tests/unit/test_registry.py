"""Callback and fetcher declarations: what gets registered, under which name, proxy or body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from daffi import BG, FG, Args
from daffi.decorators import __body_unknown__, alias, callback, fetcher, local
from daffi.exceptions import InitializationError
from daffi.registry import Callback, CallbackRegistry, Fetcher, default_registry

_SENTINEL = "zz_sentinel"


def _sentinel() -> None:
    pass


@pytest.fixture
def reg() -> CallbackRegistry:
    """A private registry holding one unrelated entry.

    The entry keeps the registry non-empty (an empty one has len() 0); the empty case is
    covered on its own by the ``test_empty_private_registry_*`` tests.
    """
    registry = CallbackRegistry()
    registry.add(_sentinel, _SENTINEL)
    return registry


def offered(registry: CallbackRegistry) -> list[str]:
    return sorted(name for name in registry.names() if name != _SENTINEL)


@pytest.fixture(autouse=True)
def clean_default_registry() -> Iterator[CallbackRegistry]:
    """Undo whatever a test registered in the process-wide registry (decorator forms)."""
    before = set(default_registry.names())
    try:
        yield default_registry
    finally:
        for name in set(default_registry.names()) - before:
            default_registry.remove(name)


# ---------------------------------------------------------------- Callback classes


def test_callback_class_registers_public_methods(reg: CallbackRegistry) -> None:
    class Service(Callback):
        registry = reg

        def ping(self) -> str:
            return "pong"

        async def fetch(self, key: str) -> str:
            return key

        def _private(self) -> None:
            pass

        @local
        def helper(self) -> None:
            pass

        @staticmethod
        def static_add(a: int, b: int) -> int:
            return a + b

        @classmethod
        def class_name(cls) -> str:
            return cls.__name__

        @alias("renamed")
        def original(self) -> str:
            return "original"

    assert offered(reg) == []  # nothing until the one instance exists
    service = Service()
    assert offered(reg) == ["class_name", "fetch", "ping", "renamed", "static_add"]
    assert reg.get("ping").fn() == "pong"  # bound: no self to pass
    assert reg.get("static_add").fn(2, 3) == 5
    assert reg.get("class_name").fn() == "Service"
    assert reg.get("renamed").fn() == "original"
    assert reg.get("fetch").is_async
    assert [p.name for p in reg.get("fetch").info.params] == ["key"]  # no self
    assert "original" not in reg
    # methods stay ordinary methods locally
    assert service.ping() == "pong"
    service._private()
    service.helper()


def test_alias_on_static_and_class_methods_in_either_order(reg: CallbackRegistry) -> None:
    class Tools(Callback):
        registry = reg

        @alias("s_above")
        @staticmethod
        def s1() -> int:
            return 1

        @staticmethod
        @alias("s_below")
        def s2() -> int:
            return 2

        @alias("c_above")
        @classmethod
        def c1(cls) -> int:
            return 3

    Tools()
    assert offered(reg) == ["c_above", "s_above", "s_below"]
    assert reg.get("s_below").fn() == 2
    assert reg.get("c_above").fn() == 3


def test_auto_init_instantiates_and_runs_post_init(reg: CallbackRegistry) -> None:
    events: list[str] = []

    class Auto(Callback):
        registry = reg
        auto_init = True

        def __post_init__(self) -> None:
            events.append("post_init")
            self.ready = True

        def status(self) -> bool:
            return self.ready

    assert events == ["post_init"]
    assert reg.get("status").fn() is True
    with pytest.raises(InitializationError):
        Auto()  # the one instance already exists


def test_explicit_init_with_arguments(reg: CallbackRegistry) -> None:
    class Scaler(Callback):
        registry = reg

        def __init__(self, factor: int) -> None:
            super().__init__()
            self.factor = factor

        def scale(self, x: int) -> int:
            return x * self.factor

    assert offered(reg) == []
    Scaler(3)
    assert reg.get("scale").fn(2) == 6
    with pytest.raises(InitializationError, match="Scaler"):
        Scaler(4)
    assert reg.get("scale").fn(2) == 6  # the first instance still serves


def test_second_instance_is_an_error(reg: CallbackRegistry) -> None:
    class Once(Callback):
        registry = reg

        def hello(self) -> str:
            return "hi"

    Once()
    with pytest.raises(InitializationError):
        Once()
    assert offered(reg) == ["hello"]


def test_callback_class_duplicate_name_rolls_back(reg: CallbackRegistry) -> None:
    def taken() -> None:
        pass

    reg.add(taken)

    class Clash(Callback):
        registry = reg

        def aaa_first(self) -> None:
            pass

        def taken(self) -> None:
            pass

    with pytest.raises(InitializationError, match="taken"):
        Clash()
    assert offered(reg) == ["taken"]  # nothing half-registered


def test_empty_private_registry_is_used_by_callback_classes() -> None:
    empty = CallbackRegistry()

    class Service(Callback):
        registry = empty

        def t_registry_empty_class(self) -> str:
            return "mine"

    Service()
    assert empty.names() == ["t_registry_empty_class"]
    assert "t_registry_empty_class" not in default_registry


def test_callback_and_fetcher_cannot_be_combined() -> None:
    with pytest.raises(InitializationError, match="Multiple inheritance"):

        class Both(Callback, Fetcher):
            pass

    with pytest.raises(InitializationError, match="Multiple inheritance"):

        class BothReversed(Fetcher, Callback):
            pass


# ---------------------------------------------------------------- @callback


def test_callback_decorator_registers_and_stays_callable(reg: CallbackRegistry) -> None:
    def double(x: int) -> int:
        return 2 * x

    cb = callback(double, registry=reg)
    assert cb(4) == 8
    assert reg.get("double").fn is double
    assert cb.alias == "double"


def test_empty_private_registry_is_used_by_the_decorator() -> None:
    empty = CallbackRegistry()

    def t_registry_empty_fn() -> str:
        return "mine"

    callback(t_registry_empty_fn, registry=empty)
    assert empty.names() == ["t_registry_empty_fn"]
    assert "t_registry_empty_fn" not in default_registry


def test_callback_decorator_on_default_registry(
    clean_default_registry: CallbackRegistry,
) -> None:
    @callback
    def t_registry_plain(x: int) -> int:
        return x + 1

    @alias("t_registry_alias_above")
    @callback
    def above(x: int) -> int:
        return x

    @callback
    @alias("t_registry_alias_below")
    def below(x: int) -> int:
        return x

    assert t_registry_plain(1) == 2
    assert above(3) == 3
    assert below(4) == 4
    names = set(clean_default_registry.names())
    assert {"t_registry_plain", "t_registry_alias_above", "t_registry_alias_below"} <= names
    assert "above" not in names
    assert "below" not in names


@pytest.mark.parametrize("kind", ["class", "lambda"])
def test_callback_decorator_rejects_classes_and_lambdas(reg: CallbackRegistry, kind: str) -> None:
    class NotAFunction:
        pass

    target: Any = NotAFunction if kind == "class" else (lambda x: x)
    with pytest.raises(InitializationError):
        callback(target, registry=reg)
    assert offered(reg) == []


def test_duplicate_callback_name_is_an_error(reg: CallbackRegistry) -> None:
    def same() -> int:
        return 1

    def other() -> int:
        return 2

    callback(same, registry=reg)
    with pytest.raises(InitializationError, match="same"):
        callback(same, registry=reg)
    with pytest.raises(InitializationError, match="same"):
        reg.add(other, "same")
    assert reg.get("same").fn is same


# ---------------------------------------------------------------- fetchers: proxy or body


def _proxy_pass(a):
    pass


def _proxy_ellipsis(a): ...


def _proxy_docstring(a):
    """Only a docstring."""


def _proxy_body_unknown(a):
    __body_unknown__(a)


def _proxy_bare_return(a):
    if a:
        return
    return


def _proxy_nested_def(a):
    def inner():
        return a


def _proxy_nested_class_and_lambda(a):
    class Inner:
        def method(self):
            return a

    _ = lambda: a  # noqa: E731


def _body_return(a):
    return a


def _body_return_args(a):
    return Args(a, b=1)


def _body_conditional_return(a):
    if a:
        return a, a
    __body_unknown__(a)


async def _async_proxy(a):
    """Docstring."""
    __body_unknown__(a)


async def _async_body(a):
    return a * 2


@pytest.mark.parametrize(
    ("fn", "proxy"),
    [
        (_proxy_pass, True),
        (_proxy_ellipsis, True),
        (_proxy_docstring, True),
        (_proxy_body_unknown, True),
        (_proxy_bare_return, True),
        (_proxy_nested_def, True),
        (_proxy_nested_class_and_lambda, True),
        (_async_proxy, True),
        (_body_return, False),
        (_body_return_args, False),
        (_body_conditional_return, False),
        (_async_body, False),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_proxy_detection(fn: Any, proxy: bool) -> None:
    assert fetcher(fn).proxy is proxy


def test_proxy_detection_in_fetcher_classes() -> None:
    class Remote(Fetcher):
        def proxy(self, a):
            pass

        def with_body(self, a):
            return a + 1

    remote = Remote()
    assert remote.proxy.proxy is True
    assert remote.with_body.proxy is False


# ---------------------------------------------------------------- fetchers: forms and modifiers


def test_fetcher_forms() -> None:
    @fetcher
    def bare(a):
        pass

    @fetcher()
    def empty_call(a):
        pass

    @fetcher(FG)
    def modifier_class(a):
        pass

    @fetcher(FG(timeout=1))
    def modifier_instance(a):
        pass

    @fetcher(exec_modifier=BG())
    def keyword(a):
        pass

    assert bare.exec_modifier is FG
    assert empty_call.exec_modifier is FG
    assert modifier_class.exec_modifier is FG
    assert modifier_instance.exec_modifier == FG(timeout=1)
    assert keyword.exec_modifier == BG()
    for f, name in [
        (bare, "bare"),
        (empty_call, "empty_call"),
        (modifier_class, "modifier_class"),
        (modifier_instance, "modifier_instance"),
        (keyword, "keyword"),
    ]:
        assert f.alias == name
        assert f.proxy is True
        assert f.__name__ == name


def test_fetcher_alias_above_and_below() -> None:
    @alias("remote_above")
    @fetcher
    def above(a):
        pass

    @fetcher
    @alias("remote_below")
    def below(a):
        pass

    @fetcher(FG(timeout=2))
    @alias("remote_with_modifier")
    def with_modifier(a):
        pass

    assert above.alias == "remote_above"
    assert below.alias == "remote_below"
    assert with_modifier.alias == "remote_with_modifier"


@pytest.mark.parametrize("bad", ["FG", 42, object()], ids=["str", "int", "object"])
def test_invalid_modifiers(bad: Any) -> None:
    with pytest.raises(InitializationError):

        @fetcher(exec_modifier=bad)
        def f(a):
            pass

    with pytest.raises(InitializationError):

        class Remote(Fetcher):
            exec_modifier = bad

            def f(self, a):
                pass


def test_invalid_modifier_given_positionally() -> None:
    with pytest.raises(InitializationError):
        fetcher("FG")  # neither a modifier nor a function


def test_invalid_modifier_given_with_the_function() -> None:
    def f(a):
        pass

    with pytest.raises(InitializationError):
        fetcher(f, exec_modifier="FG")
    ok = fetcher(f)
    with pytest.raises(InitializationError):
        ok.exec_modifier = "BG"
    assert ok.exec_modifier is FG


def test_fetcher_class_exec_modifier() -> None:
    class Default(Fetcher):
        def f(self, a):
            pass

    class Pinned(Fetcher):
        exec_modifier = FG(receiver="b")

        @alias("remote_g")
        def g(self, a):
            pass

        def _helper(self) -> int:
            return 1

        @local
        def stays_local(self) -> int:
            return 2

    assert Default().f.exec_modifier is FG
    pinned = Pinned()
    assert pinned.g.exec_modifier == FG(receiver="b")
    assert pinned.g.alias == "remote_g"
    assert pinned._helper() == 1
    assert pinned.stays_local() == 2


def test_fetcher_rejects_classes() -> None:
    class NotAFunction:
        pass

    with pytest.raises(InitializationError):
        fetcher(NotAFunction)


# ---------------------------------------------------------------- @callback with @fetcher


def test_callback_over_fetcher(clean_default_registry: CallbackRegistry) -> None:
    @callback
    @fetcher
    def t_registry_cb_over_fetcher(a):
        return a + 1

    assert isinstance(t_registry_cb_over_fetcher, fetcher)
    assert t_registry_cb_over_fetcher.proxy is True
    entry = clean_default_registry.get("t_registry_cb_over_fetcher")
    assert entry is not None
    assert entry.fn(1) == 2


def test_fetcher_over_callback(clean_default_registry: CallbackRegistry) -> None:
    @fetcher
    @callback
    def t_registry_fetcher_over_cb(a):
        return a + 1

    assert t_registry_fetcher_over_cb.proxy is True
    entry = clean_default_registry.get("t_registry_fetcher_over_cb")
    assert entry is not None
    assert entry.fn(1) == 2


def test_fetcher_over_callback_private_registry(reg: CallbackRegistry) -> None:
    def shared(a):
        return a * 3

    both = fetcher(callback(shared, registry=reg))
    assert both.proxy is True
    assert both.alias == "shared"
    assert reg.get("shared").fn(2) == 6
    again = callback(fetcher(shared), registry=CallbackRegistry())
    assert again.proxy is True


# ---------------------------------------------------------------- @local on a plain function


@pytest.mark.parametrize(
    "decorate",
    [
        pytest.param(lambda fn, reg: local(callback(fn, registry=reg)), id="local-over-callback"),
        pytest.param(lambda fn, reg: callback(local(fn), registry=reg), id="callback-over-local"),
        pytest.param(lambda fn, reg: local(fetcher(fn)), id="local-over-fetcher"),
        pytest.param(lambda fn, reg: fetcher(local(fn)), id="fetcher-over-local"),
    ],
)
def test_local_on_a_plain_callback_or_fetcher_is_refused(decorate: Any) -> None:
    """Issue 11, D10: it was silently ignored (the function was offered all the same)."""

    def plain(x: int) -> int:
        return x

    reg = CallbackRegistry()
    with pytest.raises(InitializationError, match=r"@local on the function 'plain' has no effect"):
        decorate(plain, reg)
    assert "plain" not in reg  # nothing stays offered
