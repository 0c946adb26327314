"""The payload codec: what a callback receives for what a caller sends."""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import pathlib
import typing
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Optional

import attrs
import msgspec
import pytest

from daffi._codec import (
    PayloadCodec,
    PayloadDecodeError,
    PayloadEncodeError,
    PayloadStructureError,
    make_arg_structurer,
    make_return_structurer,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]
    color: Color
    created: datetime
    tags: frozenset[str] = frozenset()


@attrs.define
class Job:
    id: uuid.UUID
    price: Decimal
    when: date
    at: time | None = None


class Pair(msgspec.Struct):
    left: int
    right: str


class Opaque:
    """A plain class: neither msgspec nor cattrs know how to send it."""


class Celsius:
    def __init__(self, degrees: float) -> None:
        self.degrees = degrees

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Celsius) and other.degrees == self.degrees

    __hash__ = None  # type: ignore[assignment]


@pytest.fixture
def codec() -> PayloadCodec:
    return PayloadCodec()


def one_param(tp: Any) -> Callable[..., Any]:
    """A callback with a single parameter `value` annotated as `tp`."""

    def callback(value: Any) -> None:
        pass

    callback.__annotations__ = {"value": tp, "return": None}
    return callback


def returning(tp: Any) -> Callable[..., Any]:
    def fetcher() -> Any:
        pass

    fetcher.__annotations__ = {"return": tp}
    return fetcher


def send(codec: PayloadCodec, *args: Any, **kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """What the receiving node decodes from a call with these arguments."""
    return codec.decode_args(codec.encode_args(args, kwargs))


def assert_same(got: Any, expected: Any) -> None:
    """Equal, and of the same types all the way down (1 == 1.0 and Level.LOW == 1 do not count)."""
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(expected, (list, tuple)):
        for got_item, expected_item in zip(got, expected, strict=True):
            assert_same(got_item, expected_item)
    elif isinstance(expected, (set, frozenset)):
        assert {type(item) for item in got} == {type(item) for item in expected}
    elif isinstance(expected, dict):
        for key, item in expected.items():
            assert_same(got[key], item)
    elif dataclasses.is_dataclass(expected):
        for field in dataclasses.fields(expected):
            assert_same(getattr(got, field.name), getattr(expected, field.name))
    elif attrs.has(type(expected)):
        for attribute in attrs.fields(type(expected)):
            assert_same(getattr(got, attribute.name), getattr(expected, attribute.name))


UTC_NOON = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)

RICH_VALUES = [
    pytest.param(Point, Point(1, 2), id="dataclass"),
    pytest.param(
        Shape,
        Shape("tri", [Point(0, 0), Point(1, 1)], Color.BLUE, UTC_NOON, frozenset({"a", "b"})),
        id="nested-dataclass",
    ),
    pytest.param(
        Job,
        Job(uuid.uuid4(), Decimal("19.99"), date(2024, 5, 1), time(8, 30)),
        id="attrs-class",
    ),
    pytest.param(Pair, Pair(1, "one"), id="msgspec-struct"),
    pytest.param(Color, Color.RED, id="enum"),
    pytest.param(Level, Level.HIGH, id="int-enum"),
    pytest.param(datetime, UTC_NOON, id="datetime-utc"),
    pytest.param(datetime, datetime(2024, 5, 1, 12, 0, 30, 123), id="datetime-naive"),
    pytest.param(date, date(2024, 2, 29), id="date"),
    pytest.param(time, time(23, 59, 1), id="time"),
    pytest.param(timedelta, timedelta(days=1, seconds=5), id="timedelta"),
    pytest.param(uuid.UUID, uuid.uuid4(), id="uuid"),
    pytest.param(Decimal, Decimal("3.14159265358979323846"), id="decimal"),
    pytest.param(set[int], {1, 2, 3}, id="set"),
    pytest.param(frozenset[str], frozenset({"a"}), id="frozenset"),
    pytest.param(set[uuid.UUID], {uuid.uuid4(), uuid.uuid4()}, id="set-of-uuid"),
    pytest.param(tuple[int, ...], (1, 2, 3), id="tuple-variadic"),
    pytest.param(tuple[int, str], (1, "a"), id="tuple-fixed"),
    pytest.param(tuple, (1, "a"), id="tuple-bare"),
    pytest.param(list[Point], [Point(1, 2), Point(3, 4)], id="list-of-dataclass"),
    pytest.param(dict[str, Point], {"a": Point(1, 2)}, id="dict-of-dataclass"),
    pytest.param(Optional[Point], Point(5, 6), id="optional-value"),  # noqa: UP045
    pytest.param(Optional[Point], None, id="optional-none"),  # noqa: UP045
    pytest.param(Point | None, Point(7, 8), id="pep604-optional"),
    pytest.param(datetime | None, UTC_NOON, id="optional-datetime"),
    pytest.param(Point | Job, Job(uuid.uuid4(), Decimal(1), date.today()), id="union-of-records"),
    pytest.param(int | Point, 5, id="union-of-scalar-and-record"),
    pytest.param(bytearray, bytearray(b"\x00\xff"), id="bytearray"),
    pytest.param(pathlib.Path, pathlib.Path("/tmp/x"), id="cattrs-known-type"),
]


