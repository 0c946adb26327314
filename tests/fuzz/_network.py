"""The network the controller fuzz tests attack (see ``test_controller_fuzz.py``): a
controller, a node ``server`` offering callbacks and a legitimate node ``client``,
in-process on a Unix socket in a temp dir, on the loop of a blocking portal; and what the
tests check after every example (``Network.attack``: the controller closed the attacker's
connections and no other, the client's calls all succeed, nothing logged above WARNING but
"protocol error from ...").
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import event

from daffi import Global
from daffi._controller import Controller
from daffi._frames import encode_frame, first_frame
from daffi._protocol import (
    PROTOCOL_VERSION,
    Attach,
    Hello,
    Message,
    Ping,
    Welcome,
)
from daffi.decorators import alias, fetcher
from daffi.registry import CallbackRegistry

#: the attacker's name
ME = "intruder"


def frame(msg: Any) -> bytes:
    return bytes(encode_frame(msg))


#: seconds the controller gets to finish with a connection, and the client for its calls
PATIENCE = 15


@alias("echo")
@fetcher
async def echo(x):
    pass


@alias("echo_sync")
@fetcher
async def echo_sync(x):
    pass


@alias("count")
@fetcher
async def count(n):
    pass


# ------------------------------------------------------------------ the network


class ErrorLog(logging.Handler):
    """Keeps daffi's records above WARNING (from any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lock_ = threading.Lock()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock_:
            self.records.append(record)

    def take(self) -> list[str]:
        with self.lock_:
            records, self.records = self.records, []
        return [r.getMessage() for r in records]


@dataclass
class Network:
    portal: BlockingPortal
    sock_path: str
    ctrl: Global
    controller: Controller
    client: Global
    #: connections the controller has open when no attacker is connected
    baseline: int
    log: ErrorLog
    #: the nodes the client saw leave (the attackers' only, while all is well)
    departed: list[str]
    #: the first failure and what the attacker had sent (see _first_failure)
    broken: str | None = field(default=None, repr=False)

    def attack(self, chunks: list[bytes], *, ping: bool = False) -> None:
        """Send ``chunks`` (one write each) on a new raw connection, then end it; check the
        controller is done with it and still serves the client, and logged nothing above
        WARNING but protocol errors."""
        with self._first_failure(f"{b''.join(chunks)!r}, ping={ping}"):
            self._check(self.portal.call(self._attack, chunks, ping))

    def attack_channel(
        self, hello: Hello, chunks: list[bytes], *, work: bool, own_token: bool, main_first: bool
    ) -> None:
        """Join with ``hello``, open a call channel (``work``: a work channel) with this
        session's token (or a wrong one), send ``chunks`` on it, end both connections (the
        node's first if ``main_first``); then check as :meth:`attack` does."""
        what = (
            f"{hello!r}, then on a channel (work={work}, own_token={own_token}, "
            f"main_first={main_first}): {b''.join(chunks)!r}"
        )
        with self._first_failure(what):
            self._check(
                self.portal.call(self._attack_channel, hello, chunks, work, own_token, main_first)
            )

    @contextlib.contextmanager
    def _first_failure(self, what: str) -> Iterator[None]:
        """Keep the first example that failed: the network may be broken after it, and
        every later example (hypothesis shrinking, too) then fails naming it."""
        assert self.broken is None, f"the network broke in an earlier example: {self.broken}"
        try:
            yield
        except BaseException as exc:
            self.broken = f"{exc!r} after sending {what}"[:20_000]
            raise

    def _check(self, outcomes: list[str]) -> None:
        for outcome in outcomes:
            event(outcome)
        self.portal.call(self._settle)
        self.portal.call(self._calls_succeed)
        departed = self.portal.call(self._take_departed)
        assert not {"server", "client"} & set(departed), f"legitimate nodes left: {departed}"
        errors = self.log.take()
        if any(line.startswith("protocol error from") for line in errors):
            event("the controller logged a protocol error")
        unexpected = [line for line in errors if not line.startswith("protocol error from")]
        assert not unexpected, unexpected

    def _take_departed(self) -> list[str]:
        # on the loop, where the hook adds to it
        departed, self.departed[:] = list(self.departed), []
        return departed

    async def _attack(self, chunks: list[bytes], ping: bool) -> list[str]:
        """The attack; what happened to its connection (for the statistics)."""
        with anyio.fail_after(PATIENCE):
            async with await anyio.connect_unix(self.sock_path) as stream:
                return await converse(stream, chunks, ping=ping)

    async def _attack_channel(
        self, hello: Hello, chunks: list[bytes], work: bool, own_token: bool, main_first: bool
    ) -> list[str]:
        with anyio.fail_after(PATIENCE):
            async with await anyio.connect_unix(self.sock_path) as main:
                await main.send(frame(hello))
                received = bytearray()
                welcome: Welcome | None = None
                while welcome is None:
                    received += await main.receive()  # (a valid Hello: a Welcome comes)
                    welcome = next((m for m in frames(received) if isinstance(m, Welcome)), None)
                token = welcome.channel_token
                assert token is not None  # a node in another process may open channels
                if not own_token:
                    token = bytes(b ^ 1 for b in token)
                attach = frame(Attach(PROTOCOL_VERSION, ME, token, work))
                async with await anyio.connect_unix(self.sock_path) as channel:
                    if main_first:
                        # the channel is open (or refused) before the node leaves
                        await channel.send(attach)
                        welcomed = await channel.receive()  # a Welcome or a Reject
                        ended = await converse(main, [])
                        on_channel = await converse(channel, chunks, received=welcomed)
                        return ["node first: " + how for how in ended] + [
                            "channel: " + how for how in on_channel
                        ]
                    on_channel = await converse(channel, [attach, *chunks])
                    return ["channel: " + how for how in on_channel] + await converse(main, [])

    async def _settle(self) -> None:
        """Until the controller closed every connection of the attack (it has dropped the
        node the attacker joined as, if any)."""
        gate = self.controller.gate
        with anyio.fail_after(PATIENCE):
            while gate.open > self.baseline:
                await gate._freed.wait()
        assert not self.ctrl._runtime.stopped, "the controller stopped"
        assert gate.open == self.baseline, "the controller closed a legitimate connection"
        assert {"client", "server"} <= set(self.controller.peers)

    async def _calls_succeed(self) -> None:
        with anyio.fail_after(PATIENCE), self.client.as_current():
            for i in range(3):
                assert await echo(i) == i
            assert await echo_sync("x") == "x"
            assert [x async for x in await count(3)] == [0, 1, 2]


