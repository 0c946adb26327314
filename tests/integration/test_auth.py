"""Token authentication and names bound to sessions, in one process on the memory transport.

A controller with ``auth_token`` challenges every node from another process: the node proves
it knows the token (``Hello`` -> ``Challenge`` -> ``Proof`` -> ``Welcome`` | ``Reject``), and
the controller proves it too in its ``Welcome``. The token itself never travels. When a
node's link is lost without a ``Bye``, its name is held for its session for
``HOLD_INTERVALS`` heartbeat intervals: only that session (with its resume proof) may take it.

Hostile peers and a fake controller are built from the raw frames of ``_raw.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

from daffi import Global
from daffi._auth import HOLD_INTERVALS, NONCE_SIZE, new_nonce, proof
from daffi._controller import Controller
from daffi._frames import DEFAULT_MAX_FRAME_SIZE, first_frame
from daffi._protocol import (
    PROTOCOL_VERSION,
    Bye,
    Challenge,
    Hello,
    Message,
    Proof,
    Reject,
    Welcome,
)
from daffi._settings import AUTH_TOKEN_VARIABLE
from daffi.decorators import alias, fetcher
from daffi.exceptions import AuthenticationError, InitializationError
from daffi.registry import CallbackRegistry
from daffi.transports import Address, get_transport

from ._raw import RawPeer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

TOKEN = "correct horse battery staple"


@alias("auth_echo")
@fetcher
async def echo(x):
    pass


@alias("auth_whoami")
@fetcher
async def whoami():
    pass


@pytest.fixture(autouse=True)
def no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test says which token each process has (a token in the CI's environment would
    change what these tests see)."""
    monkeypatch.delenv(AUTH_TOKEN_VARIABLE, raising=False)


def controller(address: str, **kwargs: Any) -> Global:
    return Global("ctrl", init_controller=True, init_node=False, address=address, **kwargs)


def node(address: str, name: str, **kwargs: Any) -> Global:
    """A node offering ``auth_echo`` and ``auth_whoami`` (which answers ``name``)."""
    registry = CallbackRegistry()
    registry.add(lambda x: x, "auth_echo")
    registry.add(lambda: name, "auth_whoami")
    return Global(name, address=address, registry=registry, **kwargs)


async def raw_connect(address: str) -> RawPeer:
    """A raw connection to the controller listening on memory ``address``."""
    return RawPeer(await get_transport("memory").connect(Address.parse(address)))


class Seen:
    """Hooks for a node (async: they run on its loop) recording in :attr:`names` every
    process it saw join (``+x``) or leave (``-x``), itself included."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._events: dict[str, anyio.Event] = {}

    @property
    def hooks(self) -> dict[str, Callable[..., Any]]:
        return {"on_node_connect": self._on_connect, "on_node_disconnect": self._on_disconnect}

    def event(self, what: str) -> anyio.Event:
        """Set once ``what`` (``+x`` or ``-x``) was seen since the last :meth:`forget`."""
        return self._events.setdefault(what, anyio.Event())

    def forget(self) -> None:
        """Start afresh: what was seen so far sets no event any more."""
        self.names.clear()
        self._events.clear()

    async def _on_connect(self, g: Global, name: str) -> None:
        self.names.append(f"+{name}")
        self.event(f"+{name}").set()

    async def _on_disconnect(self, g: Global, name: str) -> None:
        self.names.append(f"-{name}")
        self.event(f"-{name}").set()


def session_key_of(g: Global) -> bytes | None:
    """The key of node ``g``'s current (or last) session with its controller."""
    node_ = g._runtime.node
    assert node_ is not None
    return node_.session.introduction.credentials.session_key


class ReconnectGate:
    """Holds back a node's reconnections until :meth:`open` (its session's connector waits),
    so a test can act while the node is away."""

    def __init__(self, g: Global) -> None:
        node_ = g._runtime.node
        assert node_ is not None
        session = node_.session
        connect = session._connect
        self.opened = anyio.Event()
        #: the node tried to reconnect (it noticed its link was lost)
        self.attempted = anyio.Event()

        async def gated() -> Any:
            self.attempted.set()
            await self.opened.wait()
            return await connect()

        session._connect = gated

    def open(self) -> None:
        self.opened.set()


