"""The controller's accept loop (issue 11, D3): a cap on open connections, and back-off
instead of a crash when ``accept`` runs out of file descriptors."""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest

from daffi import Global
from daffi._accepting import ConnectionGate, serve_listener
from daffi.decorators import alias, fetcher
from daffi.registry import CallbackRegistry

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@alias("echo")
@fetcher
async def echo(x):
    pass


def raw_connect(sock_dir: str) -> socket.socket:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(Path(sock_dir) / "daffi.sock"))
    return raw


async def settled(check: Any, timeout: float = 5) -> None:
    """Wait until ``check()`` holds (a counter another task changes)."""
    deadline = anyio.current_time() + timeout
    while not check():
        if anyio.current_time() > deadline:
            raise AssertionError("not settled in time")
        await anyio.sleep(0.01)


async def test_at_the_cap_the_controller_waits_for_a_connection_to_close(sock_dir: str) -> None:
    registry = CallbackRegistry()
    registry.add(lambda x: x, "echo")
    async with Global(
        "ctrl", init_controller=True, registry=registry, unix_sock_path=sock_dir, max_connections=3
    ) as ctrl:
        gate = ctrl._runtime.controller.gate  # type: ignore[union-attr]
        idle = [await anyio.to_thread.run_sync(raw_connect, sock_dir) for _ in range(4)]
        await settled(lambda: gate.open == 3)
        await anyio.sleep(0.1)
        assert gate.open == 3  # the 4th waits in the listen backlog
        idle.pop(0).close()
        await anyio.sleep(0.1)
        await settled(lambda: gate.open == 3)  # the 4th was accepted in its place
        for raw in idle:
            raw.close()
        await settled(lambda: gate.open == 0)
        # The cap counts open connections only: a client gets in and is served.
        async with Global("client", registry=CallbackRegistry(), unix_sock_path=sock_dir) as c:
            await c.wait_function_async("echo", timeout=5)
            with c.as_current():
                assert await echo(7) == 7


class ExhaustedListener:
    """A listener whose ``accept`` fails with EMFILE ``failures`` times, then serves.

    ``wrapped``: the failure comes as anyio reports it for Unix sockets and on trio, a
    ``BrokenResourceError`` raised from the ``OSError`` (taking it for a closed listener
    made the controller stop accepting for good).
    """

    def __init__(self, failures: int, *, wrapped: bool = False) -> None:
        self.failures = failures
        self.wrapped = wrapped
        self.calls = 0
        self.streams: list[object] = [object()]

    async def accept(self) -> object:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            error = OSError(errno.EMFILE, "Too many open files")
            if self.wrapped:
                raise anyio.BrokenResourceError from error
            raise error
        if self.streams:
            return self.streams.pop()
        raise anyio.ClosedResourceError


@pytest.mark.parametrize("wrapped", [False, True], ids=["OSError", "BrokenResourceError"])
async def test_running_out_of_descriptors_backs_off_instead_of_crashing(
    caplog: pytest.LogCaptureFixture, wrapped: bool
) -> None:
    caplog.set_level(logging.ERROR, logger="daffi.controller")
    listener = ExhaustedListener(failures=5, wrapped=wrapped)
    handled: list[object] = []

    async def handler(stream: object) -> None:
        handled.append(stream)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await serve_listener(listener, handler, tg, ConnectionGate(10))  # type: ignore[arg-type]
    assert len(handled) == 1  # served once the descriptors were back
    assert listener.calls == 7
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1, errors  # one log line per burst, not one per retry
    assert "cannot accept connections" in errors[0]
    assert "back-off" in errors[0]
