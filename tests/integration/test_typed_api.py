"""The typed API between in-process nodes: annotations checked at both ends, what each
modifier returns, Fetcher.__post_init__, and results that cannot be sent back."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from datetime import datetime, timezone

import anyio
import pytest

from daffi import BG, AsyncResult, Fetcher, RemoteCallError, fetcher
from daffi.codec import ArgumentTypeError
from daffi.decorators import alias
from daffi.exceptions import ArgumentsError

from .conftest import NodeFactory

pytestmark = pytest.mark.anyio


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


# ---------------------------------------------------------------- fetchers


@fetcher
async def add(a: int, b: int) -> int: ...


@alias("add")
@fetcher
async def add_untyped(a, b):  # type: ignore[no-untyped-def]
    """Sends whatever it is given: the callee's annotations are the only check."""


@alias("concat")
@fetcher
async def concat_untyped(a, b):  # type: ignore[no-untyped-def]
    pass


@fetcher
async def paint(
    p: Point, color: Color, when: datetime, ident: uuid.UUID, tags: list[str] | None
) -> str: ...


@fetcher
async def unsendable() -> object: ...


class Scaler(Fetcher):
    def __post_init__(self) -> None:
        self.factor = 10

    async def add(self, a: int, b: int) -> int:
        return a * self.factor, b  # type: ignore[return-value]  # a body: what it returns is sent


# ---------------------------------------------------------------- callbacks


def recording_add(calls: list[tuple[object, object]]):  # type: ignore[no-untyped-def]
    def add_cb(a: int, b: int) -> int:
        calls.append((a, b))
        return a + b

    return add_cb


def concat_cb(a, b):  # type: ignore[no-untyped-def]
    return a + b


def paint_cb(
    p: Point, color: Color, when: datetime, ident: uuid.UUID, tags: list[str] | None
) -> str:
    assert isinstance(p, Point)
    assert isinstance(color, Color)
    assert isinstance(when, datetime)
    assert isinstance(ident, uuid.UUID)
    return f"{p.x},{p.y} {color.value} {when.year} {ident.version} {tags}"


def unsendable_cb() -> object:
    return object()


# ---------------------------------------------------------------- tests


async def test_the_callee_checks_arguments_before_the_callback_runs(
    make_node: NodeFactory,
) -> None:
    calls: list[tuple[object, object]] = []
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"add": recording_add(calls)}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("add", timeout=5)
            with caller.as_current():
                with pytest.raises(TypeError) as info:
                    await add_untyped("1", "2")
                with pytest.raises(ArgumentsError, match=r"argument 'a' .*expects int"):
                    await add_untyped([1], [2])
                assert await add_untyped(1, 2) == 3
    assert calls == [(1, 2)]  # the bad calls never reached the callback
    assert isinstance(info.value, ArgumentsError)
    assert "argument 'a' of" in str(info.value)
    assert "expects int, got '1' of type str" in str(info.value)


async def test_an_annotated_fetcher_checks_before_sending(make_node: NodeFactory) -> None:
    calls: list[tuple[object, object]] = []
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"add": recording_add(calls)}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("add", timeout=5)
            with caller.as_current():
                with pytest.raises(ArgumentTypeError, match=r"argument 'b' .*got 'x' of type str"):
                    await add(1, "x")  # type: ignore[arg-type]
                assert await add(2, 3) == 5
                result = await add.call(4, 5, exec_modifier=BG)
                assert isinstance(result, AsyncResult)
                assert await result.get_async(timeout=5) == 9
    assert calls == [(2, 3), (4, 5)]


async def test_unannotated_callbacks_get_values_unchanged(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with make_node("worker", {"concat": concat_cb}), make_node("caller") as caller:
            await caller.wait_function_async("concat", timeout=5)
            with caller.as_current():
                assert await concat_untyped("1", "2") == "12"
                assert await concat_untyped([1], [2]) == [1, 2]


async def test_rich_annotations_round_trip(make_node: NodeFactory) -> None:
    ident = uuid.uuid4()
    when = datetime(2024, 5, 1, tzinfo=timezone.utc)
    with anyio.fail_after(10):
        async with make_node("worker", {"paint": paint_cb}), make_node("caller") as caller:
            await caller.wait_function_async("paint", timeout=5)
            with caller.as_current():
                text = await paint(Point(1, 2), Color.BLUE, when, ident, None)
                assert text == "1,2 blue 2024 4 None"
                with pytest.raises(ArgumentTypeError, match="argument 'color'"):
                    await paint(Point(1, 2), "green", when, ident, None)  # type: ignore[arg-type]
                with pytest.raises(ArgumentTypeError, match="argument 'tags'"):
                    await paint(Point(1, 2), Color.RED, when, ident, "ab")  # type: ignore[arg-type]


async def test_fetcher_class_post_init_runs(make_node: NodeFactory) -> None:
    calls: list[tuple[object, object]] = []
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"add": recording_add(calls)}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("add", timeout=5)
            with caller.as_current():
                assert await Scaler().add(2, 3) == 23
    assert calls == [(20, 3)]


async def test_an_unsendable_result_arrives_as_a_type_error(make_node: NodeFactory) -> None:
    with anyio.fail_after(10):
        async with (
            make_node("worker", {"unsendable": unsendable_cb, "concat": concat_cb}),
            make_node("caller") as caller,
        ):
            await caller.wait_function_async("unsendable", timeout=5)
            with caller.as_current():
                with pytest.raises(TypeError) as info:
                    await unsendable()
                assert await concat_untyped("still ", "here") == "still here"
    assert isinstance(info.value, RemoteCallError)
    message = str(info.value)
    assert "the result of 'unsendable' cannot be sent back to the caller" in message
    assert "cannot send value of type object" in message
    assert "daffi.codec.register_unstructure_hook" in message