@pytest.mark.parametrize(("annotation", "value"), RICH_VALUES)
def test_annotated_argument_round_trips_to_the_original_type(
    codec: PayloadCodec, annotation: Any, value: Any
) -> None:
    structure = make_arg_structurer(one_param(annotation), codec)
    assert structure is not None
    args, kwargs = structure(*send(codec, value))
    assert_same(args[0], value)
    args, kwargs = structure(*send(codec, value=value))
    assert_same(kwargs["value"], value)


@pytest.mark.parametrize(("annotation", "value"), RICH_VALUES)
def test_annotated_return_value_round_trips(
    codec: PayloadCodec, annotation: Any, value: Any
) -> None:
    structure = make_return_structurer(returning(annotation), codec)
    assert structure is not None
    assert_same(structure(codec.decode_value(codec.encode_value(value))), value)


def test_aware_datetime_keeps_its_instant_but_arrives_in_utc(codec: PayloadCodec) -> None:
    paris = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    structure = make_arg_structurer(one_param(datetime), codec)
    assert structure is not None
    (got,), _ = structure(*send(codec, paris))
    assert got == paris
    assert got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        pytest.param(Point(1, 2), {"x": 1, "y": 2}, id="dataclass-as-dict"),
        pytest.param(Pair(1, "a"), {"left": 1, "right": "a"}, id="struct-as-dict"),
        pytest.param((1, 2), [1, 2], id="tuple-as-list"),
        pytest.param({3}, [3], id="set-as-list"),
        pytest.param(Color.RED, "red", id="enum-as-value"),
        pytest.param(Level.HIGH, 2, id="int-enum-as-int"),
        pytest.param(UTC_NOON, UTC_NOON, id="aware-datetime-stays-datetime"),
        pytest.param(datetime(2024, 5, 1, 12), "2024-05-01T12:00:00", id="naive-datetime-as-str"),
        pytest.param(date(2024, 5, 1), "2024-05-01", id="date-as-str"),
        pytest.param(time(12, 30), "12:30:00", id="time-as-str"),
        pytest.param(timedelta(seconds=5), "PT5S", id="timedelta-as-str"),
        pytest.param(uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001", id="uuid-as-str"),
        pytest.param(Decimal("1.50"), "1.50", id="decimal-as-str"),
        pytest.param(bytearray(b"ab"), b"ab", id="bytearray-as-bytes"),
        pytest.param({"k": [1, None, 2.5, True]}, {"k": [1, None, 2.5, True]}, id="builtins"),
    ],
)
def test_without_annotations_callee_gets_plain_msgspec_decoding(
    codec: PayloadCodec, sent: Any, received: Any
) -> None:
    args, kwargs = send(codec, sent, key=sent)
    assert_same(args, [received])
    assert_same(kwargs, {"key": received})
    assert_same(codec.decode_value(codec.encode_value(sent)), received)


def test_empty_call_round_trips(codec: PayloadCodec) -> None:
    assert send(codec) == ([], {})


def no_annotations(a, b=1, *args, **kwargs):  # type: ignore[no-untyped-def]
    pass


def plain_annotations(
    a: int,
    b: str,
    c: float,
    d: bool,
    e: bytes,
    f: None,
    g: Any,
    h: object,
    i: list,  # type: ignore[type-arg]
    j: dict,  # type: ignore[type-arg]
    k: list[int],
    m: dict[str, list[float]],
    n: str | None,
    *rest: int,
    **options: Any,
) -> dict[str, Any]:
    return {}


