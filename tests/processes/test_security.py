"""TLS, mutual TLS and token authentication between real processes over loopback TCP.

Certificates are made by ``trustme`` for each module run (a CA, a server certificate for
127.0.0.1 and localhost, client certificates from that CA and from another one) in a temp
dir; nothing secret is committed. The programs are in ``security_programs/``: each takes its
``Global`` options as JSON, so every configuration is spelled out here. Controllers log
daffi's INFO lines to stderr, which the tests read for the controller's side of a refusal.

The secret-on-the-wire and impostor tests put a relay (``_relay.py``, threads in the test
process) between a node and its controller: it records every byte, and cuts and holds
connections to make a node lose its link while the test watches.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from daffi._auth import HOLD_INTERVALS

from ._relay import Relay
from .conftest import Launcher, Program

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]

SECURITY_PROGRAMS = Path(__file__).parent / "security_programs"
LOOPBACK = "127.0.0.1"
# Long enough never to be what ends a test that works; refusals must come far sooner.
CONNECT_TIMEOUT = 10.0
# A refused node must know within this many seconds (not wait out connect_timeout).
QUICKLY = CONNECT_TIMEOUT / 4
CALLS = 5
TOKEN = "correct horse battery staple"


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files the tests use."""

    ca: str
    server_cert: str
    server_key: str
    #: a client certificate signed by ``ca``
    client_cert: str
    client_key: str
    #: a client certificate signed by another CA, unknown to the controller
    stranger_cert: str
    stranger_key: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")

    def write(name: str, blob: trustme.Blob) -> str:
        path = directory / name
        blob.write_to_path(str(path))
        return str(path)

    ca = trustme.CA()
    server = ca.issue_cert(LOOPBACK, "localhost")
    client = ca.issue_cert("client.daffi.test")
    stranger = trustme.CA().issue_cert("stranger.daffi.test")
    return Pki(
        ca=write("ca.pem", ca.cert_pem),
        server_cert=write("server.pem", server.cert_chain_pems[0]),
        server_key=write("server.key", server.private_key_pem),
        client_cert=write("client.pem", client.cert_chain_pems[0]),
        client_key=write("client.key", client.private_key_pem),
        stranger_cert=write("stranger.pem", stranger.cert_chain_pems[0]),
        stranger_key=write("stranger.key", stranger.private_key_pem),
    )


@pytest.fixture
def relays() -> Iterator[list[Relay]]:
    """Relays a test starts (append them); closed, threads joined, after the test."""
    started: list[Relay] = []
    try:
        yield started
    finally:
        for relay in started:
            relay.close()


# ---------------------------------------------------------------------- helpers


def program(filename: str) -> str:
    """An absolute path: `Launcher` joins it onto its own programs directory unchanged."""
    return str(SECURITY_PROGRAMS / filename)


def start_controller(
    launch: Launcher, name: str, *, offer: bool = False, **options: Any
) -> tuple[Program, int]:
    """A controller listening on a free loopback port (with a node offering ``square`` and
    ``whoami`` if ``offer``), and its port."""
    args = [name, json.dumps({"host": LOOPBACK, **options})]
    controller = launch(program("controller.py"), *args, *(["offer"] if offer else []), name=name)
    port = int(controller.wait_for_line(r"^READY (\d+)$", timeout=15)[1])
    return controller, port


def start_callee(launch: Launcher, name: str, **options: Any) -> Program:
    """A node offering ``square`` and ``whoami``, joined."""
    callee = launch(program("callee.py"), name, json.dumps(options), name=name)
    callee.wait_for_line(rf"^READY {name} {callee.pid}$", timeout=15)
    return callee


def start_caller(
    launch: Launcher,
    name: str,
    style: str,
    *,
    receiver: str | None = None,
    env: dict[str, str] | None = None,
    **options: Any,
) -> Program:
    """``caller.py`` in ``style`` (sync, asyncio, trio) with ``options``, started."""
    args = [name, json.dumps(options), style, str(CALLS), *([receiver] if receiver else [])]
    return launch(program("caller.py"), *args, name=name, env=env)


