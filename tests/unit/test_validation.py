"""Arguments checked against annotations: strict scalars, shapes of containers, rich types.

The same structurer serves the callee (before the callback runs, on decoded values) and an
annotated fetcher (before anything is sent, on the caller's values); its errors are
``ArgumentTypeError``, a ``TypeError`` that names the parameter, the expected and the given type.
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import uuid
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Optional, Union

import attrs
import pytest

import daffi.codec
from daffi import Fetcher, fetcher
from daffi.codec import ArgumentTypeError, PayloadEncodeError, PayloadStructureError
from daffi.exceptions import ArgumentsError
from daffi.registry._store import CallbackRegistry


@dataclasses.dataclass
class Point:
    x: int
    y: int


@attrs.define
class Tag:
    name: str


class Color(enum.Enum):
    RED = "red"


def structurer(func: Callable[..., Any]) -> Callable[..., Any]:
    """The callee's structurer of ``func`` (as registration builds it)."""
    entry = CallbackRegistry().add(func, "f")
    assert entry.structure_args is not None
    structure = entry.structure_args

    def run(*args: Any, **kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
        return structure(list(args), dict(kwargs))

    return run


def add(a: int, b: int) -> int:
    return a + b


def test_int_given_a_str_fails_instead_of_concatenating() -> None:
    structure = structurer(add)
    with pytest.raises(ArgumentTypeError) as info:
        structure("1", "2")
    message = str(info.value)
    assert "argument 'a' of" in message
    assert "add() expects int, got '1' of type str" in message
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, ArgumentsError)  # how a caller receives the callee's
    assert isinstance(info.value, PayloadStructureError)


def test_a_list_for_an_int_fails() -> None:
    with pytest.raises(TypeError, match=r"argument 'a' .*expects int, got \[1\] of type list"):
        structurer(add)([1], [2])


def test_values_of_the_annotated_type_pass_unchanged() -> None:
    point, when, ident = Point(1, 2), datetime.now(timezone.utc), uuid.uuid4()

    def f(a: int, p: Point, when: datetime, ident: uuid.UUID, flag: bool) -> None: ...

    args, _ = structurer(f)(3, point, when, ident, True)
    assert args == [3, point, when, ident, True]
    assert args[1] is point
    assert args[2] is when


def test_unannotated_parameters_pass_through_unchanged() -> None:
    marker = object()

    def f(a, b: int, *rest, **extra):  # type: ignore[no-untyped-def]
        pass

    args, kwargs = structurer(f)(marker, 2, "x", [1], k=marker)
    assert args[0] is marker
    assert args[2:] == ["x", [1]]
    assert kwargs["k"] is marker
    assert CallbackRegistry().add(lambda a, b: None, "g").structure_args is None


@pytest.mark.parametrize(
    ("annotation", "good", "bad"),
    [
        (int, 5, "5"),
        (float, 1.5, "1.5"),
        (bool, True, 1),
        (str, "a", 1),
        (bytes, b"a", "a"),
        (list[str], ["a"], "ab"),
        (list[int], [1, 2], ["1"]),
        (list, [1], {"a": 1}),
        (dict[str, int], {"a": 1}, [("a", 1)]),
        (dict, {"a": 1}, [1]),
        (tuple[int, str], [1, "a"], [1]),
        (set[int], [1, 2], "12"),
        (Optional[int], None, "1"),  # noqa: UP045 - the spelling users write
        (int | None, 1, [1]),
        (Union[int, str], "a", [1]),  # noqa: UP007 - the spelling users write
        (Point, {"x": 1, "y": 2}, {"x": "1", "y": 2}),
        (Tag, {"name": "a"}, {"name": 1}),
        (Color, "red", "green"),
        (datetime, "2024-05-01T12:00:00", 1714564800),
        (uuid.UUID, "12345678-1234-5678-1234-567812345678", "nope"),
        (list[Point], [{"x": 1, "y": 2}], [{"x": 1}]),
    ],
)
def test_each_kind_of_annotation(annotation: Any, good: Any, bad: Any) -> None:
    def f(value: Any) -> None: ...

    f.__annotations__["value"] = annotation
    structure = structurer(f)
    structure(good)  # decodes as it did
    with pytest.raises(ArgumentTypeError, match=r"argument 'value' of .*f\(\) expects ") as info:
        structure(bad)
    assert f"of type {type(bad).__qualname__}" in str(info.value)


