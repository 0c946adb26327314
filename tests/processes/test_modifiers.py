"""Execution modifiers between real processes: BG futures, FG timeouts, BROADCAST, receivers.

One standalone controller and three callee nodes (n1, n2, n3) per transport are shared by the
tests of this module; every test starts its own caller process. Callees print marker lines
tagged with the caller's tag, so the tests never confuse each other's calls.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import TRANSPORTS, Endpoint, Launcher, Program, make_endpoint

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]

MODIFIER_PROGRAMS = Path(__file__).parent / "modifier_programs"
# n3's `flaky` raises ValueError; n1 and n2 also offer `pair_name` (the round-robin pair).
CALLEES = {"n1": ["pair"], "n2": ["pair"], "n3": ["fail"]}


@dataclass
class Topology:
    """A controller and the callees n1, n2, n3, all connected."""

    endpoint: Endpoint
    controller: Program
    callees: dict[str, Program]


@pytest.fixture(scope="module", params=TRANSPORTS)
def topology(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    made = make_endpoint(str(request.param))
    launcher = Launcher(tmp_path_factory.mktemp(f"modifiers-{request.param}"))
    try:
        # Started together: nodes retry the controller with backoff until it listens.
        controller = launcher("controller.py", *made.argv)
        callees = {
            name: launcher(program("callee.py"), *made.argv, name, *flags, name=name)
            for name, flags in CALLEES.items()
        }
        controller.wait_for_line(r"^READY", timeout=15)
        for name, callee in callees.items():
            callee.wait_for_line(rf"^READY {name}$", timeout=15)
        yield Topology(made, controller, callees)
    finally:
        launcher.close()
        made.remove()


def program(filename: str) -> str:
    """An absolute path: `Launcher` joins it onto its own programs directory unchanged."""
    return str(MODIFIER_PROGRAMS / filename)


def new_tag() -> str:
    return uuid.uuid4().hex[:8]


def outcomes(caller: Program, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The next ``count`` "OUTCOME <json>" lines of a caller, parsed."""
    return [
        json.loads(caller.wait_for_line(r"^OUTCOME (.*)$", timeout=timeout)[1])
        for _ in range(count)
    ]


def finish(caller: Program) -> None:
    caller.wait_for_line(r"^DONE$", timeout=10)
    assert caller.wait_exit(10) == 0, caller.describe()


