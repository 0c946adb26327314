"""What a Global takes from its defaults and the environment: its generated name,
``DAFFI_ADDRESS``, ``DAFFI_AUTH_TOKEN`` and ``DAFFI_LOG_LEVEL``, arguments winning over the
environment; and which of its log lines are INFO (see docs/configuration.md).

What a fresh program prints on its stderr is in tests/processes/test_logging.py.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from daffi import Global, InitializationError, fetcher
from daffi import _environment as environment_module
from daffi._environment import LOG_LEVEL_VARIABLE, StderrFallbackHandler, default_process_name
from daffi._settings import ADDRESS_VARIABLE, AUTH_TOKEN_VARIABLE, auth_secret
from daffi.registry import CallbackRegistry
from daffi.transports import Address

SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@fetcher
async def add(a, b):  # type: ignore[no-untyped-def]
    """Proxy of the ``add`` callback below."""


def add_cb(a: int, b: int) -> int:
    return a + b


@pytest.fixture(autouse=True)
def _no_daffi_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables a developer may have set do not leak into these tests."""
    for variable in (ADDRESS_VARIABLE, AUTH_TOKEN_VARIABLE, LOG_LEVEL_VARIABLE):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def daffi_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """The ``daffi`` logger, its level and handlers put back as they were after the test."""
    logger = logging.getLogger("daffi")
    level, handlers = logger.level, list(logger.handlers)
    monkeypatch.setattr(environment_module, "_applied_level", None)
    logger.setLevel(logging.NOTSET)
    try:
        yield logger
    finally:
        logger.setLevel(level)
        logger.handlers[:] = handlers


def memory_address() -> str:
    return f"memory://daffi-config-{uuid.uuid4().hex}"


def controller(**options: Any) -> Global:
    """A standalone controller started in a background thread (the caller stops it)."""
    return Global(init_controller=True, init_node=False, **options)


# ------------------------------------------------------------------ generated process names


def test_a_global_without_a_name_gets_script_host_and_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "argv", ["/srv/app/worker.py", "--flag"])
    monkeypatch.setattr(socket, "gethostname", lambda: "web1.example.com")
    first, second = controller(address=memory_address()), controller(address=memory_address())
    try:
        pattern = rf"^worker-web1-{os.getpid()}-[0-9a-f]{{4}}$"
        assert re.match(pattern, first.process_name), first.process_name
        assert re.match(pattern, second.process_name), second.process_name
        # Two Globals of one process never share a name: a second would be refused.
        assert first.process_name != second.process_name
        # Still generated: no state directory, so durable schedules are refused.
        assert first.state_dir is None
        assert second.state_dir is None
    finally:
        first.stop()
        second.stop()


def test_generated_names_are_never_repeated_in_a_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "argv", ["app.py"])
    monkeypatch.setattr(socket, "gethostname", lambda: "host")
    # Far more than the 4 hex digits make likely to collide by chance (birthday: ~50%).
    names = [default_process_name() for _ in range(300)]
    assert len(set(names)) == len(names)
    assert all(name.startswith(f"app-host-{os.getpid()}-") for name in names)


@pytest.mark.parametrize(
    ("argv", "program"),
    [
        (["/usr/local/bin/my-service"], "my-service"),
        (["scripts/run jobs.v2.py"], "run-jobs-v2"),
        (["/srv/pkg/__main__.py"], "pkg"),  # python -m pkg
        ([""], "python"),  # the interactive prompt
        (["-c"], "python"),
        ([], "python"),
    ],
)
def test_the_generated_name_names_the_program(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], program: str
) -> None:
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(socket, "gethostname", lambda: "box")
    name = default_process_name()
    assert name.startswith(f"{program}-box-{os.getpid()}")
    assert SAFE_NAME.match(name), name


@pytest.mark.parametrize(
    ("hostname", "host"),
    [("Été-host.local", "t-host"), ("", "localhost"), ("a b/c", "a-b-c")],
)
def test_the_generated_name_keeps_safe_characters_of_the_host(
    monkeypatch: pytest.MonkeyPatch, hostname: str, host: str
) -> None:
    monkeypatch.setattr(sys, "argv", ["app.py"])
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    name = default_process_name()
    assert name.startswith(f"app-{host}-{os.getpid()}")
    assert SAFE_NAME.match(name), name


