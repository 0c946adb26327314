"""The cattrs converter that turns decoded payloads into annotated types, strictly.

msgspec decodes scalars to their own types already, so a value of another type is the
sender's mistake: ``int`` given ``"5"`` fails instead of cattrs' ``int("5")``, and a
container annotation takes only what msgspec decodes an array or a map to (cattrs would
build a list from any iterable: ``"ab"`` as ``['a', 'b']``). The types msgspec encodes
(datetimes, UUIDs, decimals, ``msgspec.Struct``) are parsed back by ``msgspec.convert``;
dataclasses and attrs classes are built by cattrs from their dicts. Used by
:mod:`daffi._structure` through the codec (:mod:`daffi._codec`).
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, NoReturn, Union

import msgspec

if typing.TYPE_CHECKING:
    import cattrs

__all__ = ["UNION_ORIGINS", "WrongShape", "make_converter", "type_name"]

#: the origins of a union annotation (``Union[a, b]`` and ``a | b``)
UNION_ORIGINS = (Union, types.UnionType)


def make_converter() -> cattrs.Converter:
    import cattrs
    from cattrs.strategies import configure_union_passthrough

    converter = cattrs.Converter()
    # msgspec decodes scalars to their own types already; anything else is the sender's mistake,
    # so be strict instead of cattrs' int("5") / bool("false") leniency.
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(bytes, _structure_bytes)
    from uuid import UUID  # with cattrs: only once a callback needs structuring

    # The forms msgspec encodes these types to are exactly what msgspec.convert parses back.
    for scalar in (datetime, date, time, timedelta, UUID, Decimal, bytearray):
        converter.register_structure_hook(scalar, _structure_with_msgspec)
    converter.register_structure_hook_factory(_is_struct, lambda _: _structure_with_msgspec)
    converter.register_structure_hook_factory(
        _is_record, functools.partial(_record_hook, converter)
    )
    configure_union_passthrough(str | bytes | int | float | bool | None, converter)
    _guard_containers(converter)
    return converter


# What a container annotation accepts: what msgspec decodes an array or a map to, and what a
# caller may pass for it (a tuple for a list: both travel as an array).
_ARRAY = (list, tuple)
_SET = (list, tuple, set, frozenset)
_CONTAINER_SHAPES: dict[Any, tuple[type, ...]] = {
    list: _ARRAY,
    tuple: _ARRAY,
    collections.abc.Sequence: _ARRAY,
    collections.abc.MutableSequence: _ARRAY,
    collections.deque: _ARRAY,
    set: _SET,
    frozenset: _SET,
    collections.abc.Set: _SET,
    collections.abc.MutableSet: _SET,
    dict: (dict,),
    collections.abc.Mapping: (dict,),
    collections.abc.MutableMapping: (dict,),
    collections.OrderedDict: (dict,),
    collections.defaultdict: (dict,),
}


def _guard_containers(converter: cattrs.Converter) -> None:
    """Make container hooks refuse values of another shape.

    cattrs builds a list from any iterable (``list[str]`` given ``"ab"`` gives ``["a", "b"]``)
    and a dict from any mapping-like value; this wraps the hook cattrs picks for a container
    type with a check of the value's kind, so the items are still structured by cattrs.
    """
    import threading

    building = threading.local()  # the types whose own hook is being looked up, per thread

    def shape_of(tp: Any) -> tuple[type, ...] | None:
        if typing.get_origin(tp) is None and not isinstance(tp, type):
            return None
        try:
            return _CONTAINER_SHAPES.get(typing.get_origin(tp) or tp)
        except TypeError:  # unhashable
            return None

    def is_guarded(tp: Any) -> bool:
        return shape_of(tp) is not None and tp not in getattr(building, "types", ())

    def guarded_hook(tp: Any) -> Callable[[Any, Any], Any]:
        shape = shape_of(tp)
        assert shape is not None
        inside: set[Any] = building.__dict__.setdefault("types", set())
        inside.add(tp)
        try:
            base = converter.get_structure_hook(tp, cache_result=False)
        finally:
            inside.discard(tp)

        def structure_container(value: Any, cl: Any) -> Any:
            if not isinstance(value, shape):
                raise WrongShape(f"expected {type_name(tp)}, got {type(value).__qualname__}")
            return base(value, cl)

        return structure_container

    converter.register_structure_hook_factory(is_guarded, guarded_hook)


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _is_record(tp: Any) -> bool:
    import attrs

    return isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp))


def _record_hook(converter: cattrs.Converter, cls: type) -> Callable[[Any, Any], Any]:
    build: Callable[[Any, Any], Any] = converter.gen_structure_attrs_fromdict(cls)

    def structure_record(value: Any, tp: Any) -> Any:
        return value if isinstance(value, cls) else build(value, tp)

    return structure_record


def _structure_with_msgspec(value: Any, tp: Any) -> Any:
    return value if type(value) is tp else msgspec.convert(value, tp)


# These are registered for the base classes, so cattrs also picks them for subclasses such as
# IntEnum or `class Color(str, Enum)`: build those from the value like cattrs does.
def _structure_int(value: Any, tp: Any) -> Any:
    if isinstance(value, int):
        return value if tp is int else tp(value)
    _wrong_scalar(value, tp)


def _structure_float(value: Any, tp: Any) -> Any:
    # An int is a valid float (PEP 484's numeric tower): it arrives as sent, as it did in
    # daffi 2, so `add(2, 3)` of `add(a: float, b: float)` still returns 5, not 5.0.
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return value if type(value) is tp or (tp is float and type(value) is int) else tp(value)
    _wrong_scalar(value, tp)


def _structure_bool(value: Any, tp: Any) -> bool:
    if isinstance(value, bool):
        return value
    _wrong_scalar(value, tp)


def _structure_str(value: Any, tp: Any) -> Any:
    if isinstance(value, str):
        return value if tp is str else tp(value)
    _wrong_scalar(value, tp)


def _structure_bytes(value: Any, tp: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return value if type(value) is tp else tp(value)
    _wrong_scalar(value, tp)


class WrongShape(TypeError):
    """A value of another kind than the annotation (a str for an int, a dict for a list)."""


def _wrong_scalar(value: Any, tp: Any) -> NoReturn:
    raise WrongShape(f"expected {type_name(tp)}, got {type(value).__qualname__}")


def type_name(tp: Any) -> str:
    """How messages name the annotation ``tp`` (``list[int]``, ``str | None``)."""
    if tp is None or tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in UNION_ORIGINS:
        return " | ".join(type_name(arg) for arg in args)
    if origin is not None and args and origin is not typing.Literal:
        return f"{type_name(origin)}[{', '.join(type_name(arg) for arg in args)}]"
    if isinstance(tp, type):
        return tp.__name__
    return repr(tp).replace("typing.", "")
