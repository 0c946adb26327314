"""NATS mode's errors are clear and bounded: no server, credentials refused or accepted,
options that mean nothing over NATS, messages larger than the server takes (compare
tests/integration/test_errors.py and test_auth.py).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from daffi import Global
from daffi.decorators import fetcher
from daffi.exceptions import (
    AuthenticationError,
    DaffiError,
    InitializationError,
    RemoteCallError,
)
from daffi.registry import CallbackRegistry

from ._servers import LOOPBACK, NatsServer, free_port, start_server
from .conftest import require_nats

pytestmark = pytest.mark.anyio

USER, PASSWORD = "daffi-user", "s3cret"
MAX_PAYLOAD = 65536
BIG = b"x" * (2 * MAX_PAYLOAD)


@fetcher
async def echo(x):
    pass


@fetcher
async def big_result():
    pass


@fetcher
async def big_items():
    pass


@fetcher
async def record(n):
    yield b"small"
    yield BIG


def registry_with(callbacks: dict[str, Callable[..., Any]] | None = None) -> CallbackRegistry:
    registry = CallbackRegistry()
    for name, fn in (callbacks or {}).items():
        registry.add(fn, name)
    return registry


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server that wants a user and a password."""
    require_nats()
    server = start_server(tmp_path, "auth", extra=["--user", USER, "--pass", PASSWORD])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server that takes messages of at most MAX_PAYLOAD bytes (a config file: the
    command line of nats-server 2.9 has no max_payload flag)."""
    require_nats()
    config = tmp_path / "small.conf"
    config.write_text(f"max_payload: {MAX_PAYLOAD}\n")
    server = start_server(tmp_path, "small", extra=["-c", str(config)])
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- connecting


async def test_no_server_is_a_clear_error_in_bounded_time(anyio_backend: str) -> None:
    require_nats()
    address = f"nats://{LOOPBACK}:{free_port()}"
    t0 = time.monotonic()
    with anyio.fail_after(10), pytest.raises(InitializationError) as info:
        async with Global(
            "lonely", address=address, registry=CallbackRegistry(), connect_timeout=1
        ):
            pass  # pragma: no cover
    elapsed = time.monotonic() - t0
    text = str(info.value)
    assert address.removeprefix("nats://") in text
    assert "NATS" in text
    assert "connect_timeout" in text
    assert elapsed < 3, f"gave up after {elapsed:.2f} s with connect_timeout=1"


def test_no_server_from_the_sync_face() -> None:
    require_nats()
    address = f"nats://{LOOPBACK}:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(InitializationError, match="is nats-server running"):
        Global("lonely", address=address, registry=CallbackRegistry(), connect_timeout=1)
    assert time.monotonic() - t0 < 3


async def test_credentials_refused_and_accepted(
    auth_server: NatsServer, anyio_backend: str
) -> None:
    registry = registry_with({"echo": lambda x: x})
    with anyio.fail_after(15):
        for wrong in (auth_server.url, f"{USER}:nope@{auth_server.url}"):
            t0 = time.monotonic()
            with pytest.raises(AuthenticationError) as info:
                async with Global(
                    "intruder",
                    address=f"nats://{wrong}",
                    registry=CallbackRegistry(),
                    connect_timeout=2,
                ):
                    pass  # pragma: no cover
            assert time.monotonic() - t0 < 3
            assert "refused" in str(info.value)
            assert PASSWORD not in str(info.value)  # never echo a secret
        good = f"nats://{USER}:{PASSWORD}@{auth_server.url}"
        async with (
            Global("worker", address=good, registry=registry),
            Global("caller", address=good, registry=CallbackRegistry()) as caller,
        ):
            await caller.wait_function_async("echo", timeout=5)
            with caller.as_current():
                assert await echo("in") == "in"
            # where a node connected is shown without its credentials
            assert PASSWORD not in caller.nodes["worker"].address


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"init_node": False, "init_controller": True}, "no controller to run"),
        ({"auth_token": "secret"}, "auth_token"),
    ],
)
def test_options_that_mean_nothing_over_nats_are_refused(
    nats_server: NatsServer, options: dict[str, Any], match: str
) -> None:
    t0 = time.monotonic()
    with pytest.raises(InitializationError, match=match):
        Global("odd", address=f"nats://{nats_server.url}", registry=CallbackRegistry(), **options)
    assert time.monotonic() - t0 < 1  # refused before connecting


async def test_init_controller_is_ignored(nats_server: NatsServer, anyio_backend: str) -> None:
    """``init_controller=True`` with a node: there is no controller to run; it is a node."""
    with anyio.fail_after(15):
        async with (
            Global(
                "both",
                init_controller=True,
                address=f"nats://{nats_server.url}",
                registry=registry_with({"echo": lambda x: x}),
            ),
            Global(
                "caller", address=f"nats://{nats_server.url}", registry=CallbackRegistry()
            ) as caller,
        ):
            await caller.wait_function_async("echo", timeout=5)
            with caller.as_current():
                assert await echo(1) == 1


# ---------------------------------------------------------------- max_payload


async def test_messages_larger_than_max_payload_fail_the_call(
    small_server: NatsServer, anyio_backend: str
) -> None:
    assert small_server.varz()["max_payload"] == MAX_PAYLOAD

    def big_result_cb() -> bytes:
        return BIG

    with anyio.fail_after(20):
        async with (
            Global(
                "worker",
                address=f"nats://{small_server.url}",
                registry=registry_with({"echo": lambda x: x, "big_result": big_result_cb}),
            ),
            Global(
                "caller", address=f"nats://{small_server.url}", registry=CallbackRegistry()
            ) as caller,
        ):
            await caller.wait_function_async("echo", timeout=5)
            with caller.as_current():
                t0 = time.monotonic()
                with anyio.fail_after(3), pytest.raises(DaffiError) as too_big_args:
                    await echo(BIG)
                assert time.monotonic() - t0 < 1
                with anyio.fail_after(3), pytest.raises(RemoteCallError) as too_big_result:
                    await big_result()
                # the node keeps working, and a message just under the limit passes
                assert await echo(b"y" * (MAX_PAYLOAD // 2)) == b"y" * (MAX_PAYLOAD // 2)
    for info in (too_big_args, too_big_result):
        text = str(info.value)
        assert "max_payload" in text, text
        assert str(MAX_PAYLOAD) in text, text


async def test_a_stream_item_larger_than_max_payload_fails_the_download(
    small_server: NatsServer, anyio_backend: str
) -> None:
    async def big_items_cb() -> AsyncIterator[bytes]:
        yield b"small"
        yield BIG
        yield b"after"

    received: list[bytes] = []
    with anyio.fail_after(20):
        async with (
            Global(
                "worker",
                address=f"nats://{small_server.url}",
                registry=registry_with({"big_items": big_items_cb}),
            ),
            Global(
                "caller", address=f"nats://{small_server.url}", registry=CallbackRegistry()
            ) as caller,
        ):
            await caller.wait_function_async("big_items", timeout=5)
            with caller.as_current(), anyio.move_on_after(5) as hang:
                try:
                    async for item in await big_items():
                        received.append(item)
                except DaffiError as exc:
                    error: DaffiError | None = exc
                else:
                    error = None
    assert not hang.cancelled_caught, "the consumer hung on an item NATS could not carry"
    assert received == [b"small"]
    assert error is not None
    assert "max_payload" in str(error)


async def test_a_stream_item_larger_than_max_payload_fails_the_upload(
    small_server: NatsServer, anyio_backend: str
) -> None:
    recorded: list[bytes] = []
    with anyio.fail_after(20):
        async with (
            Global(
                "worker",
                address=f"nats://{small_server.url}",
                registry=registry_with({"record": recorded.append}),
            ),
            Global(
                "caller", address=f"nats://{small_server.url}", registry=CallbackRegistry()
            ) as caller,
        ):
            await caller.wait_function_async("record", timeout=5)
            with caller.as_current(), anyio.move_on_after(5) as hang:
                try:
                    await record(2)
                except DaffiError as exc:
                    error: DaffiError | None = exc
                else:
                    error = None
    assert not hang.cancelled_caught, "the upload hung on an item NATS could not carry"
    # The call failed and is cancelled where it runs: the item before the big one may or may
    # not have run by then; nothing after it does.
    assert recorded in ([], [b"small"])
    assert error is not None
    assert "max_payload" in str(error)


# ---------------------------------------------------------------- a clean stop


async def test_a_clean_stop_warns_of_nothing(
    nats_server: NatsServer, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As in controller mode, a node that stops on purpose logs no warning: a warning that
    it is reconnecting would send its operator looking for an outage that is not there."""
    caplog.set_level(logging.WARNING, logger="daffi")
    with anyio.fail_after(15):
        async with Global(
            "calm", address=f"nats://{nats_server.url}", registry=CallbackRegistry()
        ) as calm:
            await calm.wait_process_async("calm", timeout=5)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("daffi")] == []