def assert_answers(caller: Program, pid: int) -> None:
    """``caller`` got ``square(i)`` right for every call, all run by the process ``pid``,
    and exited cleanly."""
    for i in range(CALLS):
        caller.wait_for_line(rf"^RESULT {i} {i * i}$", timeout=15)
    caller.wait_for_line(rf"^WHOAMI {pid}$", timeout=10)
    caller.wait_for_line(r"^DONE$", timeout=10)
    assert caller.wait_exit(10) == 0, caller.describe()


@dataclass(frozen=True)
class Refusal:
    """How a joiner's ``Global(...)`` failed."""

    kind: str
    seconds: float
    message: str


def try_join(launch: Launcher, name: str, *, label: str | None = None, **options: Any) -> Refusal:
    """Run ``joiner.py`` with ``options`` and return how its ``Global(...)`` was refused
    (fails the test if it joined)."""
    joiner = launch(program("joiner.py"), name, json.dumps(options), name=label or name)
    return refusal_of(joiner)


def refusal_of(joiner: Program) -> Refusal:
    match = joiner.wait_for_line(
        r"^REFUSED (\S+) (\S+) (.*)$", timeout=CONNECT_TIMEOUT + 5, fail_on=r"^JOINED"
    )
    assert joiner.wait_exit(10) == 0, joiner.describe()
    return Refusal(match[1], float(match[2]), match[3])


def log_lines(program: Program, text: str) -> list[str]:
    """The lines of ``program``'s stderr containing ``text``."""
    return [line for line in program.stderr().splitlines() if text in line]


def wait_for_log_count(program: Program, text: str, count: int, timeout: float = 10.0) -> None:
    """Wait until ``text`` is on ``count`` lines of ``program``'s stderr."""
    deadline = time.monotonic() + timeout
    while len(log_lines(program, text)) < count:
        if program.popen.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{program.name} did not log {text!r} {count} times\n{program.describe()}")
        time.sleep(0.01)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds (checked every 10 ms); fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def tls_server(pki: Pki, **more: Any) -> dict[str, Any]:
    return {"ssl_certificate": pki.server_cert, "ssl_key": pki.server_key, **more}


def node_options(port: int, **more: Any) -> dict[str, Any]:
    return {"host": LOOPBACK, "port": port, "connect_timeout": CONNECT_TIMEOUT, **more}


# ---------------------------------------------------------------------- TLS


@pytest.mark.parametrize("topology", ["controller-in-callee", "standalone-controller"])
def test_tls_round_trips_from_sync_asyncio_and_trio_callers(
    launch: Launcher, pki: Pki, topology: str
) -> None:
    """Callers of the three kinds get every value back over TLS, whether the controller
    runs in the callee's process or in a third one. The asyncio caller connects to
    ``tls://localhost:PORT`` and the trio caller to ``tls://127.0.0.1:PORT``: the server
    certificate is checked for either name."""
    if topology == "controller-in-callee":
        callee, port = start_controller(launch, "tls-server", offer=True, **tls_server(pki))
    else:
        _, port = start_controller(launch, "tls-controller", **tls_server(pki))
        callee = start_callee(launch, "tls-callee", **node_options(port, ssl_ca=pki.ca))
    tls_node = {"ssl_ca": pki.ca, "connect_timeout": CONNECT_TIMEOUT}
    callers = [
        start_caller(launch, "sync-caller", "sync", **node_options(port, ssl_ca=pki.ca)),
        start_caller(
            launch, "asyncio-caller", "asyncio", address=f"tls://localhost:{port}", **tls_node
        ),
        start_caller(launch, "trio-caller", "trio", address=f"tls://{LOOPBACK}:{port}", **tls_node),
    ]
    for caller in callers:
        assert_answers(caller, callee.pid)


