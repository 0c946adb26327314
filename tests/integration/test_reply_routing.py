"""Replies are routed only from the node that runs the call.

The controller remembers, for every call in flight, which node executes it. A ``Result`` or
``Error`` for that call sent by any other connection is dropped with a warning, whether the
controller handles it right where it was read (asyncio's direct path) or in the serving task
(trio, and asyncio after a message the direct path declines). These tests run real Globals
over a Unix socket and add a *rogue* raw connection that sprays forged replies.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import msgspec
import pytest

from daffi import Global
from daffi._connection import Connection
from daffi._frames import encode_frame
from daffi._protocol import PROTOCOL_VERSION, Error, Hello, Ping, Result, Welcome
from daffi.decorators import fetcher
from daffi.exceptions import daffi_error_info
from daffi.registry import CallbackRegistry
from daffi.transports import Address, get_transport

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

FAKE = msgspec.Raw(msgspec.msgpack.encode("fake"))
#: Call ids the rogue forges replies for (the client's ids start at 1).
SPRAYED_IDS = range(1, 201)


@fetcher
async def slow():
    pass


@fetcher
async def echo(x):
    pass


async def slow_cb() -> str:
    await anyio.sleep(0.5)
    return "real"


async def echo_cb(x: object) -> object:
    await anyio.sleep(0.01)
    return x


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A short private directory for the Unix socket."""
    path = tempfile.mkdtemp(prefix="daffi-rr-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _registry(**callbacks: object) -> CallbackRegistry:
    registry = CallbackRegistry()
    for name, fn in callbacks.items():
        registry.add(fn, name)  # type: ignore[arg-type]
    return registry


class Rogue:
    """A raw connection to the controller that forges replies for another node's calls."""

    def __init__(self, conn: Connection, victim: str) -> None:
        self.conn = conn
        self.victim = victim
        self.rounds = 0
        self.received: list[object] = []
        self.closed = False

    def _forged(self, round_: int) -> bytes:
        frames = []
        if round_ % 2:
            # A declined message first: on asyncio the replies after it go through the
            # controller's serving task (_route_reply) instead of the direct path.
            frames.append(encode_frame(Ping()))
        for call_id in SPRAYED_IDS:
            if round_ % 3 == 2:
                error = daffi_error_info("RemoteCallError", "forged", "rogue")
                frames.append(encode_frame(Error(call_id, self.victim, error)))
            else:
                frames.append(encode_frame(Result(call_id, self.victim, FAKE)))
        return b"".join(bytes(frame) for frame in frames)

    async def spray(self) -> None:
        """Every 10 ms, forge replies for call ids 1..200, until cancelled or closed."""
        try:
            while True:
                await self.conn.send_frame(self._forged(self.rounds))
                self.rounds += 1
                await anyio.sleep(0.01)
        except anyio.BrokenResourceError:
            self.closed = True

    async def drain(self) -> None:
        """Read what the controller sends the rogue (Pongs, directory updates)."""
        try:
            while True:
                msg, _ = await self.conn.receive()
                self.received.append(msg)
        except anyio.EndOfStream:
            self.closed = True


@asynccontextmanager
async def rogue_connection(address: Address, victim: str) -> AsyncIterator[Rogue]:
    stream = await get_transport("unix").connect(address)
    conn = Connection(stream, peer="controller")
    try:
        await conn.send(Hello(PROTOCOL_VERSION, "rogue"))
        with anyio.fail_after(5):
            welcome, _ = await conn.receive()
        assert isinstance(welcome, Welcome)
        yield Rogue(conn, victim)
    finally:
        with anyio.CancelScope(shield=True):
            await conn.aclose()


@asynccontextmanager
async def spraying(rogue: Rogue) -> AsyncIterator[Rogue]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(rogue.drain)
        tg.start_soon(rogue.spray)
        yield rogue
        tg.cancel_scope.cancel()


def _drop_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "daffi.controller" and "runs elsewhere; dropped" in record.getMessage()
    ]


@asynccontextmanager
async def ctrl_and_client(sock_dir: str) -> AsyncIterator[tuple[Global, Global]]:
    """A controller whose node offers ``slow``, and a client node."""
    async with (
        Global(
            "ctrl", init_controller=True, unix_sock_path=sock_dir, registry=_registry(slow=slow_cb)
        ) as ctrl,
        Global("client", unix_sock_path=sock_dir, registry=CallbackRegistry()) as client,
    ):
        yield ctrl, client


async def test_forged_replies_from_another_node_are_dropped(
    anyio_backend: str, sock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daffi.controller")
    with anyio.fail_after(30):
        async with ctrl_and_client(sock_dir) as (ctrl, client):
            await client.wait_function_async("slow", timeout=5)
            async with rogue_connection(ctrl.address, "client") as rogue, spraying(rogue):
                with client.as_current():
                    # Several calls, so that forged replies hit several ids in flight.
                    first = await slow()
                    second = await slow()
                assert first == "real"
                assert second == "real"
                assert rogue.rounds >= 10  # the rogue really sprayed during the calls
            # The controller saw the forged replies for the calls in flight and dropped them.
            warnings = _drop_warnings(caplog)
            assert warnings
            assert all("'rogue'" in text and "'client'" in text for text in warnings)
            # The controller keeps working after the rogue is gone.
            with client.as_current():
                assert await slow() == "real"


async def test_legitimate_reply_from_a_separate_executor_arrives(
    anyio_backend: str, sock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daffi.controller")
    with anyio.fail_after(30):
        async with (
            Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir) as ctrl,
            Global(
                "worker", unix_sock_path=sock_dir, registry=_registry(slow=slow_cb, echo=echo_cb)
            ),
            Global("client", unix_sock_path=sock_dir, registry=CallbackRegistry()) as client,
        ):
            await client.wait_function_async("slow", timeout=5)
            await client.wait_function_async("echo", timeout=5)
            with client.as_current():
                # client -> controller -> worker, and the worker's reply back.
                assert await slow() == "real"
                results: dict[int, object] = {}

                async def one(i: int) -> None:
                    results[i] = await echo(i)

                async with anyio.create_task_group() as tg:
                    for i in range(50):
                        tg.start_soon(one, i)
            assert results == {i: i for i in range(50)}
            assert not _drop_warnings(caplog)

            # The same with a rogue spraying forged replies meanwhile.
            async with rogue_connection(ctrl.address, "client") as rogue, spraying(rogue):
                with client.as_current():
                    assert await slow() == "real"
                    assert [await echo(f"v{i}") for i in range(5)] == [f"v{i}" for i in range(5)]
                assert rogue.rounds >= 5
            assert _drop_warnings(caplog)


async def test_one_burst_of_forged_replies_does_not_finish_the_call(
    anyio_backend: str, sock_dir: str
) -> None:
    """A node that runs none of the client's calls cannot answer them, even with the right
    ids (one burst, no declined message before it: the direct path alone on asyncio)."""
    with anyio.fail_after(30):
        async with ctrl_and_client(sock_dir) as (ctrl, client):
            await client.wait_function_async("slow", timeout=5)
            async with rogue_connection(ctrl.address, "client") as rogue:
                with client.as_current():
                    async with anyio.create_task_group() as tg:
                        results: list[object] = []

                        async def call() -> None:
                            results.append(await slow())

                        tg.start_soon(call)
                        # A single burst while the call runs (no Ping before it: on asyncio
                        # it goes through the direct path only).
                        await anyio.sleep(0.1)
                        await rogue.conn.send_frame(rogue._forged(0))
                        await anyio.sleep(0.05)
                        assert not results  # a forged reply would have finished the call
            assert results == ["real"]