async def converse(
    stream: anyio.abc.SocketStream,
    chunks: list[bytes],
    *,
    ping: bool = False,
    received: bytes = b"",
) -> list[str]:
    """Send ``chunks`` on ``stream`` (one write each; with ``ping``, then a Ping, and wait
    for the Pong), end it, and read until the controller closes it too: how it ended, and
    what the controller sent (after ``received``, for the statistics)."""
    answers: set[str] = set()
    buf = bytearray(received)

    def take() -> None:
        answers.update(type(msg).__name__ for msg in frames(buf))

    try:
        for chunk in chunks:
            if chunk:
                await stream.send(chunk)
        if ping:
            # Everything sent before is handled once the Pong comes back (or the
            # controller closed the connection over it).
            await stream.send(frame(Ping()))
            take()
            while "Pong" not in answers:
                buf += await stream.receive()
                take()
        await stream.send_eof()
        how = "the attacker ended the connection"
    except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
        how = "the controller closed the connection first"
    # The controller closes the connection (the attacker ended its side).
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        while True:
            buf += await stream.receive()
    take()
    return [how, *(f"the controller answered {name}" for name in sorted(answers))]


def frames(buf: bytearray) -> Iterator[Message]:
    """The whole frames at the start of ``buf`` (taken out of it)."""
    while (taken := first_frame(buf, 1 << 30, "the controller")) is not None:
        del buf[: len(taken[1])]
        yield taken[0]


def server_registry() -> CallbackRegistry:
    registry = CallbackRegistry()

    async def echo_cb(x: Any) -> Any:
        return x

    def echo_sync_cb(x: Any) -> Any:
        return x

    async def count_cb(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    def collect_cb(*args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)

    registry.add(echo_cb, "echo")
    registry.add(echo_sync_cb, "echo_sync")
    registry.add(count_cb, "count")
    registry.add(collect_cb, "collect")
    return registry


@contextlib.asynccontextmanager
async def running_network(sock_dir: str) -> AsyncIterator[dict[str, Any]]:
    """The controller, ``server`` and ``client``, running; once the server's work channel
    is open (the controller's connections then stay as they are)."""
    departed: list[str] = []

    def on_node_disconnect(g: Global, name: str) -> None:
        departed.append(name)

    async with (
        Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir) as ctrl,
        Global("server", registry=server_registry(), unix_sock_path=sock_dir),
        Global(
            "client",
            registry=CallbackRegistry(),
            unix_sock_path=sock_dir,
            on_node_disconnect=on_node_disconnect,
        ) as client,
    ):
        controller = ctrl._runtime.controller
        assert controller is not None
        with anyio.fail_after(PATIENCE):
            await client.wait_function_async("echo_sync", timeout=PATIENCE)
            # no event tells when the work channel is open: look again until it is
            while not controller.peers["server"].work:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        net = {
            "ctrl": ctrl,
            "controller": controller,
            "client": client,
            "baseline": controller.gate.open,
            "departed": departed,
        }
        yield net


@contextlib.contextmanager
def open_network(backend: str) -> Iterator[Network]:
    """The controller, ``server`` and ``client``, on the loop of a blocking portal running
    ``backend``."""
    sock_dir = tempfile.mkdtemp(prefix="daffi-fz-", dir="/tmp")
    log = ErrorLog()
    daffi_logger = logging.getLogger("daffi")
    daffi_logger.addHandler(log)
    try:
        with (
            start_blocking_portal(backend) as portal,
            portal.wrap_async_context_manager(running_network(sock_dir)) as parts,
        ):
            net = Network(
                portal,
                str(Path(sock_dir) / "daffi.sock"),
                parts["ctrl"],
                parts["controller"],
                parts["client"],
                parts["baseline"],
                log,
                parts["departed"],
            )
            portal.call(net._calls_succeed)
            assert net.log.take() == []
            yield net
    finally:
        daffi_logger.removeHandler(log)
        shutil.rmtree(sock_dir, ignore_errors=True)