def test_plaintext_node_is_refused_by_a_tls_controller(launch: Launcher, pki: Pki) -> None:
    """A node without TLS learns at once that the controller wants TLS; the controller logs
    the refusal in one line."""
    controller, port = start_controller(launch, "tls-controller", offer=True, **tls_server(pki))

    refused = try_join(launch, "plain-node", **node_options(port))

    assert "TLS" in refused.message, refused
    assert refused.seconds < QUICKLY, refused
    controller.wait_for_stderr("does not speak TLS")
    assert len(log_lines(controller, "does not speak TLS")) == 1, controller.describe()


def test_tls_node_fails_clearly_against_a_plaintext_controller(launch: Launcher, pki: Pki) -> None:
    """A node speaking TLS to a plaintext controller fails at once, saying the controller
    does not speak TLS; the controller logs that a TLS client connected."""
    controller, port = start_controller(launch, "plain-controller", offer=True)

    refused = try_join(launch, "tls-node", **node_options(port, ssl_ca=pki.ca))

    assert "does not speak TLS" in refused.message, refused
    assert refused.seconds < QUICKLY, refused
    controller.wait_for_stderr("a TLS client connected to this plaintext controller")


def test_mutual_tls_admits_only_nodes_with_a_certificate_from_its_ca(
    launch: Launcher, pki: Pki
) -> None:
    """A controller with ``ssl_ca`` requires client certificates signed by that CA."""
    controller, port = start_controller(
        launch, "mtls-server", offer=True, **tls_server(pki, ssl_ca=pki.ca)
    )

    anonymous = try_join(launch, "anonymous", **node_options(port, ssl_ca=pki.ca))
    assert anonymous.kind == "AuthenticationError", anonymous
    assert "client certificate" in anonymous.message, anonymous
    assert anonymous.seconds < QUICKLY, anonymous
    controller.wait_for_stderr("it sent no client certificate")

    stranger = try_join(
        launch,
        "stranger",
        **node_options(
            port, ssl_ca=pki.ca, ssl_certificate=pki.stranger_cert, ssl_key=pki.stranger_key
        ),
    )
    assert stranger.kind == "AuthenticationError", stranger
    assert "certificate" in stranger.message, stranger
    assert stranger.seconds < QUICKLY, stranger
    controller.wait_for_stderr("its client certificate does not verify against ssl_ca")

    member = start_caller(
        launch,
        "member",
        "sync",
        **node_options(
            port, ssl_ca=pki.ca, ssl_certificate=pki.client_cert, ssl_key=pki.client_key
        ),
    )
    assert_answers(member, controller.pid)


# ---------------------------------------------------------------------- tokens


