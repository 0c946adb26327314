"""Issue 16: daffi 2 programs run unchanged (items 1-6), with real processes.

The programs in ``daffi2_programs/`` are written the way a daffi 2 user writes them: top-level
``Global(...)``, ``g.join()`` or ``await g.join_async()``, calls by name with ``g.call``, the
Global reached from callbacks with ``get_g()``. Each test starts its own controller, workers
and caller (loopback TCP or a Unix socket in a temp dir) and stops them by PID; callers print
``RESULT <key> <json>`` lines that the tests compare.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import Endpoint, Launcher, Program, make_endpoint

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]

DAFFI2_PROGRAMS = Path(__file__).parent / "daffi2_programs"
LIBRARIES = ["asyncio", "trio"]
# How a worker keeps running: g.join(), or await g.join_async() in an asyncio / trio app.
MODES = ["join", "asyncio", "trio"]


def program(filename: str) -> str:
    """An absolute path: `Launcher` joins it onto its own programs directory unchanged."""
    return str(DAFFI2_PROGRAMS / filename)


@pytest.fixture
def tcp_address(launch: Launcher) -> Endpoint:
    """A loopback address with a free port: the tests whose programs need a TCP port."""
    made = make_endpoint("tcp")
    launch.add_cleanup(made.remove)
    return made


def start_controller(launch: Launcher, address: Endpoint) -> Program:
    return launch(program("controller.py"), *address.argv, name="controller")


def start_worker(launch: Launcher, address: Endpoint, name: str, mode: str = "join") -> Program:
    return launch(program("worker.py"), *address.argv, name, mode, name=name)


def run_caller(launch: Launcher, address: Endpoint, scenario: str) -> dict[str, Any]:
    """Run ``caller.py`` to its end; its results as ``{key: value}``."""
    caller = launch(program("caller.py"), *address.argv, scenario, name=f"caller-{scenario}")
    caller.wait_for_line(r"^DONE$", timeout=40)
    assert caller.wait_exit(10) == 0, caller.describe()
    return results(caller)


def results(prog: Program) -> dict[str, Any]:
    """A program's ``RESULT <key> <json>`` lines as ``{key: value}``."""
    found: dict[str, Any] = {}
    for line in prog.lines():
        if line.startswith("RESULT "):
            _, key, value = line.split(" ", 2)
            found[key] = json.loads(value)
    return found


def marked(programs: list[Program], marker: str) -> list[str]:
    return [line for prog in programs for line in prog.lines() if line.startswith(marker + " ")]


# ---------------------------------------------------------------- item 1: g.call


def test_call_in_every_form(launch: Launcher, endpoint: Endpoint) -> None:
    start_controller(launch, endpoint)
    workers = [start_worker(launch, endpoint, name) for name in ("w1", "w2")]

    got = run_caller(launch, endpoint, "forms")

    assert got == {
        "and_fg": 3,
        "and_fg_timeout": 3,
        "and_bg": 3,
        "modifier_first": 3,
        "no_parentheses": "ModifiedCall",
        "mark": "sent",
        "fg": 7,
        "bg": 7,
        "broadcast": {"w1": "w1", "w2": "w2"},
        "and_broadcast": {"w1": "w1", "w2": "w2"},
        "generator": [0, 1, 2, 3],
        "stream": [1, 2, 3],
        "info_present": ["add", ["a", "b"]],
        "info_absent": None,
        "exists": [True, True, False],
        "and_period_cancel": True,
        "and_period_listed": False,
        "period_cancel": True,
        "period_listed": False,
    }
    # `g.call.mark & FG` without parentheses sent nothing: only the call with "sent" arrived.
    assert marked(workers, "MARK") == ["MARK sent"]
    # The schedules ran on w1 and nowhere else.
    ticks = marked(workers, "TICK")
    assert "TICK period 3" in ticks
    assert "TICK and-period 3" in ticks
    assert not marked(workers[1:], "TICK")


# ---------------------------------------------------------------- item 2: Global in a loop


@pytest.mark.parametrize("library", LIBRARIES)
def test_controller_in_loop_knows_its_port_at_once(
    launch: Launcher, tcp_address: Endpoint, library: str
) -> None:
    app = launch(program("app.py"), library, "controller", *tcp_address.argv, name="app")
    port = int(app.wait_for_line(r"^PORT (\S+)$", timeout=15)[1])
    assert port > 0
    worker_address = Endpoint("tcp", ["tcp", "127.0.0.1", str(port)], {})
    start_worker(launch, worker_address, "w1")

    app.wait_for_line(r"^DONE$", timeout=30)
    assert app.wait_exit(10) == 0, app.describe()
    assert results(app) == {"add": 3}


