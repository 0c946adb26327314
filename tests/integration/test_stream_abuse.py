"""The controller checks stream frames against each stream's two parties and its window.

Issue 11, row D4: the controller forwarded ``YieldItem`` and ``Credit`` without checking who
sent them, so a third node could inject items into another node's stream; and a node that
over-granted credit, or streamed beyond its credit, got the node *receiving* those frames
disconnected while it stayed. Each test runs a controller, a node offering callbacks and a
legitimate client over a Unix socket, on asyncio and trio; an intruder speaks the protocol
by hand (``_raw.RawPeer``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from daffi import Global
from daffi._protocol import Call, CallbackInfo, Credit, ParamInfo, Ping, Pong, StreamItem, YieldItem
from daffi.decorators import alias, fetcher
from daffi.exceptions import RemoteStoppedUnexpectedly
from daffi.registry import CallbackRegistry

from ._raw import RawPeer, args_payload, value_payload

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

WINDOW = 64


@alias("echo")
@fetcher
async def echo(x):
    pass


@alias("count")
@fetcher
async def count(n):
    pass


@alias("gen")
@fetcher
async def hostile_gen():
    pass


@alias("sink")
@fetcher
async def upload(n):
    for i in range(n):
        yield i


@dataclass
class Network:
    client: Global
    sock_dir: str
    #: the nodes the watching node saw leave or drop
    gone: list[str] = field(default_factory=list)
    #: what the server's ``collect`` received
    collected: list[Any] = field(default_factory=list)

    async def calls_succeed(self, count: int = 20) -> None:
        with self.client.as_current():
            for i in range(count):
                assert await echo(i) == i

    async def assert_only_gone(self, *names: str) -> None:
        await anyio.sleep(0.2)  # a disconnect of anyone else would have been announced
        assert sorted(set(self.gone)) == sorted(names)


@asynccontextmanager
async def network(sock_dir: str) -> AsyncIterator[Network]:
    gone: list[str] = []

    async def on_node_disconnect(g: Global, name: str) -> None:
        gone.append(name)

    collected: list[Any] = []
    registry = CallbackRegistry()
    registry.add(lambda x: x, "echo")
    registry.add(collected.append, "collect")

    async def count_(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    registry.add(count_, "count")
    with anyio.fail_after(40):
        async with (
            Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir),
            Global(
                "watch",
                registry=CallbackRegistry(),
                unix_sock_path=sock_dir,
                on_node_disconnect=on_node_disconnect,
            ),
            Global("server", registry=registry, unix_sock_path=sock_dir),
            Global("client", registry=CallbackRegistry(), unix_sock_path=sock_dir) as client,
        ):
            await client.wait_function_async("echo", timeout=5)
            net = Network(client, sock_dir, gone, collected)
            await net.calls_succeed()
            yield net


async def settled(peer: RawPeer) -> None:
    """Until the controller handled everything ``peer`` sent before (it answers in order)."""
    await peer.send(Ping())
    await peer.receive_until(Pong)


async def test_a_node_cannot_inject_items_into_another_nodes_stream(
    sock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daffi.controller")
    async with network(sock_dir) as net:
        intruder = await RawPeer.join(sock_dir, "intruder")
        with net.client.as_current():
            stream = await count(200)
            received = [await stream.__anext__()]
            # The client's download is open; its call id is one of the first hundreds.
            injected = [YieldItem(i, "client", value_payload("INJECTED")) for i in range(300)]
            await intruder.send(*injected)
            await settled(intruder)
            await net.calls_succeed()
            received += [x async for x in stream]
        assert received == list(range(200))
        assert "dropped a stream frame: node 'intruder' sent YieldItem for call" in caplog.text
        # Counted against the intruder: it may go on a while, not for ever.
        stream_open = anyio.Event()

        async def long_download() -> None:
            with net.client.as_current():
                stream = await count(10_000)
                await stream.__anext__()
                stream_open.set()
                await anyio.sleep(30)

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_download)
            await stream_open.wait()
            with contextlib.suppress(anyio.BrokenResourceError):  # closed midway
                for _ in range(100):
                    await intruder.send(*injected)
            assert await intruder.closed_by_controller()
            tg.cancel_scope.cancel()
        await net.calls_succeed()
        await net.assert_only_gone("intruder")
        assert "sent 100 stream frames for calls it is not part of" in caplog.text


async def test_over_granting_credit_closes_the_granter_not_the_generator(sock_dir: str) -> None:
    async with network(sock_dir) as net:
        intruder = await RawPeer.join(sock_dir, "intruder")
        await intruder.send(Call(1, "count", args_payload(1000), "intruder"))
        first = await intruder.receive_until(YieldItem)
        assert first.id == 1
        await intruder.send(Credit(1, "intruder", 1000, True))
        assert await intruder.closed_by_controller()
        await net.calls_succeed()
        await net.assert_only_gone("intruder")


async def test_streaming_beyond_credit_closes_the_sender_not_the_callee(sock_dir: str) -> None:
    async with network(sock_dir) as net:
        intruder = await RawPeer.join(sock_dir, "intruder")
        items = [StreamItem(2, "intruder", args_payload(i)) for i in range(200)]
        await intruder.send(Call(2, "collect", args_payload(), "intruder", stream_in=True), *items)
        assert await intruder.closed_by_controller()
        await net.calls_succeed()
        await net.assert_only_gone("intruder")
        assert net.collected == list(range(len(net.collected)))
        assert len(net.collected) <= WINDOW


async def test_a_callee_flooding_values_is_closed_and_its_caller_told(sock_dir: str) -> None:
    async with network(sock_dir) as net:
        gen = CallbackInfo("gen", is_async=True, is_generator=True)
        intruder = await RawPeer.join(sock_dir, "intruder", (gen,))
        await net.client.wait_function_async("gen", timeout=5)
        received: list[Any] = []

        async def flood() -> None:
            call = await intruder.receive_until(Call)
            items = [YieldItem(call.id, "client", value_payload(i)) for i in range(200)]
            await intruder.send(*items)

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            with net.client.as_current():
                stream = await hostile_gen()

                async def drain() -> None:
                    async for x in stream:
                        received.append(x)

                with pytest.raises(RemoteStoppedUnexpectedly, match="'intruder' disconnected"):
                    await drain()
        assert received  # the items within the window arrived
        assert received == list(range(len(received)))
        assert len(received) <= WINDOW
        await net.calls_succeed()
        await net.assert_only_gone("intruder")


async def test_a_callee_over_granting_credit_is_closed_and_its_caller_told(
    sock_dir: str,
) -> None:
    async with network(sock_dir) as net:
        intruder = await RawPeer.join(
            sock_dir, "intruder", (CallbackInfo("sink", (ParamInfo("x", 1),)),)
        )
        await net.client.wait_function_async("sink", timeout=5)

        async def over_grant() -> None:
            call = await intruder.receive_until(Call)
            await intruder.receive_until(StreamItem)
            await intruder.send(Credit(call.id, "client", 1000, False))

        async with anyio.create_task_group() as tg:
            tg.start_soon(over_grant)
            with (
                net.client.as_current(),
                pytest.raises(RemoteStoppedUnexpectedly, match="'intruder' disconnected"),
            ):
                await upload(1000)
        await net.calls_succeed()
        await net.assert_only_gone("intruder")
