"""``stop()`` of the sync face says Bye, for a node and for a controller, and leaves no
daffi thread behind (waited for, at most 2 s).

Plain functions: each Global runs in its own background thread on the backend given.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from daffi import Global
from daffi.registry import CallbackRegistry

BACKENDS = ["asyncio", "trio"]

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sock_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="daffi-x-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def logged(caplog: pytest.LogCaptureFixture, logger: str, text: str) -> bool:
    return any(r.name == logger and r.getMessage() == text for r in caplog.records)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def threads_named(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_of_a_node_says_bye(
    sock_dir: str, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="daffi")
    ctrl = Global("ctrl", init_controller=True, unix_sock_path=sock_dir, backend=backend)
    try:
        registry = CallbackRegistry()
        registry.add(lambda x: x, "echo")
        node = Global("leaver", unix_sock_path=sock_dir, backend=backend, registry=registry)
        ctrl.wait_function("echo", timeout=5)
        assert threads_named("daffi-leaver")  # its loop thread, at least
        node.stop()
        assert wait_until(lambda: logged(caplog, "daffi.controller", "node 'leaver' left"))
        assert not logged(caplog, "daffi.controller", "node 'leaver' disconnected")
        assert wait_until(lambda: not threads_named("daffi-leaver"), 2.0), threads_named(
            "daffi-leaver"
        )
    finally:
        ctrl.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_of_a_controller_says_bye_to_its_nodes(
    sock_dir: str, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="daffi")
    ctrl = Global(
        "ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir, backend=backend
    )
    node = Global("n", unix_sock_path=sock_dir, backend=backend, registry=CallbackRegistry())
    try:
        ctrl.stop()
        assert wait_until(
            lambda: logged(
                caplog, "daffi.node", "node 'n': the controller is stopping (controller stopping)"
            )
        )
        assert wait_until(lambda: not threads_named("daffi-ctrl"), 2.0), threads_named("daffi-ctrl")
    finally:
        node.stop()
