"""``BG`` from a plain thread means the same on both of its routes.

Without a timeout or ``eta`` the call is sent from the calling thread and its future is
resolved by the receive loop; with one, it runs as a task on daffi's loop. Either way: the
value arrives, a remote error is raised by ``get()``, cancelling the result cancels the
remote work, and a Global that stops fails the result with ``RemoteStoppedUnexpectedly``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from daffi import BG, Global, RemoteStoppedUnexpectedly
from daffi.decorators import fetcher
from daffi.exceptions import GlobalContextError

from ._helpers import registry_with

ROUTES = {"from-thread": BG(), "on-loop": BG(timeout=5)}

cancelled = threading.Event()
started = threading.Event()


@fetcher
def twice(x: int) -> int:
    """Runs on the server."""
    raise NotImplementedError


@fetcher
def fail(x: int) -> int:
    """Runs on the server."""
    raise NotImplementedError


@fetcher
def wait_long(x: int) -> int:
    """Runs on the server."""
    raise NotImplementedError


def twice_cb(x: int) -> int:
    return 2 * x


def fail_cb(x: int) -> int:
    raise ValueError(f"bad {x}")


async def wait_long_cb(x: int) -> int:
    started.set()
    try:
        await anyio.sleep(10)
    except BaseException:
        cancelled.set()
        raise
    return x


@pytest.fixture
def pair(sock_dir: str, request: pytest.FixtureRequest) -> Any:
    backend = request.param
    server = Global(
        "server",
        init_controller=True,
        unix_sock_path=sock_dir,
        backend=backend,
        connect_timeout=5,
        registry=registry_with({"twice": twice_cb, "fail": fail_cb, "wait_long": wait_long_cb}),
    )
    client = Global(
        "client",
        unix_sock_path=sock_dir,
        backend=backend,
        connect_timeout=5,
        registry=registry_with({}),
    )
    client.wait_function("wait_long", timeout=5)
    started.clear()
    cancelled.clear()
    try:
        yield server, client
    finally:
        client.stop()
        server.stop()


@pytest.mark.parametrize("pair", ["asyncio", "trio"], indirect=True)
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_value_error_and_cancel(pair: Any, route: str) -> None:
    _, client = pair
    modifier = ROUTES[route]
    with client.as_current():
        results = [twice.call(i, exec_modifier=modifier) for i in range(20)]
        assert [r.get(5) for r in results] == [2 * i for i in range(20)]
        failed = fail.call(3, exec_modifier=modifier)
        with pytest.raises(ValueError, match="bad 3"):
            failed.get(5)
        pending = wait_long.call(1, exec_modifier=modifier)
    assert started.wait(5)
    assert pending.cancel()
    assert cancelled.wait(3), "cancelling the BG result did not cancel the remote work"
    with pytest.raises(GlobalContextError, match="cancelled"):
        pending.get(1)


@pytest.mark.parametrize("pair", ["asyncio", "trio"], indirect=True)
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_stopping_global_fails_the_result(pair: Any, route: str) -> None:
    _, client = pair
    with client.as_current():
        pending = wait_long.call(1, exec_modifier=ROUTES[route])
    assert started.wait(5)
    t0 = time.monotonic()
    client.stop()
    with pytest.raises(RemoteStoppedUnexpectedly, match="stopped before the call finished"):
        pending.get(3)
    assert time.monotonic() - t0 < 3
