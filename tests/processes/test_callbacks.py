"""Callbacks and fetchers across processes: decorators, classes, bodies, aliases, errors."""

from __future__ import annotations

import pytest

from .conftest import Launcher, Server, parse_results

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]


def run_client(launch: Launcher, server: Server, program: str) -> dict[str, str]:
    client = launch(program, *server.endpoint.argv)
    client.wait_for_line(r"^DONE$", timeout=20)
    assert client.wait_exit(10) == 0, client.describe()
    return parse_results(client)


def test_decorator_and_class_based_pairs(launch: Launcher, callback_server: Server) -> None:
    results = run_client(launch, callback_server, "client_pairs.py")

    assert results == {
        "add": "3",
        "add_kw": "xy",
        "describe": "dot: a=3 b=0",
        "async_double": "42",
        "multiply": "42",
        "add_offset": "101",  # Calculator.__post_init__ ran (auto_init)
        "negate": "-5",  # a staticmethod of a Callback class
        "uses_helpers": "local only / private",
        "scale": "40",  # Scaler(10) created by the user with its own __init__
        "call_override": "5",
    }


def test_fetcher_bodies_and_aliases(launch: Launcher, callback_server: Server) -> None:
    results = run_client(launch, callback_server, "client_bodies.py")

    assert results["tuple_body"] == "77"  # add(7, 70)
    assert results["args_body"] == "body: a=1 b=2"  # describe(1, b=2, label="body")
    assert results["value_body"] == "50"  # scale(5) with factor 10
    assert results["alias_above"] == "HI!"
    assert results["alias_below"] == "hi..."
    assert results["alias_class_method"] == "9"
    assert results["alias_fetcher_class"] == "32"


def test_local_private_and_unaliased_names_are_not_remote(
    launch: Launcher, callback_server: Server
) -> None:
    results = run_client(launch, callback_server, "client_bodies.py")

    for label in ("local_function", "local_method", "private", "original_name"):
        assert results[label].startswith("UnableToFindCandidate"), (label, results[label])


def test_remote_value_error_is_caught_as_value_error(
    launch: Launcher, callback_server: Server
) -> None:
    client = launch("client_errors.py", *callback_server.endpoint.argv)
    client.wait_for_line(r"^DONE$", timeout=20)
    assert client.wait_exit(10) == 0, client.describe()
    lines = dict(line.split(" ", 1) for line in client.lines() if " " in line)

    assert lines["IS_REMOTE_CALL_ERROR"] == "True"
    assert lines["REMOTE_TYPE"] == "ValueError"
    assert lines["REMOTE_MESSAGE"] == "x"
    assert lines["PROCESS"] == callback_server.name
    assert lines["TRACEBACK_NAMES_CALLBACK"] == "True"
    text = lines["STR"]
    assert "ValueError" in text
    assert ": x" in text
    assert callback_server.name in text