def test_plain_annotations_are_checked(codec: PayloadCodec) -> None:
    """Plain types (int, str, list[int], ...) are checked, not skipped: ``add(a: int)``
    given ``"1"`` must fail, not become ``"12"``."""
    assert make_arg_structurer(plain_annotations, codec) is not None


@pytest.mark.parametrize("func", [no_annotations, print, len])
def test_no_structurer_when_nothing_needs_structuring(
    codec: PayloadCodec, func: Callable[..., Any]
) -> None:
    assert make_arg_structurer(func, codec) is None
    assert make_return_structurer(func, codec) is None


@pytest.mark.parametrize("annotation", [None, Any, Iterator])
def test_no_return_structurer_for_plain_return_types(codec: PayloadCodec, annotation: Any) -> None:
    assert make_return_structurer(returning(annotation), codec) is None


def test_only_annotated_rich_parameters_are_touched(codec: PayloadCodec) -> None:
    def callback(raw, count: int, when: datetime, note: str = "") -> None:  # type: ignore[no-untyped-def]
        pass

    structure = make_arg_structurer(callback, codec)
    assert structure is not None
    args, kwargs = send(codec, {"x": 1}, 3, UTC_NOON.replace(tzinfo=None), note="n")
    structured_args, structured_kwargs = structure(args, kwargs)
    assert structured_args is args  # updated in place, no copies on the hot path
    assert structured_kwargs is kwargs
    assert args == [{"x": 1}, 3, UTC_NOON.replace(tzinfo=None)]
    assert kwargs == {"note": "n"}


class Plotter:
    def draw(self, where: Point, color: Color = Color.RED) -> None:
        pass

    @classmethod
    def at(cls, when: datetime) -> None:
        pass

    @staticmethod
    def static(ids: set[uuid.UUID]) -> None:
        pass

    def __call__(self, where: Point) -> None:
        pass


@pytest.mark.parametrize(
    ("func", "value"),
    [
        pytest.param(Plotter().draw, Point(1, 2), id="bound-method"),
        pytest.param(Plotter.at, UTC_NOON, id="classmethod"),
        pytest.param(Plotter.static, {uuid.uuid4()}, id="staticmethod"),
        pytest.param(Plotter(), Point(3, 4), id="callable-object"),
        pytest.param(
            functools.partial(Plotter().draw, color=Color.BLUE), Point(5, 6), id="partial"
        ),
    ],
)
def test_methods_map_the_first_argument_past_self(
    codec: PayloadCodec, func: Callable[..., Any], value: Any
) -> None:
    structure = make_arg_structurer(func, codec)
    assert structure is not None
    args, _ = structure(*send(codec, value))
    assert_same(args[0], value)


def test_keyword_arguments_are_structured_by_name(codec: PayloadCodec) -> None:
    structure = make_arg_structurer(Plotter().draw, codec)
    assert structure is not None
    _, kwargs = structure(*send(codec, color=Color.BLUE, where=Point(1, 2)))
    assert_same(kwargs, {"color": Color.BLUE, "where": Point(1, 2)})


def test_star_args_and_star_kwargs_structure_every_extra_value(codec: PayloadCodec) -> None:
    def callback(first: Point, /, *points: Point, scale: Decimal, **ids: uuid.UUID) -> None:
        pass

    structure = make_arg_structurer(callback, codec)
    assert structure is not None
    first_id, other_id = uuid.uuid4(), uuid.uuid4()
    args, kwargs = structure(
        *send(
            codec,
            Point(0, 0),
            Point(1, 1),
            Point(2, 2),
            scale=Decimal("1.5"),
            first=first_id,  # positional-only name: lands in **ids
            other=other_id,
        )
    )
    assert_same(args, [Point(0, 0), Point(1, 1), Point(2, 2)])
    assert_same(kwargs, {"scale": Decimal("1.5"), "first": first_id, "other": other_id})


def test_values_already_of_the_right_type_pass_through_unchanged(codec: PayloadCodec) -> None:
    def callback(p: Point, when: datetime, job_id: uuid.UUID, maybe: Point | None) -> None:
        pass

    structure = make_arg_structurer(callback, codec)
    assert structure is not None
    values = [Point(1, 2), UTC_NOON, uuid.uuid4(), Point(3, 4)]
    args, _ = structure(list(values), {})
    assert all(got is value for got, value in zip(args, values, strict=True))


async def async_point() -> Point:
    return Point(0, 0)


def gen_points() -> Iterator[Point]:
    yield Point(0, 0)


def gen_points_full() -> Generator[Point, None, None]:
    yield Point(0, 0)