def test_rich_values_are_structured() -> None:
    def f(p: Point, t: Tag, c: Color, when: datetime, s: set[int]) -> None: ...

    args, _ = structurer(f)({"x": 1, "y": 2}, {"name": "n"}, "red", "2024-05-01T12:00:00", [1])
    assert args == [Point(1, 2), Tag("n"), Color.RED, datetime(2024, 5, 1, 12), {1}]


# ---------------------------------------------------------------- an annotated fetcher


@fetcher
def add_remote(a: int, b: int) -> int: ...


@fetcher
async def add_remote_async(a: int, b: int) -> int: ...


@fetcher
def untyped_remote(a, b):  # type: ignore[no-untyped-def]
    pass


def test_an_annotated_fetcher_checks_arguments_before_anything_is_sent() -> None:
    # No Global runs here: the check comes first, so the error is the argument's.
    with pytest.raises(ArgumentTypeError, match=r"argument 'b' of .*expects int, got 'x'"):
        add_remote(1, "x")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match=r"argument 'a'"):
        add_remote.call("1", 2, exec_modifier=daffi.BG)  # type: ignore[call-overload]
    with pytest.raises(ArgumentTypeError, match=r"argument 'a'"):
        add_remote_async(a=[1], b=2)  # type: ignore[arg-type]


def test_an_unannotated_fetcher_does_not_check() -> None:
    from daffi.exceptions import GlobalContextError

    # It goes on to look for a Global, and finds none.
    with pytest.raises(GlobalContextError):
        untyped_remote("1", [2])


class Scaled(Fetcher):
    def scale(self, value: float) -> float: ...

    def __post_init__(self) -> None:
        self.factor = 10
        self.post_inits = getattr(self, "post_inits", 0) + 1


class ScaledWithInit(Scaled):
    def __init__(self, offset: int) -> None:
        self.offset = offset  # no super().__init__(): __post_init__ still runs, after this

    def __post_init__(self) -> None:
        super().__post_init__()
        self.total = self.factor + self.offset


class ScaledChild(ScaledWithInit):
    pass


def test_fetcher_class_runs_post_init_once() -> None:
    scaled = Scaled()
    assert scaled.factor == 10
    assert scaled.post_inits == 1
    with_init = ScaledWithInit(5)
    assert (with_init.total, with_init.post_inits) == (15, 1)
    child = ScaledChild(1)
    assert (child.total, child.post_inits) == (11, 1)


def test_fetcher_methods_check_their_annotations() -> None:
    with pytest.raises(ArgumentTypeError, match=r"argument 'value' of Scaled.scale\(\)"):
        Scaled().scale("2")  # type: ignore[arg-type]


def test_an_unawaited_async_fetcher_call_is_named_in_the_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call = add_remote_async(1, 2)
        assert "fetcher add_remote_async" in repr(call)
        del call
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert "coroutine 'fetcher add_remote_async' was never awaited" in messages


# ---------------------------------------------------------------- the public codec hooks


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


def test_encoding_errors_point_at_the_public_hooks() -> None:
    class Opaque:
        __slots__ = ()

    with pytest.raises(PayloadEncodeError) as info:
        daffi.codec.PayloadCodec().encode_value(Opaque())
    message = str(info.value)
    assert "daffi.codec.register_unstructure_hook" in message
    assert "daffi._codec" not in message


def test_registered_hooks_carry_a_type_both_ways() -> None:
    daffi.codec.register_unstructure_hook(Money, lambda m: f"{m.cents}c")
    daffi.codec.register_structure_hook(Money, lambda v, _: Money(int(v.rstrip("c"))))

    def pay(amount: Money) -> None: ...

    codec = daffi.codec.PayloadCodec()
    codec.converter = daffi.codec.get_converter()
    decoded = codec.decode_args(codec.encode_args((Money(250),), {}))
    assert decoded == (["250c"], {})
    args, _ = structurer(pay)(*decoded[0])
    assert isinstance(args[0], Money)
    assert args[0].cents == 250