async def cut_link(ctrl: Global, name: str) -> None:
    """Close node ``name``'s connection from the controller's side: its link is lost
    without a ``Bye``."""
    core = ctrl._runtime.controller
    assert core is not None
    await core.peers[name].conn.aclose()


# --- the token ---------------------------------------------------------------------------------


async def test_nodes_with_the_right_token_join_and_call_each_other(address: str) -> None:
    with anyio.fail_after(20):
        async with (
            controller(address, auth_token=TOKEN),
            node(address, "server", auth_token=TOKEN) as server,
            node(address, "client", auth_token=TOKEN.encode()) as client,
        ):
            await client.wait_process_async("server", timeout=5)
            await server.wait_process_async("client", timeout=5)
            with client.as_current():
                assert await echo(7) == 7
                assert await whoami() == "server"
            with server.as_current():
                assert await whoami() == "client"


async def test_a_controller_with_its_own_node_needs_no_proof_from_it(address: str) -> None:
    """The node in the controller's process talks to it in memory: no challenge."""
    with anyio.fail_after(20):
        async with (
            Global(
                "ctrl",
                init_controller=True,
                address=address,
                auth_token=TOKEN,
                registry=CallbackRegistry(),
            ) as ctrl,
            node(address, "server", auth_token=TOKEN),
        ):
            await ctrl.wait_process_async("server", timeout=5)
            with ctrl.as_current():
                assert await whoami() == "server"