@pytest.mark.parametrize("library", LIBRARIES)
def test_blocking_calls_right_after_constructor_in_loop(
    launch: Launcher, tcp_address: Endpoint, library: str
) -> None:
    start_controller(launch, tcp_address)
    start_worker(launch, tcp_address, "w1")
    app = launch(program("app.py"), library, "blocking", *tcp_address.argv, name="app")

    app.wait_for_line(r"^DONE$", timeout=30)
    assert app.wait_exit(10) == 0, app.describe()
    assert results(app) == {"add": 3, "add_timeout": 5}


# ---------------------------------------------------------------- items 2c and 3: app nodes


@pytest.mark.parametrize(
    ("library", "scenario"),
    [
        ("asyncio", "node"),
        ("trio", "node"),
        ("asyncio", "node_blocking"),
        ("trio", "node_blocking"),
    ],
)
def test_node_in_loop_is_served_at_once_on_its_library(
    launch: Launcher, tcp_address: Endpoint, library: str, scenario: str
) -> None:
    """``g = Global(...); await g.join_async()`` serves at once, and its ``async def``
    callback runs on the app's library (trio.sleep and a nursery work in a trio app), also
    after a blocking call started the core in a thread."""
    start_controller(launch, tcp_address)
    launch(program("app.py"), library, scenario, *tcp_address.argv, name="app-node")

    got = run_caller(launch, tcp_address, "call_app")

    assert got == {"app_work": "Ok"}


# ---------------------------------------------------------------- item 4: get_g()


@pytest.mark.parametrize("mode", MODES)
def test_callbacks_reach_their_global(launch: Launcher, tcp_address: Endpoint, mode: str) -> None:
    start_controller(launch, tcp_address)
    for stage in ("1", "2", "3"):
        launch(
            program("pipeline.py"), *tcp_address.argv, f"p{stage}", stage, mode, name=f"p{stage}"
        )

    got = run_caller(launch, tcp_address, "pipeline")

    secret = "My secret value"
    assert got == {
        "fg": secret,
        "bg": secret,
        "async_fg": secret,
        "async_bg": secret,
        # get_g(), callback.g (def and async def) and self.g: the worker's own Global.
        "own_p1": ["p1"] * 4,
        "own_p2": ["p2"] * 4,
        "own_p3": ["p3"] * 4,
    }


# ---------------------------------------------------------------- item 5: blocking in async


@pytest.mark.parametrize("mode", MODES)
def test_async_callback_making_blocking_call_names_async_twin(
    launch: Launcher, tcp_address: Endpoint, mode: str
) -> None:
    start_controller(launch, tcp_address)
    start_worker(launch, tcp_address, "w1", mode)  # its async callbacks call w2's `add`
    start_worker(launch, tcp_address, "w2")

    got = run_caller(launch, tcp_address, "misuse")

    fetcher_error, fetcher_message = got.pop("async_uses_def_fetcher")
    call_error, call_message = got.pop("async_uses_call_fg")
    # The same callbacks written with the async twins work.
    assert got == {"async_uses_async_fetcher": 3, "async_uses_fg_async": 3, "async_uses_bg": 3}
    # The blocking ones fail, and the message says what to write instead...
    assert "async def" in fetcher_message, fetcher_message
    assert "fg_async" in call_message, call_message
    # ...as an error raised in another process: a RemoteCallError (naming w1, as the
    # messages show), and a GlobalContextError as in daffi 2.
    both = ["RemoteCallError", "GlobalContextError"]
    assert [fetcher_error, call_error] == [both, both]
    assert "(raised in process 'w1')" in fetcher_message
    assert "(raised in process 'w1')" in call_message


# ---------------------------------------------------------------- item 6: schedules


def test_schedules_as_daffi2_used_them(launch: Launcher, endpoint: Endpoint) -> None:
    start_controller(launch, endpoint)
    start_worker(launch, endpoint, "w1")

    got = run_caller(launch, endpoint, "schedules")

    assert got == {
        "period_listing": [["period", "tick", True]],
        "at_time_condition": "at_time",
        "cancel": [True, True],
        "listing_after_cancel": [],
        "cancel_ended": False,
        "cancel_unknown": ["RemoteCallError", True],
        "cancel_active": True,
        "listing_at_end": [],
        "unknown_callback": "UnableToFindCandidate",
    }