async def agen_points() -> AsyncIterator[Point]:
    yield Point(0, 0)


async def agen_points_full() -> AsyncGenerator[Point, None]:
    yield Point(0, 0)


def awaitable_point() -> typing.Coroutine[Any, Any, Point]:
    return async_point()


@pytest.mark.parametrize(
    "func",
    [async_point, gen_points, gen_points_full, agen_points, agen_points_full, awaitable_point],
)
def test_return_structurer_unwraps_async_and_structures_each_stream_item(
    codec: PayloadCodec, func: Callable[..., Any]
) -> None:
    structure = make_return_structurer(func, codec)
    assert structure is not None
    items = [codec.decode_value(codec.encode_value(Point(i, i))) for i in range(3)]
    assert [structure(item) for item in items] == [Point(0, 0), Point(1, 1), Point(2, 2)]


def test_stream_of_plain_items_is_checked_not_converted(codec: PayloadCodec) -> None:
    def numbers() -> Iterator[int]:
        yield 1

    structure = make_return_structurer(numbers, codec)
    assert structure is not None
    assert structure(1) == 1
    with pytest.raises(PayloadStructureError):
        structure("1")


def unresolvable(missing: NoSuchType, when: datetime) -> NoSuchType:  # type: ignore[name-defined]  # noqa: F821
    pass


def test_unresolvable_annotation_only_disables_structuring_for_that_parameter(
    codec: PayloadCodec, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="daffi.codec"):
        structure = make_arg_structurer(unresolvable, codec)
        assert make_return_structurer(unresolvable, codec) is None
    assert structure is not None
    args, _ = structure(*send(codec, {"raw": 1}, UTC_NOON.replace(tzinfo=None)))
    assert args == [{"raw": 1}, UTC_NOON.replace(tzinfo=None)]
    assert "NoSuchType" in caplog.text


def test_unsupported_annotation_does_not_fail_registration(codec: PayloadCodec) -> None:
    T = typing.TypeVar("T")
    assert make_arg_structurer(one_param(T), codec) is None


def test_hooks_registered_on_the_converter_make_a_type_sendable(codec: PayloadCodec) -> None:
    with pytest.raises(PayloadEncodeError):
        codec.encode_args((Celsius(21.5),), {})
    codec.converter.register_unstructure_hook(Celsius, lambda c: c.degrees)
    codec.converter.register_structure_hook(Celsius, lambda v, _: Celsius(v))
    structure = make_arg_structurer(one_param(list[Celsius]), codec)
    assert structure is not None
    args, _ = structure(*send(codec, [Celsius(21.5), Celsius(-3.0)]))
    assert args == [[Celsius(21.5), Celsius(-3.0)]]


# --- errors ------------------------------------------------------------------------------------


def test_unencodable_argument_names_position_type_and_fix(codec: PayloadCodec) -> None:
    with pytest.raises(TypeError, match=r"argument 1 of type Opaque: .*attrs class"):
        codec.encode_args((1, Opaque()), {})


def test_unencodable_nested_value_names_the_container_and_the_culprit(
    codec: PayloadCodec,
) -> None:
    with pytest.raises(PayloadEncodeError, match=r"argument 0 of type list: .*type Opaque"):
        codec.encode_args(([1, Opaque()],), {})


def test_unencodable_keyword_argument_and_value(codec: PayloadCodec) -> None:
    with pytest.raises(PayloadEncodeError, match=r"keyword argument 'thing' of type Opaque"):
        codec.encode_args((), {"thing": Opaque()})
    with pytest.raises(PayloadEncodeError, match=r"value of type Opaque"):
        codec.encode_value(Opaque())


def test_integer_beyond_64_bits_is_a_clear_type_error(codec: PayloadCodec) -> None:
    with pytest.raises(PayloadEncodeError, match=r"argument 0 of type int: .*64-bit"):
        codec.encode_args((2**70,), {})


def test_self_containing_value_is_a_clear_type_error(codec: PayloadCodec) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(PayloadEncodeError, match="contains itself"):
        codec.encode_value(loop)


def test_unstructurable_argument_names_parameter_type_and_value(codec: PayloadCodec) -> None:
    def schedule(when: datetime) -> None:
        pass

    structure = make_arg_structurer(schedule, codec)
    assert structure is not None
    with pytest.raises(
        TypeError, match=r"argument 'when' of .*schedule\(\) expects datetime, got 'abc'"
    ):
        structure(*send(codec, "abc"))
    with pytest.raises(PayloadStructureError, match="argument 'when'"):
        structure(*send(codec, when="abc"))