async def test_a_node_without_the_token_is_refused(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daffi")
    with anyio.fail_after(20):
        async with controller(address, auth_token=TOKEN):
            with pytest.raises(
                AuthenticationError,
                match=r"^controller 'ctrl' refused process 'x': it requires an auth token "
                r"\(auth_token or DAFFI_AUTH_TOKEN\), and the process has none$",
            ):
                async with node(address, "x"):
                    pass
    assert "refused node 'x'" in caplog.text


async def test_a_node_with_a_wrong_token_is_refused(address: str) -> None:
    with anyio.fail_after(20):
        async with controller(address, auth_token=TOKEN):
            with pytest.raises(
                AuthenticationError,
                match=r"^controller 'ctrl' refused process 'x': its auth token is wrong "
                r"\(it differs from the controller's\)$",
            ):
                async with node(address, "x", auth_token=TOKEN + "!"):
                    pass


async def test_a_node_with_a_token_refuses_a_controller_without_one(address: str) -> None:
    with anyio.fail_after(20):
        async with controller(address):
            with pytest.raises(
                AuthenticationError,
                match=r"^this process refused the controller: it does not check auth tokens, "
                r"and this process has one",
            ):
                async with node(address, "x", auth_token=TOKEN):
                    pass


async def test_the_token_comes_from_the_environment_when_not_given(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with anyio.fail_after(20):
        monkeypatch.setenv(AUTH_TOKEN_VARIABLE, TOKEN)
        async with (
            controller(address),  # its token comes from the environment too
            node(address, "server"),
            node(address, "client") as client,
        ):
            await client.wait_process_async("server", timeout=5)
            with client.as_current():
                assert await whoami() == "server"
            # A token given explicitly wins over the environment.
            with pytest.raises(AuthenticationError, match="its auth token is wrong"):
                async with node(address, "other", auth_token="not " + TOKEN):
                    pass
            # An empty variable means no token.
            monkeypatch.setenv(AUTH_TOKEN_VARIABLE, "")
            with pytest.raises(AuthenticationError, match=r"and the process has none$"):
                async with node(address, "empty"):
                    pass


# --- raw peers -----------------------------------------------------------------------------


async def test_a_wrong_proof_is_refused_before_anything_is_registered(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer that answers the challenge with a wrong proof gets a ``Reject`` and the
    connection closes; no node ever hears of it, and the controller's directory never
    holds it. (A raw peer with the right proof is admitted: the refusal was the proof's.)"""
    caplog.set_level(logging.WARNING, logger="daffi")
    seen = Seen()
    with anyio.fail_after(20):
        async with (
            controller(address, auth_token=TOKEN) as ctrl,
            node(address, "client", auth_token=TOKEN, **seen.hooks) as client,
        ):
            core = ctrl._runtime.controller
            assert core is not None
            for wrong in (b"\x00" * 32, None, b"short"):
                intruder = await raw_connect(address)
                nonce = new_nonce()
                await intruder.send(
                    Hello(PROTOCOL_VERSION, "intruder", ("msgpack",), (), nonce=nonce, token=True)
                )
                challenge = await intruder.receive()
                assert isinstance(challenge, Challenge), challenge
                assert challenge.token is True
                assert len(challenge.nonce) == NONCE_SIZE
                assert "intruder" not in core.peers
                await intruder.send(Proof(wrong))
                reject = await intruder.receive()
                assert reject == Reject(
                    "controller 'ctrl' refused process 'intruder': its auth token is wrong "
                    "(it differs from the controller's)",
                    "AuthenticationError",
                )
                assert await intruder.closed_by_controller()
                assert "intruder" not in core.peers
            # The same exchange with the right proof joins.
            honest = await raw_connect(address)
            nonce = new_nonce()
            await honest.send(
                Hello(PROTOCOL_VERSION, "honest", ("msgpack",), (), nonce=nonce, token=True)
            )
            challenge = await honest.receive()
            assert isinstance(challenge, Challenge)
            secret = TOKEN.encode()
            await honest.send(Proof(proof(secret, b"node", nonce, challenge.nonce, "honest")))
            welcome = await honest.receive()
            assert isinstance(welcome, Welcome), welcome
            assert welcome.proof == proof(secret, b"controller", nonce, challenge.nonce, "honest")
            assert welcome.session_key is None  # derived from the token on both ends
            # Directory news reach the client in order: the intruder's would have come first.
            await seen.event("+honest").wait()
            assert "+intruder" not in seen.names
            assert set(core.peers) == {"client", "honest"}
            assert set(client.registered_callbacks) == {"honest"}
            await honest.aclose()
    assert caplog.text.count("refused node 'intruder'") == 3


async def test_a_proof_before_a_hello_is_a_protocol_error(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daffi")
    with anyio.fail_after(20):
        async with controller(address, auth_token=TOKEN):
            peer = await raw_connect(address)
            await peer.send(Proof(b"\x00" * 32))
            assert await peer.closed_by_controller()
    assert "protocol error from a peer: expected Hello as the first message, got Proof" in (
        caplog.text
    )


@pytest.mark.parametrize("nonce", [None, b"", b"\x01" * (NONCE_SIZE - 1), b"\x01" * 64])
async def test_a_hello_with_a_malformed_nonce_is_a_protocol_error(
    address: str, caplog: pytest.LogCaptureFixture, nonce: bytes | None
) -> None:
    caplog.set_level(logging.WARNING, logger="daffi")
    with anyio.fail_after(20):
        async with controller(address, auth_token=TOKEN) as ctrl:
            peer = await raw_connect(address)
            await peer.send(
                Hello(PROTOCOL_VERSION, "odd", ("msgpack",), (), nonce=nonce, token=True)
            )
            # Closed without a challenge or a reject.
            with pytest.raises(anyio.EndOfStream):
                await peer.receive()
            assert "odd" not in ctrl.registered_callbacks
    assert "protocol error from 'odd': node 'odd' sent no valid nonce in its Hello" in (caplog.text)


async def test_a_peer_that_never_answers_the_challenge_is_closed_after_the_handshake_timeout(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``Global`` has no setting for it: a ``Controller`` is run directly, with 0.3 s."""
    caplog.set_level(logging.WARNING, logger="daffi")
    core = Controller(
        "ctrl", [Address.parse(address)], handshake_timeout=0.3, auth_secret=TOKEN.encode()
    )
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(core.serve)
            peer = await raw_connect(address)
            await peer.send(
                Hello(PROTOCOL_VERSION, "mute", ("msgpack",), (), nonce=new_nonce(), token=True)
            )
            assert isinstance(await peer.receive(), Challenge)
            started = anyio.current_time()
            with pytest.raises(anyio.EndOfStream):
                await peer.receive()
            waited = anyio.current_time() - started
            assert 0.2 < waited < 3, waited
            assert "mute" not in core.peers
            tg.cancel_scope.cancel()
    assert (
        "protocol error from 'mute': node 'mute' did not answer the authentication challenge"
        in (caplog.text)
    )


@asynccontextmanager
async def fake_controller(
    address: str,
    answer: Callable[[Hello, bytes, Proof], Welcome],
    *,
    token: bool = True,
) -> AsyncIterator[list[Message]]:
    """A raw "controller" on memory ``address`` for one node: it challenges the node's
    ``Hello`` (asking for a token unless ``token`` is false) and answers its ``Proof`` with
    ``answer(hello, challenge nonce, proof)``. Yields the messages it received."""
    received: list[Message] = []
    listening = await get_transport("memory").listen(Address.parse(address))

    async def serve() -> None:
        peer = RawPeer(await listening.listener.accept())
        try:
            hello = await peer.receive()
            received.append(hello)
            assert isinstance(hello, Hello)
            nonce = new_nonce()
            await peer.send(Challenge(nonce, token=token))
            answer_ = await peer.receive()
            received.append(answer_)
            assert isinstance(answer_, Proof)
            await peer.send(answer(hello, nonce, answer_))
            # Until the node says Bye (then it waits for the link to close) or closes.
            with anyio.move_on_after(5):
                while not isinstance(received[-1], Bye):
                    received.append(await peer.receive())
        except anyio.EndOfStream:
            pass
        finally:
            await peer.aclose()

    async with listening, anyio.create_task_group() as tg:
        tg.start_soon(serve)
        yield received
        tg.cancel_scope.cancel()


def welcome(proof_: bytes | None) -> Welcome:
    return Welcome(PROTOCOL_VERSION, "fake", "msgpack", {}, None, proof=proof_)


@pytest.mark.parametrize(
    "forge",
    [
        lambda hello, nonce: None,
        lambda hello, nonce: b"\x00" * 32,
        lambda hello, nonce: proof(b"another token", b"controller", hello.nonce, nonce, "x"),
        # The node's own proof sent back: one side's proof is never the other's.
        lambda hello, nonce: proof(TOKEN.encode(), b"node", hello.nonce, nonce, "x"),
    ],
    ids=["none", "zeros", "other-token", "node-proof"],
)
async def test_a_node_refuses_a_controller_whose_welcome_proof_is_wrong(
    address: str, forge: Callable[[Hello, bytes], bytes | None]
) -> None:
    """The fake controller does not know the token: the node refuses its ``Welcome``. The
    node's own ``Proof`` is checked on the way (the right HMAC, no resume proof yet)."""
    with anyio.fail_after(20):
        async with fake_controller(
            address, lambda hello, nonce, _: welcome(forge(hello, nonce))
        ) as received:
            with pytest.raises(
                AuthenticationError,
                match=r"^this process refused the controller: it could not prove it knows the "
                r"auth token",
            ):
                async with node(address, "x", auth_token=TOKEN):
                    pass
    hello, node_proof = received[0], received[1]
    assert isinstance(hello, Hello)
    assert isinstance(node_proof, Proof)
    assert hello.token is True
    assert hello.nonce is not None
    assert len(hello.nonce) == NONCE_SIZE
    assert node_proof.resume is None
    assert node_proof.token is not None
    assert len(node_proof.token) == 32


async def test_a_fake_controller_with_the_right_proof_is_accepted(address: str) -> None:
    """The control case of the test above: the same fake controller, knowing the token."""

    def honest(hello: Hello, nonce: bytes, given: Proof) -> Welcome:
        assert hello.nonce is not None
        secret = TOKEN.encode()
        assert given.token == proof(secret, b"node", hello.nonce, nonce, "x")
        return welcome(proof(secret, b"controller", hello.nonce, nonce, "x"))

    with anyio.fail_after(20):
        async with (
            fake_controller(address, honest),
            node(address, "x", auth_token=TOKEN) as x,
        ):
            await x.wait_process_async("x", timeout=5)


async def test_a_node_with_a_token_refuses_a_challenge_that_checks_none(address: str) -> None:
    """A controller that challenges without checking a token (mutual TLS alone) cannot
    prove it knows the node's: the node refuses it before it sends any proof."""
    with anyio.fail_after(20):
        async with fake_controller(
            address, lambda hello, nonce, _: welcome(None), token=False
        ) as received:
            with pytest.raises(
                AuthenticationError,
                match=r"^this process refused the controller: it does not check auth tokens",
            ):
                async with node(address, "x", auth_token=TOKEN):
                    pass
    assert [type(msg) for msg in received] == [Hello]


# --- names bound to sessions -----------------------------------------------------------------


async def test_a_lost_nodes_name_is_held_for_its_session(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``server`` loses its link without a ``Bye``; while it is away, a process with the
    right token claiming its name is refused (and logged as an impostor); ``server``
    reconnects by itself, proves its session and gets its name back."""
    caplog.set_level(logging.WARNING, logger="daffi")
    seen = Seen()
    with anyio.fail_after(30):
        async with (
            controller(address, auth_token=TOKEN) as ctrl,
            node(address, "server", auth_token=TOKEN) as server,
            node(address, "client", auth_token=TOKEN, **seen.hooks) as client,
        ):
            await client.wait_process_async("server", timeout=5)
            first_key = session_key_of(server)
            assert first_key is not None
            gate = ReconnectGate(server)
            await cut_link(ctrl, "server")
            await seen.event("-server").wait()
            await gate.attempted.wait()
            with pytest.raises(
                AuthenticationError,
                match=r"^controller 'ctrl' refused process 'server': process name 'server' "
                r"belongs to a session that lost its link [\d.]+ s ago and may come back; only "
                r"that session can reclaim it until it is released in [\d.]+ s$",
            ):
                async with node(address, "server", auth_token=TOKEN):
                    pass
            assert "refused an impostor of node 'server'" in caplog.text
            seen.forget()
            gate.open()
            await seen.event("+server").wait()
            assert seen.names == ["+server"]  # the impostor never joined
            assert session_key_of(server) not in (None, first_key)  # a new session
            with client.as_current():
                assert await echo(11) == 11
                assert await whoami() == "server"
            with server.as_current():
                assert await whoami() == "client"
            # The name is no longer held: back with its owner, it is simply taken.
            with pytest.raises(InitializationError, match="is already used by a connected node"):
                async with node(address, "server", auth_token=TOKEN):
                    pass


async def test_a_node_that_left_with_bye_frees_its_name_at_once(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="daffi")
    with anyio.fail_after(20):
        async with (
            controller(address, auth_token=TOKEN),
            node(address, "client", auth_token=TOKEN) as client,
        ):
            async with node(address, "server", auth_token=TOKEN):
                await client.wait_process_async("server", timeout=5)
            # Its goodbye ended when the controller had taken it off: no wait needed.
            async with node(address, "server", auth_token=TOKEN):
                with client.as_current():
                    assert await whoami() == "server"
    assert "impostor" not in caplog.text


async def test_a_held_name_is_free_for_anyone_with_the_token_after_the_hold(address: str) -> None:
    """Heartbeats of 0.3 s: the name of a node gone without a ``Bye`` is held 0.9 s."""
    interval = 0.3
    hold = HOLD_INTERVALS * interval
    seen = Seen()

    def registry_answering(answer: str) -> CallbackRegistry:
        registry = CallbackRegistry()
        registry.add(lambda: answer, "auth_whoami")
        return registry

    with anyio.fail_after(30):
        async with (
            controller(address, auth_token=TOKEN, heartbeat_interval=interval) as ctrl,
            node(address, "server", auth_token=TOKEN, heartbeat_interval=interval) as server,
            node(
                address, "client", auth_token=TOKEN, heartbeat_interval=interval, **seen.hooks
            ) as c,
        ):
            await c.wait_process_async("server", timeout=5)
            gate = ReconnectGate(server)  # never opened: the old server stays away
            await cut_link(ctrl, "server")
            await seen.event("-server").wait()
            lost = anyio.current_time()  # the name is held from (a little before) now
            with pytest.raises(AuthenticationError, match="belongs to a session that lost"):
                async with Global(
                    "server",
                    address=address,
                    auth_token=TOKEN,
                    heartbeat_interval=interval,
                    registry=registry_answering("too early"),
                ):
                    pass
            assert anyio.current_time() - lost < hold, "the hold ended before the check"
            await anyio.sleep_until(lost + hold + 0.05)
            async with Global(
                "server",
                address=address,
                auth_token=TOKEN,
                heartbeat_interval=interval,
                registry=registry_answering("newcomer"),
            ):
                with c.as_current():
                    assert await whoami() == "newcomer"
            assert not gate.opened.is_set()


# --- the secret on the wire ----------------------------------------------------------------


class Relay:
    """Relays every connection made to memory address ``front`` to ``back`` and records
    the bytes of each direction of each connection."""

    def __init__(self, front: str, back: str) -> None:
        self.front = Address.parse(front)
        self.back = Address.parse(back)
        #: per connection: [bytes from the node, bytes from the controller]
        self.recorded: list[list[bytearray]] = []
        self._streams: list[anyio.abc.ByteStream] = []

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        transport = get_transport("memory")
        async with await transport.listen(self.front) as listening:
            task_status.started()
            async with anyio.create_task_group() as tg:
                while True:
                    downstream = await listening.listener.accept()
                    upstream = await transport.connect(self.back)
                    record = [bytearray(), bytearray()]
                    self.recorded.append(record)
                    self._streams += [downstream, upstream]
                    tg.start_soon(self._pump, downstream, upstream, record[0])
                    tg.start_soon(self._pump, upstream, downstream, record[1])

    async def cut_all(self) -> None:
        """Close every relayed connection (both ends)."""
        for stream in self._streams:
            await stream.aclose()
        self._streams.clear()

    @staticmethod
    async def _pump(
        source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream, record: bytearray
    ) -> None:
        try:
            while True:
                chunk = await source.receive()
                record += chunk
                await sink.send(chunk)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            await source.aclose()
            await sink.aclose()


def messages(data: bytes) -> list[Message]:
    """The messages in a recorded byte stream."""
    buffer = bytearray(data)
    out: list[Message] = []
    while (taken := first_frame(buffer, DEFAULT_MAX_FRAME_SIZE, "recorded")) is not None:
        out.append(taken[0])
        del buffer[: len(taken[1])]
    return out


async def test_the_token_and_the_session_key_never_travel(address: str) -> None:
    """Every byte between the nodes and the controller is recorded through a relay, over two
    joins, calls both ways, a reconnection with a resume proof and the goodbyes: the token,
    its UTF-8 text and the session keys appear nowhere, the node names do."""
    front = address + "-front"
    relay = Relay(front, address)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(relay.serve)
            server_seen, client_seen = Seen(), Seen()
            async with (
                controller(address, auth_token=TOKEN),
                node(front, "server", auth_token=TOKEN, **server_seen.hooks) as server,
                node(front, "client", auth_token=TOKEN, **client_seen.hooks) as client,
            ):
                await client.wait_process_async("server", timeout=5)
                with client.as_current():
                    assert await echo("ping") == "ping"
                with server.as_current():
                    assert await whoami() == "client"
                keys = [session_key_of(server), session_key_of(client)]
                server_seen.forget()
                client_seen.forget()
                await relay.cut_all()
                # Both reconnect by themselves, each proving its session.
                await server_seen.event("+server").wait()
                await client_seen.event("+client").wait()
                await client.wait_process_async("server", timeout=5)
                with client.as_current():
                    assert await whoami() == "server"
                keys += [session_key_of(server), session_key_of(client)]
            tg.cancel_scope.cancel()
    assert all(key is not None and len(key) == 32 for key in keys)
    assert len(set(keys)) == 4  # a new session key per join
    assert len(relay.recorded) >= 4
    wire = b"".join(bytes(part) for record in relay.recorded for part in record)
    assert b"server" in wire
    assert b"client" in wire
    for secret in (TOKEN.encode(), TOKEN.encode().hex().encode(), *keys):
        assert secret not in wire  # type: ignore[operator]
    kinds = [
        {type(msg).__name__ for msg in messages(bytes(part))}
        for record in relay.recorded
        for part in record
    ]
    from_nodes = set().union(*kinds[0::2])
    from_controller = set().union(*kinds[1::2])
    assert {"Hello", "Proof", "Call", "Bye"} <= from_nodes
    assert {"Challenge", "Welcome", "Result"} <= from_controller
    resumed = [
        msg
        for record in relay.recorded
        for msg in messages(bytes(record[0]))
        if isinstance(msg, Proof) and msg.resume is not None
    ]
    assert len(resumed) >= 2  # both came back proving their sessions