def test_an_unknown_host_name_still_gives_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_name() -> str:
        raise OSError("no host name")

    monkeypatch.setattr(sys, "argv", ["app.py"])
    monkeypatch.setattr(socket, "gethostname", no_name)
    assert default_process_name().startswith(f"app-localhost-{os.getpid()}")


def test_a_given_name_is_kept_and_has_a_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    g = controller(process_name="billing", address=memory_address())
    try:
        assert g.process_name == "billing"
        assert g.state_dir == str(tmp_path / "daffi" / "billing")
    finally:
        g.stop()


# ------------------------------------------------------------------ DAFFI_ADDRESS


def test_daffi_address_is_the_address_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address = memory_address()
    monkeypatch.setenv(ADDRESS_VARIABLE, f"  {address} ")
    g = controller()
    try:
        assert g.address == Address.parse(address)
    finally:
        g.stop()


@pytest.mark.parametrize(
    ("options", "scheme"),
    [
        ({"address": "memory://given"}, "memory"),
        ({"host": "127.0.0.1"}, "tcp"),
        ({"host": "127.0.0.1", "port": 0}, "tcp"),
        ({"unix_sock_path": "SOCK_DIR"}, "unix"),
    ],
)
def test_an_address_argument_wins_over_daffi_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, options: dict[str, Any], scheme: str
) -> None:
    monkeypatch.setenv(ADDRESS_VARIABLE, "memory://from-the-environment")
    if options.get("unix_sock_path") == "SOCK_DIR":
        if os.name == "nt":
            pytest.skip("no Unix sockets on Windows")
        options = {"unix_sock_path": str(tmp_path)}
    g = controller(**options)
    try:
        assert g.address.scheme == scheme
        assert g.address != Address.parse("memory://from-the-environment")
    finally:
        g.stop()


def test_a_port_alone_is_still_an_error_with_daffi_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ADDRESS_VARIABLE, "tcp://127.0.0.1:7000")
    with pytest.raises(InitializationError, match="port was given without host"):
        Global(port=7000)


def test_an_empty_daffi_address_is_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if os.name == "nt":
        pytest.skip("no Unix sockets on Windows")
    monkeypatch.setenv(ADDRESS_VARIABLE, "")
    g = controller(unix_sock_path=tmp_path)
    try:
        assert g.address == Address("unix", path=str(tmp_path / "daffi.sock"))
    finally:
        g.stop()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("127.0.0.1:7000", "expected scheme://"),
        ("tcp://127.0.0.1", "expected tcp://host:port"),
        ("tls://127.0.0.1:7000", "ssl_certificate and ssl_key"),  # a controller needs both
    ],
)
def test_a_bad_daffi_address_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    monkeypatch.setenv(ADDRESS_VARIABLE, value)
    with pytest.raises(InitializationError) as caught:
        controller()
    message = str(caught.value)
    assert message.startswith(f"the environment variable DAFFI_ADDRESS={value!r} cannot be used: ")
    assert reason in message