def test_bad_dataclass_field_is_reported_with_its_path(codec: PayloadCodec) -> None:
    structure = make_arg_structurer(one_param(list[Point]), codec)
    assert structure is not None
    with pytest.raises(PayloadStructureError, match=r"expects list\[Point\].*\$\[1\]\.y"):
        structure(*send(codec, [{"x": 1, "y": 2}, {"x": 1, "y": "two"}]))


def test_scalars_are_not_coerced(codec: PayloadCodec) -> None:
    structure = make_arg_structurer(one_param(Point), codec)
    assert structure is not None
    with pytest.raises(PayloadStructureError, match="expected int"):
        structure(*send(codec, {"x": "1", "y": 2}))


def test_star_args_errors_name_the_item(codec: PayloadCodec) -> None:
    def callback(*amounts: Decimal, **when: datetime) -> None:
        pass

    structure = make_arg_structurer(callback, codec)
    assert structure is not None
    with pytest.raises(PayloadStructureError, match=r"argument \*amounts\[1\] .*expects Decimal"):
        structure(*send(codec, "1.0", "lots"))
    with pytest.raises(PayloadStructureError, match=r"argument \*\*when\['start'\]"):
        structure(*send(codec, start="soon"))


def test_bad_enum_value_and_stream_item(codec: PayloadCodec) -> None:
    structure = make_arg_structurer(Plotter().draw, codec)
    assert structure is not None
    with pytest.raises(
        PayloadStructureError, match=r"argument 'color' .*expects Color, got 'green'"
    ):
        structure(*send(codec, Point(1, 1), "green"))
    item = make_return_structurer(gen_points, codec)
    assert item is not None
    with pytest.raises(PayloadStructureError, match=r"stream item of gen_points\(\) expects Point"):
        item(5)


def test_codec_structure_into_any_type(codec: PayloadCodec) -> None:
    assert codec.structure(["1.5", "2"], tuple[Decimal, ...]) == (Decimal("1.5"), Decimal("2"))
    with pytest.raises(PayloadStructureError, match="expects UUID, got 'nope'"):
        codec.structure("nope", uuid.UUID)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xc1", b"\x92\x90", b"\x92\x90\x80\x00", b"\x93\x90\x80\x80", b"\x92\x90\x81\x01\x02"],
    ids=["empty", "invalid-opcode", "truncated", "trailing", "three-items", "int-kwarg-key"],
)
def test_garbage_arguments_raise_value_error(codec: PayloadCodec, garbage: bytes) -> None:
    with pytest.raises(ValueError, match="cannot decode call arguments") as info:
        codec.decode_args(garbage)
    assert isinstance(info.value, PayloadDecodeError)


def test_garbage_value_raises_value_error(codec: PayloadCodec) -> None:
    with pytest.raises(PayloadDecodeError, match="cannot decode payload value"):
        codec.decode_value(b"\xd9\x10short")


# --- buffers -----------------------------------------------------------------------------------


def test_decode_from_a_memoryview_slice_of_a_receive_buffer(codec: PayloadCodec) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB
    args_payload = codec.encode_args((big, Point(1, 2)), {"n": 1})
    value_payload = codec.encode_value([big])
    buffer = bytearray(b"HDR!" + args_payload + value_payload + b"more")
    view = memoryview(buffer)
    args_view = view[4 : 4 + len(args_payload)]
    value_view = view[4 + len(args_payload) : 4 + len(args_payload) + len(value_payload)]

    args, kwargs = codec.decode_args(args_view)
    assert args == [big, {"x": 1, "y": 2}]
    assert kwargs == {"n": 1}
    assert codec.decode_value(value_view) == [big]


def test_an_int_for_a_float_parameter_arrives_as_sent(codec: PayloadCodec) -> None:
    """PEP 484 takes an int where a float is annotated; it is not turned into a float (daffi
    2 sent it as is: ``add(2, 3)`` of ``add(a: float, b: float)`` returns 5, not 5.0)."""

    def add(a: float, b: float) -> float:
        return a + b

    structure = make_arg_structurer(add, codec)
    assert structure is not None
    args, _ = structure(*send(codec, 2, 3.5))
    assert args == [2, 3.5]
    assert type(args[0]) is int
    with pytest.raises(PayloadStructureError):
        structure(*send(codec, "2", 3.5))