def wait_any(
    programs: dict[str, Program], pattern: str, timeout: float
) -> tuple[str, re.Match[str]]:
    """The first of ``programs`` whose output has a line matching ``pattern`` (not consumed)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        for name, prog in programs.items():
            for line in prog.lines():
                match = regex.search(line)
                if match:
                    return name, match
        if time.monotonic() > deadline:
            pytest.fail(
                f"no program printed /{pattern}/ in {timeout} s\n"
                + "\n".join(prog.describe() for prog in programs.values())
            )
        time.sleep(0.01)


def tagged_lines(prog: Program, marker: str, tag: str) -> list[str]:
    return [line for line in prog.lines() if re.match(rf"^{marker} {tag}(-\d+)?$", line)]


def launch_caller(
    launch: Launcher, topology: Topology, scenario: str, tag: str, *, stdin: bool = False
) -> Program:
    return launch(
        program("caller.py"), *topology.endpoint.argv, scenario, tag, name=scenario, stdin=stdin
    )


def check_bg_values(outcome: dict[str, Any], tag: str) -> None:
    assert outcome["is_async_result"], outcome
    # BG hands back the futures at once, before any call finished.
    assert outcome["submitted"] < 0.5, outcome
    # The three 1 s calls ran side by side in n1's worker threads.
    assert 0.9 < outcome["elapsed"] < 1.8, outcome
    values = outcome["values"]
    assert [(v["node"], v["tag"]) for v in values] == [("n1", f"{tag}-{i}") for i in range(3)]
    assert len({v["thread"] for v in values}) == 3, values
    # Reading a future again gives the same value.
    assert outcome["same"] is True, outcome


def test_bg_futures_from_a_blocking_script(launch: Launcher, topology: Topology) -> None:
    tag = new_tag()
    caller = launch_caller(launch, topology, "bg", tag)
    [outcome] = outcomes(caller)
    finish(caller)

    check_bg_values(outcome, tag)
    assert outcome["types"] == ["AsyncResult"] * 3
    assert outcome["ready"] == [True, True, True]
    assert len(tagged_lines(topology.callees["n1"], "SLOW_SYNC", tag)) == 3


@pytest.mark.parametrize(
    ("library", "style"),
    [("asyncio", "lazy"), ("asyncio", "with"), ("trio", "lazy"), ("trio", "with")],
)
def test_bg_futures_awaited_from_an_async_app(
    launch: Launcher, topology: Topology, library: str, style: str
) -> None:
    tag = new_tag()
    caller = launch(
        program("async_caller.py"),
        *topology.endpoint.argv,
        library,
        style,
        tag,
        name=f"{library}-{style}",
    )
    [outcome] = outcomes(caller)
    finish(caller)

    check_bg_values(outcome, tag)
    if style == "with":
        # daffi runs in the app's loop: a blocking read there would deadlock, so it is refused.
        assert outcome["blocking_get"] == "GlobalContextError", outcome


def test_bg_without_result_returns_none_and_the_callee_still_runs(
    launch: Launcher, topology: Topology
) -> None:
    tag = new_tag()
    caller = launch_caller(launch, topology, "fire", tag, stdin=True)
    [outcome] = outcomes(caller)
    assert outcome == {"value": "None"}

    node, _ = wait_any(topology.callees, rf"^FIRED {tag}$", timeout=10)
    caller.send_line()
    finish(caller)
    fired = {name: len(tagged_lines(p, "FIRED", tag)) for name, p in topology.callees.items()}
    assert fired == {name: int(name == node) for name in CALLEES}


def test_fg_timeout_raises_at_the_caller_and_cancels_the_callee(
    launch: Launcher, topology: Topology
) -> None:
    tag = new_tag()
    caller = launch_caller(launch, topology, "timeout", tag)
    [outcome] = outcomes(caller)
    raised_seen_at = time.monotonic()
    finish(caller)

    assert outcome["raised"] == "TimeoutError", outcome
    assert outcome["daffi_timeout"] is True, outcome
    assert outcome["builtin_timeout"] is True, outcome
    assert outcome["elapsed"] < 1.5, outcome

    node, started = wait_any(topology.callees, rf"^STARTED {tag} remaining=(\S+)$", timeout=5)
    callee = topology.callees[node]
    # The caller's deadline travelled with the call: the callee ran under it.
    assert 0.0 < float(started[1]) <= 1.0, callee.describe()
    callee.find_line(rf"^CANCELLED {tag}$", timeout=3)

    # Checking that something does NOT happen: there is no event to wait for, so a bounded
    # wait is the right tool. 3 s after the caller gave up is past the end of the callee's
    # 3 s sleep, had the call not been cancelled.
    time.sleep(max(0.0, raised_seen_at + 3.0 - time.monotonic()))
    for prog in topology.callees.values():
        assert not tagged_lines(prog, "completed", tag), prog.describe()


def test_broadcast_reports_successes_and_the_failing_node(
    launch: Launcher, topology: Topology
) -> None:
    tag = new_tag()
    caller = launch_caller(launch, topology, "broadcast", tag)
    first, second = outcomes(caller, 2)
    finish(caller)

    assert first["remote_call_error"] is True, first
    assert first["results"] == {"n1": f"n1:{tag}", "n2": f"n2:{tag}"}, first
    assert first["errors"] == {
        "n3": {
            "value_error": True,
            "remote_type": "ValueError",
            "remote_message": f"n3 refuses {tag}",
            "process_name": "n3",
        }
    }, first
    # Deterministic: the same call gives the same outcome.
    assert second == first


def test_broadcast_failure_is_caught_by_except_value_error(
    launch: Launcher, topology: Topology
) -> None:
    tag = new_tag()
    caller = launch_caller(launch, topology, "broadcast", tag)
    first, second = outcomes(caller, 2)
    finish(caller)

    # The only node that failed raised ValueError, so `except ValueError` catches the
    # broadcast's error, as it does for an FG call to that node; every time.
    assert first["caught"] == "ValueError", first
    assert second["caught"] == "ValueError", second


def test_receiver_pins_every_call_to_one_node(launch: Launcher, topology: Topology) -> None:
    tag = new_tag()
    caller = launch_caller(launch, topology, "pin", tag)
    [outcome] = outcomes(caller)
    finish(caller)

    assert outcome["nodes"] == ["n2"] * 10
    ran = {name: len(tagged_lines(p, "WHOAMI", tag)) for name, p in topology.callees.items()}
    assert ran == {"n1": 0, "n2": 10, "n3": 0}


def test_calls_alternate_between_two_nodes(launch: Launcher, topology: Topology) -> None:
    tag = new_tag()
    caller = launch_caller(launch, topology, "spread", tag)
    [outcome] = outcomes(caller)
    finish(caller)

    assert outcome["providers"] == ["n1", "n2"], outcome
    nodes = outcome["nodes"]
    # Round-robin: strictly alternating, whichever node the controller's counter starts on.
    assert nodes in (["n1", "n2"] * 5, ["n2", "n1"] * 5), nodes
    ran = {name: len(tagged_lines(p, "PAIR", tag)) for name, p in topology.callees.items()}
    assert ran == {"n1": 5, "n2": 5, "n3": 0}
