"""A daffi 2 style caller: calls callbacks by name with ``g.call`` and prints what it got.

Usage: caller.py ADDRESS... SCENARIO

Prints "RESULT <key> <json>" lines, then "DONE". Every wait is bounded.
"""

from __future__ import annotations

import sys
import time

from _d2 import address, result

from daffi import (
    BG,
    BROADCAST,
    FG,
    PERIOD,
    DaffiError,
    Global,
    GlobalContextError,
    RemoteCallError,
)


def wait_runs(g, tag, receiver, count, timeout=10.0):
    """Poll the worker's run counter of ``tag`` until it reaches ``count``."""
    deadline = time.monotonic() + timeout
    while (runs := g.call.runs(tag) & FG(receiver=receiver)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{tag}: {runs} runs after {timeout} s")
        time.sleep(0.02)
    return runs


def uuids(g, process):
    return [entry["uuid"] for entry in g.get_scheduled_tasks(remote_process=process)]


def forms(g):
    """Item 1: every form of g.call."""
    g.wait_process("w1", timeout=20)
    g.wait_process("w2", timeout=20)
    result("and_fg", g.call.add(1, 2) & FG)
    result("and_fg_timeout", g.call.add(1, 2) & FG(timeout=5))
    future = g.call.add(1, 2) & BG(timeout=5)
    result("and_bg", future.get())
    result("modifier_first", (g.call.add & FG)(1, 2))
    lazy = g.call.mark & FG  # no parentheses: sends nothing
    result("no_parentheses", type(lazy).__name__)
    result("mark", g.call.mark("sent") & FG)
    result("fg", g.call.add(3, 4).fg())
    result("bg", g.call.add(3, 4).bg(timeout=5).get())
    result("broadcast", g.call.whoami().broadcast(return_result=True))
    result("and_broadcast", g.call.whoami() & BROADCAST(return_result=True))
    result("generator", list(g.call.numbers(4) & FG))
    g.call.collect([("s", 1), ("s", 2), ("s", 3)]).stream(receiver="w1")
    result("stream", g.call.collected("s") & FG(receiver="w1"))
    info = g.call.add.info
    result("info_present", [info.name, [p.name for p in info.params]])
    result("info_absent", g.call.nope.info)
    result("exists", [g.call.add.exists, g.call.add(1, 2).exists, g.call.nope.exists])

    task = g.call.tick("and-period") & PERIOD(interval=0.05, receiver="w1")
    wait_runs(g, "and-period", "w1", 3)
    result("and_period_cancel", task.cancel())
    result("and_period_listed", task.uuid in uuids(g, "w1"))

    task = g.call.tick("period").period(interval=0.05, receiver="w1")
    wait_runs(g, "period", "w1", 3)
    result("period_cancel", task.cancel())
    result("period_listed", task.uuid in uuids(g, "w1"))


def schedules(g):
    """Item 6: schedule listings and cancelling by uuid, as daffi 2 programs used them."""
    g.wait_process("w1", timeout=20)
    task = g.call.tick("sched") & PERIOD(interval="20s")
    listing = g.get_scheduled_tasks(remote_process="w1")
    result(
        "period_listing",
        [[e["condition"], e["func_name"], e["uuid"] == task.uuid] for e in listing],
    )
    at = g.call.tick("at") & PERIOD(at_time=[time.time() + 3600])
    entry = next(e for e in g.get_scheduled_tasks("w1") if e["uuid"] == at.uuid)
    result("at_time_condition", entry["condition"])
    result("cancel", [task.cancel(), at.cancel()])
    result("listing_after_cancel", g.get_scheduled_tasks(remote_process="w1"))
    result("cancel_ended", g.cancel_scheduled_task_by_uuid("w1", task.uuid))
    try:
        g.cancel_scheduled_task_by_uuid("w1", "1234567890")
    except RemoteCallError as exc:
        result("cancel_unknown", ["RemoteCallError", isinstance(exc, LookupError)])
    else:
        result("cancel_unknown", "returned")
    active = g.call.tick("active") & PERIOD(interval="20s")
    result("cancel_active", g.cancel_scheduled_task_by_uuid("w1", active.uuid))
    result("listing_at_end", g.get_scheduled_tasks(remote_process="w1"))
    try:
        g.call.nope() & FG
    except GlobalContextError as exc:
        result("unknown_callback", type(exc).__name__)
    else:
        result("unknown_callback", "returned")


def pipeline(g):
    """Item 4: cb1 -> cb2 -> cb3 over three workers, each reaching its Global with get_g()."""
    for name in ("p1", "p2", "p3"):
        g.wait_process(name, timeout=20)
    result("fg", g.call.fg_cb1() & FG(timeout=20))
    result("bg", g.call.bg_cb1() & FG(timeout=20))
    result("async_fg", g.call.async_fg_cb1() & FG(timeout=20))
    result("async_bg", g.call.async_bg_cb1() & FG(timeout=20))
    for name in ("p1", "p2", "p3"):
        own = [
            g.call.name_by_get_g() & FG(receiver=name),
            g.call.name_by_callback_g() & FG(receiver=name),
            g.call.name_by_async_callback_g() & FG(receiver=name),
            g.call.name_by_self_g() & FG(receiver=name),
        ]
        result(f"own_{name}", own)


def misuse(g):
    """Item 5: async callbacks making blocking calls fail; their async twins work."""
    g.wait_process("w1", timeout=20)
    g.wait_process("w2", timeout=20)
    for name in ("async_uses_def_fetcher", "async_uses_call_fg"):
        try:
            value = g.call[name]() & FG(timeout=10, receiver="w1")
        except DaffiError as exc:
            kinds = [
                k.__name__ for k in (RemoteCallError, GlobalContextError) if isinstance(exc, k)
            ]
            result(name, [kinds, str(exc)])
        else:
            result(name, ["returned", value])
    for name in ("async_uses_async_fetcher", "async_uses_fg_async", "async_uses_bg"):
        result(name, g.call[name]() & FG(timeout=10, receiver="w1"))


def call_app(g):
    """Items 2c and 3: call the app node's callback."""
    g.wait_process("app-node", timeout=20)
    result("app_work", g.call.app_work(1) & FG(timeout=10))


SCENARIOS = {
    "forms": forms,
    "schedules": schedules,
    "pipeline": pipeline,
    "misuse": misuse,
    "call_app": call_app,
}

if __name__ == "__main__":
    options, (scenario,) = address(sys.argv[1:])
    g = Global(process_name=f"caller-{scenario}", **options)
    SCENARIOS[scenario](g)
    g.stop()
    print("DONE", flush=True)