# ---------------------------------------------------------------- a token, the extra


async def test_a_token_in_the_address(tmp_path: Path, anyio_backend: str) -> None:
    """``nats://TOKEN@host:port`` for a server started with ``--auth TOKEN``."""
    require_nats()
    server = start_server(tmp_path, "token", extra=["--auth", "s3cr3t-token"])
    try:
        with anyio.fail_after(15):
            with pytest.raises(AuthenticationError):
                async with Global("no-token", address=f"nats://{server.url}", connect_timeout=2):
                    pass  # pragma: no cover
            address = f"nats://s3cr3t-token@{server.url}"
            async with (
                Global("worker", address=address, registry=registry_with({"echo": lambda x: x})),
                Global("caller", address=address, registry=CallbackRegistry()) as caller,
            ):
                await caller.wait_function_async("echo", timeout=5)
                with caller.as_current():
                    assert await echo("t") == "t"
    finally:
        server.stop()


def test_without_nats_py_the_error_says_what_to_install() -> None:
    """A process without nats-py (hidden from the import system here) gets an error naming
    the extra, before anything is started."""
    program = (
        "import sys\n"
        "sys.modules['nats'] = None  # as if nats-py were not installed\n"
        "from daffi import Global\n"
        "from daffi.exceptions import InitializationError\n"
        "try:\n"
        "    Global('lonely', address='nats://127.0.0.1:4222')\n"
        "except InitializationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'daffi[nats]'" in done.stdout, done


async def test_an_nkey_seed_file_in_the_address(tmp_path: Path, anyio_backend: str) -> None:
    """``?nkey=FILE`` for a server that admits users by nkey (nats-py reads the seed; the
    nats extra installs nkeys)."""
    require_nats()
    nkeys = pytest.importorskip("nkeys")
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    config = tmp_path / "nkey.conf"
    config.write_text(f"authorization {{ users = [ {{ nkey: {public} }} ] }}\n")
    server = start_server(tmp_path, "nkey", extra=["-c", str(config)])
    try:
        with anyio.fail_after(15):
            with pytest.raises(AuthenticationError):
                async with Global("no-key", address=f"nats://{server.url}", connect_timeout=2):
                    pass  # pragma: no cover
            address = f"nats://{server.url}?nkey={seed_file}"
            async with (
                Global("worker", address=address, registry=registry_with({"echo": lambda x: x})),
                Global("caller", address=address, registry=CallbackRegistry()) as caller,
            ):
                await caller.wait_function_async("echo", timeout=5)
                with caller.as_current():
                    assert await echo("k") == "k"
    finally:
        server.stop()