def test_token_authentication_refuses_a_missing_or_wrong_token(
    launch: Launcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes without the token or with another one are refused by the controller, which
    says so; nodes with it join, whether it comes from ``auth_token`` or the environment."""
    monkeypatch.delenv("DAFFI_AUTH_TOKEN", raising=False)
    controller, port = start_controller(launch, "token-server", offer=True, auth_token=TOKEN)

    missing = try_join(launch, "no-token", **node_options(port))
    wrong = try_join(launch, "wrong-token", **node_options(port, auth_token="not " + TOKEN))

    for refused, why in [(missing, "requires an auth token"), (wrong, "auth token is wrong")]:
        assert refused.kind == "AuthenticationError", refused
        assert refused.message.startswith("controller 'token-server' refused process"), refused
        assert why in refused.message, refused
        assert refused.seconds < QUICKLY, refused
    assert len(log_lines(controller, "refused node 'no-token'")) == 1, controller.describe()
    assert len(log_lines(controller, "refused node 'wrong-token'")) == 1, controller.describe()

    by_argument = start_caller(
        launch, "by-argument", "sync", **node_options(port, auth_token=TOKEN)
    )
    by_environment = start_caller(
        launch, "by-environment", "asyncio", env={"DAFFI_AUTH_TOKEN": TOKEN}, **node_options(port)
    )
    for caller in (by_argument, by_environment):
        assert_answers(caller, controller.pid)


def test_the_token_never_travels(launch: Launcher, relays: list[Relay]) -> None:
    """Every byte between a node and its controller, recorded by a relay, holds the node's
    name (the handshake was recorded) but never the shared token, in any usual encoding."""
    token = secrets.token_hex(16)
    controller, port = start_controller(launch, "wire-server", offer=True, auth_token=token)
    relay = Relay((LOOPBACK, port))
    relays.append(relay)

    caller = start_caller(
        launch, "wire-client", "sync", **node_options(relay.port, auth_token=token)
    )
    assert_answers(caller, controller.pid)

    recorded = relay.recorded()
    assert any(r.direction == "up" and b"wire-client" in r.data for r in recorded), recorded
    encodings = {
        "utf-8": token.encode(),
        "hex": token.encode().hex().encode(),
        "HEX": token.encode().hex().upper().encode(),
        "base64": base64.b64encode(token.encode()),
        "urlsafe base64": base64.urlsafe_b64encode(token.encode()),
        "decoded hex": bytes.fromhex(token),
    }
    for record in recorded:
        for encoding, needle in encodings.items():
            assert needle not in record.data, (
                f"the token ({encoding}) is in the bytes of connection {record.connection} "
                f"({record.direction})"
            )


def test_an_impostor_cannot_take_the_name_of_a_node_that_lost_its_link(
    launch: Launcher, relays: list[Relay]
) -> None:
    """Node "server" reaches the controller through a relay; the relay cuts it off and
    holds its reconnection. Meanwhile another process with the right token asks for the
    name "server" and is refused: the name belongs to the lost session. When the relay lets
    the real server through, it reclaims its name, and calls pinned to "server" reach it."""
    # 3 heartbeat intervals (6 s) of hold: far more than the impostor needs to knock, and
    # never waited out (the real server comes back before).
    common = {"auth_token": TOKEN, "heartbeat_interval": 2.0}
    controller, port = start_controller(launch, "guard", **common)
    relay = Relay((LOOPBACK, port))
    relays.append(relay)
    server = start_callee(launch, "server", **node_options(relay.port, **common))
    controller.wait_for_stderr("node 'server' connected")
    impostor = launch(
        program("joiner.py"),
        "server",
        json.dumps(node_options(port, **common)),
        "wait",
        name="impostor",
        stdin=True,
    )
    impostor.wait_for_line(r"^WAITING$", timeout=15)

    cut = time.monotonic()
    relay.hold()
    controller.wait_for_stderr("node 'server' disconnected")
    impostor.send_line()
    refused = refusal_of(impostor)

    assert refused.kind == "AuthenticationError", refused
    assert "belongs to a session that lost its link" in refused.message, refused
    assert len(log_lines(controller, "refused an impostor of node 'server'")) == 1, (
        controller.describe()
    )

    wait_until(lambda: relay.held() == 1, "the server to try to reconnect through the relay")
    relay.release()
    wait_for_log_count(controller, "node 'server' connected", 2)
    # It came back while its name was still held (held from a moment after the cut), so it
    # was admitted by proving it is the lost session, not because the name was free again.
    assert time.monotonic() - cut < HOLD_INTERVALS * common["heartbeat_interval"]
    client = start_caller(
        launch, "client", "sync", receiver="server", **node_options(port, **common)
    )
    assert_answers(client, server.pid)
    # Only the impostor was refused: the real server's reconnection proved its session.
    assert len(log_lines(controller, "refused node 'server'")) == 1, controller.describe()
    assert server.popen.poll() is None, server.describe()
    assert re.findall(r"^READY", "\n".join(server.lines()), re.M) == ["READY"]