@pytest.mark.anyio
async def test_a_node_finds_its_controller_through_daffi_address(
    monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    address = memory_address()
    monkeypatch.setenv(ADDRESS_VARIABLE, address)
    registry = CallbackRegistry()
    registry.add(add_cb, "add")
    with anyio.fail_after(10):
        async with (
            Global("ctrl", init_controller=True, init_node=False) as ctrl,
            Global("worker", registry=registry),
            Global("caller", registry=CallbackRegistry()) as caller,
        ):
            assert str(ctrl.address) == address
            await caller.wait_function_async("add", timeout=5)
            with caller.as_current():
                assert await add(2, 3) == 5


# ------------------------------------------------------------------ DAFFI_AUTH_TOKEN


def test_an_auth_token_argument_wins_over_daffi_auth_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(AUTH_TOKEN_VARIABLE, "from-the-environment")
    assert auth_secret(None) == b"from-the-environment"
    assert auth_secret("given") == b"given"
    assert auth_secret(b"\x00raw") == b"\x00raw"


# ------------------------------------------------------------------ DAFFI_LOG_LEVEL


@pytest.mark.parametrize(
    ("value", "level"),
    [("debug", logging.DEBUG), (" Warning ", logging.WARNING), ("WARN", logging.WARNING), ("5", 5)],
)
def test_daffi_log_level_sets_the_daffi_logger_level(
    monkeypatch: pytest.MonkeyPatch, daffi_logger: logging.Logger, value: str, level: int
) -> None:
    monkeypatch.setenv(LOG_LEVEL_VARIABLE, value)
    g = controller(address=memory_address())
    g.stop()
    assert daffi_logger.level == level
    # The application's root logger is not touched, and daffi's records still propagate.
    assert daffi_logger.propagate
    fallbacks = [h for h in daffi_logger.handlers if isinstance(h, StderrFallbackHandler)]
    assert len(fallbacks) == 1
    controller(address=memory_address()).stop()  # a second Global adds no second handler
    assert [h for h in daffi_logger.handlers if isinstance(h, StderrFallbackHandler)] == fallbacks


def test_a_level_the_application_gave_the_daffi_logger_wins(
    monkeypatch: pytest.MonkeyPatch, daffi_logger: logging.Logger
) -> None:
    daffi_logger.setLevel(logging.ERROR)
    monkeypatch.setenv(LOG_LEVEL_VARIABLE, "DEBUG")
    controller(address=memory_address()).stop()
    assert daffi_logger.level == logging.ERROR


def test_unset_daffi_log_level_changes_nothing(daffi_logger: logging.Logger) -> None:
    handlers = list(daffi_logger.handlers)
    controller(address=memory_address()).stop()
    assert daffi_logger.level == logging.NOTSET
    assert daffi_logger.handlers == handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


@pytest.mark.parametrize("value", ["verbose", "-10", "1.5"])
def test_a_bad_daffi_log_level_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, daffi_logger: logging.Logger, value: str
) -> None:
    monkeypatch.setenv(LOG_LEVEL_VARIABLE, value)
    with pytest.raises(
        InitializationError, match=rf"^DAFFI_LOG_LEVEL must name a logging level.*{value!r}"
    ):
        controller(address=memory_address())
    assert daffi_logger.level == logging.NOTSET


def test_the_fallback_handler_is_silent_while_the_application_has_a_handler(
    daffi_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    # pytest's own handlers sit on the root logger during a test: an application's handler.
    assert logging.getLogger().handlers
    daffi_logger.addHandler(StderrFallbackHandler())
    daffi_logger.setLevel(logging.INFO)
    logging.getLogger("daffi.node").warning("seen by the application's handler only")
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ log levels of waits


@pytest.mark.anyio
async def test_waits_and_calls_log_nothing_at_info(
    caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    address = memory_address()
    registry = CallbackRegistry()
    registry.add(add_cb, "add")
    caplog.set_level(logging.DEBUG, logger="daffi")
    with anyio.fail_after(10):
        async with (
            Global("ctrl", init_controller=True, init_node=False, address=address),
            Global("caller", address=address, registry=CallbackRegistry()) as caller,
        ):
            caplog.clear()
            waited = anyio.Event()

            async def wait_for_the_worker() -> None:
                await caller.wait_function_async("add", 5)
                await caller.wait_process_async("worker", 5)
                waited.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_the_worker)
                async with Global("worker", address=address, registry=registry):
                    await waited.wait()
                    waits = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
                    caplog.clear()
                    with caller.as_current():
                        for _ in range(3):
                            assert await add(2, 3) == 5
                    calls = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    # The wait lines are there for who asks for DEBUG; at INFO, only the worker's connection.
    for message in ("Waiting remote callback: 'add'", "Function found: 'add'"):
        assert ("daffi.global", logging.DEBUG, message) in waits
    for message in ("Waiting node: 'worker'", "Node found: 'worker'"):
        assert ("daffi.global", logging.DEBUG, message) in waits
    assert [w for w in waits if w[0] == "daffi.global" and w[1] >= logging.INFO] == []
    assert [c for c in calls if c[0].startswith("daffi") and c[1] >= logging.INFO] == []
