"""The controller's routing decision: directory snapshots, round-robin, pinning, in flight."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import msgspec
import pytest

from daffi._protocol import Call, CallbackInfo
from daffi._router import InFlight, Router


@dataclass(eq=False)
class Member:
    name: str
    callbacks: dict[str, CallbackInfo] = field(default_factory=dict)


def member(name: str, *callbacks: str) -> Member:
    return Member(name, {cb: CallbackInfo(cb) for cb in callbacks})


def call(name: str, src: str = "caller", receiver: str | None = None, id: int = 1) -> Call:
    return Call(id, name, msgspec.Raw(b"\x92\x90\x80"), src, receiver)


def test_round_robin_in_offer_order_skipping_the_caller() -> None:
    router: Router[Member] = Router()
    for m in (member("a", "f"), member("b", "f"), member("caller", "f")):
        router.join(m)
    picks = [router.target("caller", call("f")) for _ in range(4)]
    assert [p.name for p in picks if p] == ["a", "b", "a", "b"]
    # never the caller itself, even when nobody else offers it
    alone: Router[Member] = Router()
    alone.join(member("caller", "f"))
    assert alone.target("caller", call("f")) is None


def test_pinned_receiver_and_why_not() -> None:
    router: Router[Member] = Router()
    router.join(member("a", "f"))
    assert router.target("x", call("f", receiver="a")).name == "a"  # type: ignore[union-attr]
    assert router.target("x", call("g", receiver="a")) is None
    assert router.target("x", call("__daffi.list_schedules", receiver="a")) is not None
    assert "has no callback 'g'" in router.why_no_target(call("g", receiver="a"))
    assert "'z' is not connected" in router.why_no_target(call("f", receiver="z"))
    assert "no other process offers callback 'h'" in router.why_no_target(call("h"))


def test_a_snapshot_is_whole_and_never_changes() -> None:
    router: Router[Member] = Router()
    a = member("a", "f")
    router.join(a)
    before = router.directory
    b = member("b", "f", "g")
    router.join(b)
    assert set(before.peers) == {"a"}
    assert before.providers == {"f": ("a",)}
    assert router.directory.providers == {"f": ("a", "b"), "g": ("b",)}
    with pytest.raises(TypeError):
        router.directory.peers["c"] = member("c")  # type: ignore[index]
    old = a.callbacks
    a.callbacks = {"g": CallbackInfo("g")}
    router.offer(a, old)
    assert router.directory.providers == {"f": ("b",), "g": ("b", "a")}
    router.leave(b)
    assert router.directory.providers == {"g": ("a",)}
    assert not router.is_current(b)
    assert router.is_current(a)


def test_in_flight_answers_only_from_the_executor() -> None:
    router: Router[Member] = Router()
    router.record(("c", 1), InFlight("a", "f", None))
    router.record(("c", 2), InFlight("b", "f", "channel"))
    router.record(("a", 3), InFlight("b", "g", None))
    assert router.answered(("c", 1), "b") is None  # b does not run it
    assert ("c", 1) in router
    assert router.answered(("c", 1), "a") == InFlight("a", "f", None)
    assert router.answered(("c", 1), "a") is None  # answered once
    assert router.take_via("channel") == [(("c", 2), InFlight("b", "f", "channel"))]
    assert router.take_all("a") == [(("a", 3), InFlight("b", "g", None))]
    assert len(router) == 0


def test_round_robin_from_many_threads_at_once_stays_even() -> None:
    router: Router[Member] = Router()
    for name in ("a", "b", "c"):
        router.join(member(name, "f"))
    picks: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(8)

    def pick() -> None:
        start.wait()
        mine = Counter(router.target("x", call("f")).name for _ in range(3000))  # type: ignore[union-attr]
        with lock:
            picks.update(mine)

    threads = [threading.Thread(target=pick) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert picks == {"a": 8000, "b": 8000, "c": 8000}
