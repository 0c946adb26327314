"""TLS and token settings (``Settings.check``, ``tls_config``, ``auth_secret``) and the
building blocks of authentication in ``daffi._auth`` (proofs, ``valid``, ``HeldNames``).

Certificates are made with ``trustme`` in a temporary directory; no connection is opened.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from daffi._accepting import DEFAULT_FRAME_TIMEOUT, DEFAULT_MAX_CONNECTIONS
from daffi._auth import (
    HOLD_INTERVALS,
    NONCE_SIZE,
    Guard,
    HeldNames,
    NodeCredentials,
    new_nonce,
    proof,
    session_key,
    valid,
)
from daffi._connection import DEFAULT_MAX_FRAME_SIZE
from daffi._protocol import DEFAULT_MAX_CALLBACKS, DEFAULT_MAX_REGISTRATION_SIZE
from daffi._router import DEFAULT_MAX_CALLS_IN_FLIGHT
from daffi._settings import AUTH_TOKEN_VARIABLE, Settings, auth_secret
from daffi._tls import tls_config
from daffi.exceptions import InitializationError
from daffi.execution_modifiers import MIN_PERIOD_INTERVAL
from daffi.registry import CallbackRegistry

TCP = "tcp://127.0.0.1:7777"


@dataclass(frozen=True)
class Pki:
    """PEM files of one CA and a certificate it signed for ``localhost``."""

    ca: str
    certificate: str
    key: str
    ca_subject: tuple[Any, ...]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "certificate", "key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    leaf.cert_chain_pems[0].write_to_path(str(paths["certificate"]))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    # The subject of the CA as ssl.SSLContext.get_ca_certs() reports it.
    probe = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(paths["ca"]))
    subject = probe.get_ca_certs()[0]["subject"]
    return Pki(str(paths["ca"]), str(paths["certificate"]), str(paths["key"]), subject)


@pytest.fixture
def garbage(tmp_path: Path) -> str:
    path = tmp_path / "garbage.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return str(path)


@pytest.fixture(autouse=True)
def no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set DAFFI_AUTH_TOKEN themselves when they need it."""
    monkeypatch.delenv(AUTH_TOKEN_VARIABLE, raising=False)


def check(**overrides: Any) -> Settings:
    """``Settings.check`` with the defaults of ``Global(...)`` for a node on ``TCP``, and
    ``overrides``."""
    arguments: dict[str, Any] = dict(
        process_name="p",
        init_controller=False,
        init_node=True,
        host=None,
        port=None,
        unix_sock_path=None,
        ssl_certificate=None,
        ssl_key=None,
        ssl_ca=None,
        auth_token=None,
        ssl_bind_names=False,
        allow_transfer=False,
        allow_pickle=False,
        state_dir=None,
        on_init=None,
        on_node_connect=None,
        on_node_disconnect=None,
        address=TCP,
        backend="asyncio",
        connect_timeout=30.0,
        registry=CallbackRegistry(),
        workers=40,
        max_frame_size=DEFAULT_MAX_FRAME_SIZE,
        heartbeat_interval=5.0,
        max_concurrent_calls=10_000,
        min_period_interval=MIN_PERIOD_INTERVAL,
        max_connections=DEFAULT_MAX_CONNECTIONS,
        frame_timeout=DEFAULT_FRAME_TIMEOUT,
        max_callbacks=DEFAULT_MAX_CALLBACKS,
        max_registration_size=DEFAULT_MAX_REGISTRATION_SIZE,
        max_calls_in_flight=DEFAULT_MAX_CALLS_IN_FLIGHT,
    )
    arguments.update(overrides)
    return Settings.check(**arguments)


CONTROLLER = dict(init_controller=True, init_node=False)


# --- TLS configured by halves ----------------------------------------------------------------


@pytest.mark.parametrize(
    "role", [CONTROLLER, dict(init_controller=False, init_node=True)], ids=["controller", "node"]
)
def test_a_certificate_without_its_key_or_the_reverse_is_refused(pki: Pki, role: Any) -> None:
    with pytest.raises(
        InitializationError,
        match=r"^ssl_certificate was given without ssl_key: TLS needs both \(the certificate "
        r"and its private key\); refusing to run without TLS instead$",
    ):
        check(ssl_certificate=pki.certificate, **role)
    with pytest.raises(
        InitializationError, match=r"^ssl_key was given without ssl_certificate: TLS needs both"
    ):
        check(ssl_key=pki.key, **role)
    # Checked before anything else: also on an address TLS does not apply to.
    with pytest.raises(InitializationError, match="ssl_key was given without ssl_certificate"):
        check(ssl_key=pki.key, address="memory://x", **role)


def test_a_controller_with_ssl_ca_or_a_tls_address_but_no_certificate_is_refused(pki: Pki) -> None:
    with pytest.raises(
        InitializationError,
        match=r"^a controller serves TLS with ssl_certificate and ssl_key; ssl_ca alone would "
        r"leave it without a certificate to present$",
    ):
        check(ssl_ca=pki.ca, **CONTROLLER)
    with pytest.raises(
        InitializationError,
        match=r"^a controller serves TLS with ssl_certificate and ssl_key; a tls:// address "
        r"alone would leave it",
    ):
        check(address="tls://127.0.0.1:7777", **CONTROLLER)
    # The same with the node of its process running beside it.
    with pytest.raises(InitializationError, match="ssl_ca alone would leave it"):
        check(ssl_ca=pki.ca, init_controller=True, init_node=True)


@pytest.mark.parametrize("address", ["memory://x", "unix:///tmp/daffi-x/daffi.sock"])
@pytest.mark.parametrize("what", ["certificate", "ca"])
@pytest.mark.parametrize("role", [CONTROLLER, {}], ids=["controller", "node"])
def test_tls_on_an_address_without_a_host_is_refused(
    pki: Pki, address: str, what: str, role: Any
) -> None:
    scheme = address.partition("://")[0]
    given = (
        dict(ssl_certificate=pki.certificate, ssl_key=pki.key)
        if what == "certificate"
        else dict(ssl_ca=pki.ca)
    )
    with pytest.raises(
        InitializationError,
        match=rf"^TLS \(ssl_certificate, ssl_key, ssl_ca, tls://\) is for TCP addresses, not "
        rf"{scheme}://; a Unix socket is protected by its file permissions instead$",
    ):
        check(address=address, **given, **role)


def test_a_unix_socket_path_with_tls_is_refused(pki: Pki, tmp_path: Path) -> None:
    """TLS given with ``unix_sock_path`` (no ``address``) is refused the same way."""
    with pytest.raises(InitializationError, match="is for TCP addresses, not unix://"):
        check(address=None, unix_sock_path=str(tmp_path), ssl_ca=pki.ca)


# --- files that do not load ------------------------------------------------------------------


@pytest.mark.parametrize("role", [CONTROLLER, {}], ids=["controller", "node"])
def test_a_missing_or_garbage_certificate_or_key_is_refused_naming_the_files(
    pki: Pki, garbage: str, tmp_path: Path, role: Any
) -> None:
    missing = str(tmp_path / "missing.pem")
    for certificate, key in ((missing, pki.key), (garbage, pki.key), (pki.certificate, garbage)):
        with pytest.raises(InitializationError) as caught:
            check(ssl_certificate=certificate, ssl_key=key, **role)
        message = str(caught.value)
        assert message.startswith(
            f"cannot load the TLS certificate {certificate!r} with the key {key!r}: "
        ), message
    with pytest.raises(InitializationError, match=r"No such file or directory"):
        check(ssl_certificate=missing, ssl_key=pki.key, **role)


def test_a_key_that_does_not_match_its_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    other = trustme.CA().issue_cert("localhost")
    other_key = tmp_path / "other-key.pem"
    other.private_key_pem.write_to_path(str(other_key))
    with pytest.raises(InitializationError, match=r"^cannot load the TLS certificate"):
        check(ssl_certificate=pki.certificate, ssl_key=str(other_key), **CONTROLLER)


@pytest.mark.parametrize("role", ["controller", "node"])
def test_a_missing_or_garbage_ca_is_refused_naming_the_file(
    pki: Pki, garbage: str, tmp_path: Path, role: str
) -> None:
    chain = (
        dict(ssl_certificate=pki.certificate, ssl_key=pki.key, **CONTROLLER)
        if role == "controller"
        else {}
    )
    missing = str(tmp_path / "missing-ca.pem")
    for ca in (missing, garbage):
        with pytest.raises(InitializationError) as caught:
            check(ssl_ca=ca, **chain)
        assert str(caught.value).startswith(f"cannot load the CA certificates in {ca!r} (ssl_ca): ")


# --- ssl_bind_names --------------------------------------------------------------------------


def test_ssl_bind_names_without_mutual_tls_is_refused(pki: Pki) -> None:
    message = (
        r"^ssl_bind_names binds node names to client certificates: it needs a controller with "
        r"mutual TLS \(ssl_certificate, ssl_key and ssl_ca\)$"
    )
    for arguments in (
        dict(**CONTROLLER),  # plaintext
        dict(ssl_certificate=pki.certificate, ssl_key=pki.key, **CONTROLLER),  # TLS, not mutual
        dict(ssl_ca=pki.ca),  # a node
        dict(ssl_ca=pki.ca, ssl_certificate=pki.certificate, ssl_key=pki.key),  # a node
    ):
        with pytest.raises(InitializationError, match=message):
            check(ssl_bind_names=True, **arguments)
    settings = check(
        ssl_bind_names=True,
        ssl_certificate=pki.certificate,
        ssl_key=pki.key,
        ssl_ca=pki.ca,
        **CONTROLLER,
    )
    assert settings.ssl_bind_names is True


# --- valid configurations --------------------------------------------------------------------


def test_plaintext_has_no_tls() -> None:
    assert check().tls is None
    assert check(**CONTROLLER).tls is None
    assert check(address="memory://x").tls is None


def test_a_controller_with_a_certificate_serves_tls(pki: Pki) -> None:
    tls = check(ssl_certificate=pki.certificate, ssl_key=pki.key, **CONTROLLER).tls
    assert tls is not None
    assert tls.server is not None
    assert tls.client is None
    assert tls.mutual is False
    assert tls.client_certificate is False
    assert tls.server.verify_mode == ssl.CERT_NONE
    assert tls.server.minimum_version == ssl.TLSVersion.TLSv1_2
    # Its own node talks to it in memory: no client context beside it.
    both = check(
        ssl_certificate=pki.certificate, ssl_key=pki.key, init_controller=True, init_node=True
    ).tls
    assert both is not None
    assert both.server is not None
    assert both.client is None


def test_a_controller_with_ssl_ca_requires_client_certificates(pki: Pki) -> None:
    tls = check(ssl_certificate=pki.certificate, ssl_key=pki.key, ssl_ca=pki.ca, **CONTROLLER).tls
    assert tls is not None
    assert tls.server is not None
    assert tls.mutual is True
    assert tls.server.verify_mode == ssl.CERT_REQUIRED
    assert [ca["subject"] for ca in tls.server.get_ca_certs()] == [pki.ca_subject]


def test_a_node_with_ssl_ca_checks_the_controller_against_it(pki: Pki) -> None:
    tls = check(ssl_ca=pki.ca).tls
    assert tls is not None
    assert tls.server is None
    assert tls.client is not None
    assert tls.client.verify_mode == ssl.CERT_REQUIRED
    assert tls.client.check_hostname is True
    assert tls.client.minimum_version == ssl.TLSVersion.TLSv1_2
    assert [ca["subject"] for ca in tls.client.get_ca_certs()] == [pki.ca_subject]
    assert tls.mutual is False
    assert tls.client_certificate is False


def test_a_node_with_a_client_certificate_presents_it(pki: Pki) -> None:
    tls = check(ssl_certificate=pki.certificate, ssl_key=pki.key, ssl_ca=pki.ca).tls
    assert tls is not None
    assert tls.client is not None
    assert tls.client_certificate is True
    assert tls.client.verify_mode == ssl.CERT_REQUIRED
    assert tls.client.check_hostname is True


def test_a_ca_directory_is_accepted(pki: Pki) -> None:
    tls = check(ssl_ca=str(Path(pki.ca).parent)).tls
    assert tls is not None
    assert tls.client is not None
    assert tls.client.verify_mode == ssl.CERT_REQUIRED


def test_a_tls_address_without_ssl_ca_uses_the_system_store() -> None:
    settings = check(address="tls://controller.example:7777")
    assert (settings.address.scheme, settings.address.host, settings.address.port) == (
        "tcp",
        "controller.example",
        7777,
    )
    tls = settings.tls
    assert tls is not None
    assert tls.server is None
    assert tls.client is not None
    assert tls.client.verify_mode == ssl.CERT_REQUIRED
    assert tls.client.check_hostname is True
    assert tls.client_certificate is False
    # The scheme is case-insensitive.
    assert check(address="TLS://controller.example:7777").tls is not None


def test_tls_config_directly() -> None:
    """Nothing asked: plaintext; the scheme is checked only once TLS is asked for."""
    assert (
        tls_config(
            certificate=None,
            key=None,
            ca=None,
            tls_address=False,
            scheme="unix",
            controller=True,
            node=True,
        )
        is None
    )
    with pytest.raises(InitializationError, match="is for TCP addresses, not memory://"):
        tls_config(
            certificate=None,
            key=None,
            ca=None,
            tls_address=True,
            scheme="memory",
            controller=False,
            node=True,
        )


# --- auth_token ------------------------------------------------------------------------------


def test_auth_secret_encodes_text_and_keeps_bytes() -> None:
    assert auth_secret("clé secrète") == "clé secrète".encode()
    assert auth_secret(b"\x00\xffraw") == b"\x00\xffraw"
    kept = auth_secret(bytearray(b"ba"))
    assert kept == b"ba"
    assert type(kept) is bytes
    assert auth_secret(None) is None


def test_auth_secret_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTH_TOKEN_VARIABLE, "from-env")
    assert auth_secret(None) == b"from-env"
    assert auth_secret("given") == b"given"  # an explicit token wins
    monkeypatch.setenv(AUTH_TOKEN_VARIABLE, "")
    assert auth_secret(None) is None  # empty: no token
    assert check(auth_token=None).auth_secret is None
    monkeypatch.setenv(AUTH_TOKEN_VARIABLE, "via-check")
    assert check(auth_token=None).auth_secret == b"via-check"
    assert check(auth_token="x", **CONTROLLER).auth_secret == b"x"


@pytest.mark.parametrize("token", ["", b"", bytearray(), 42, 1.5, ["x"]])
def test_an_empty_or_non_text_auth_token_is_refused(token: Any) -> None:
    kind = type(token).__name__
    given = f"an empty {kind}" if isinstance(token, str | bytes | bytearray) else kind
    with pytest.raises(
        InitializationError,
        match=rf"^auth_token must be a non-empty str or bytes \(or None to read "
        rf"{AUTH_TOKEN_VARIABLE}\), not {given}$",
    ):
        auth_secret(token)
    with pytest.raises(InitializationError, match="auth_token must be a non-empty str or bytes"):
        check(auth_token=token)


# --- daffi._auth: proofs ---------------------------------------------------------------------

KEY = b"k" * 16
N1 = b"\x01" * NONCE_SIZE
N2 = b"\x02" * NONCE_SIZE


def test_nonces_are_fresh_and_of_the_fixed_size() -> None:
    nonces = {new_nonce() for _ in range(50)}
    assert len(nonces) == 50
    assert {len(n) for n in nonces} == {NONCE_SIZE}


def test_a_proof_is_a_deterministic_sha256_hmac() -> None:
    assert proof(KEY, b"node", N1, N2, "a") == proof(KEY, b"node", N1, N2, "a")
    assert len(proof(KEY, b"node", N1, N2, "a")) == 32


def test_proofs_differ_by_role() -> None:
    roles = [b"node", b"controller", b"resume"]
    proofs = {proof(KEY, role, N1, N2, "a") for role in roles}
    proofs.add(session_key(KEY, N1, N2, "a"))
    assert len(proofs) == len(roles) + 1


def test_proofs_differ_by_nonce_name_and_key() -> None:
    base = proof(KEY, b"node", N1, N2, "a")
    others = [
        proof(KEY, b"node", N2, N1, "a"),  # the nonces swapped
        proof(KEY, b"node", new_nonce(), N2, "a"),
        proof(KEY, b"node", N1, new_nonce(), "a"),
        proof(KEY, b"node", N1, N2, "b"),
        proof(KEY, b"node", N1, N2, "a "),
        proof(b"other key", b"node", N1, N2, "a"),
    ]
    assert base not in others
    assert len(set(others)) == len(others)
    assert session_key(KEY, N1, N2, "a") != session_key(KEY, N1, N2, "b")
    assert session_key(KEY, N1, N2, "a") != session_key(KEY, N2, N1, "a")


def test_valid_compares_whole_proofs() -> None:
    expected = proof(KEY, b"node", N1, N2, "a")
    assert valid(expected, expected)
    assert valid(expected, bytes(expected))
    assert not valid(expected, None)
    assert not valid(expected, b"")
    assert not valid(expected, expected[:-1])
    assert not valid(expected, expected + b"\x00")
    assert not valid(expected, proof(KEY, b"controller", N1, N2, "a"))


def test_credentials_and_guard_defaults() -> None:
    credentials = NodeCredentials()
    assert (credentials.secret, credentials.session_key) == (None, None)
    assert not Guard().active
    assert Guard(secret=b"s").active
    assert Guard(mutual_tls=True).active
    assert HOLD_INTERVALS == 3


# --- daffi._auth: HeldNames ------------------------------------------------------------------


def resume(key: bytes, name: str = "server") -> bytes:
    return proof(key, b"resume", N1, N2, name)


def test_a_name_not_held_is_free() -> None:
    held = HeldNames(hold=10.0)
    assert held.refusal("server", None, N1, N2, now=0.0) is None
    held.hold_for("server", KEY, now=0.0)
    assert held.refusal("client", None, N1, N2, now=1.0) is None


def test_a_held_name_is_refused_without_the_sessions_resume_proof() -> None:
    held = HeldNames(hold=10.0)
    held.hold_for("server", KEY, now=100.0)
    for given in (
        None,
        b"",
        resume(b"another session's key"),
        resume(KEY, "other"),
        proof(KEY, b"node", N1, N2, "server"),
        proof(KEY, b"resume", N2, N1, "server"),
    ):
        why = held.refusal("server", given, N1, N2, now=102.5)
        assert why == (
            "process name 'server' belongs to a session that lost its link 2.5 s ago and may "
            "come back; only that session can reclaim it until it is released in 7.5 s"
        )


def test_a_held_name_goes_to_the_session_that_proves_its_key() -> None:
    held = HeldNames(hold=10.0)
    held.hold_for("server", KEY, now=0.0)
    assert held.refusal("server", resume(KEY), N1, N2, now=5.0) is None
    # A proof for other nonces (a recorded one) is worth nothing.
    assert held.refusal("server", resume(KEY), N1, new_nonce(), now=5.0) is not None


def test_a_held_name_expires_after_the_hold() -> None:
    held = HeldNames(hold=10.0)
    held.hold_for("server", KEY, now=0.0)
    assert held.refusal("server", None, N1, N2, now=9.99) is not None
    assert held.refusal("server", None, N1, N2, now=10.0) is None
    # Expired for good: earlier times do not bring it back.
    assert held.refusal("server", None, N1, N2, now=5.0) is None


def test_a_released_name_is_free_at_once() -> None:
    held = HeldNames(hold=10.0)
    held.hold_for("server", KEY, now=0.0)
    held.hold_for("client", KEY, now=0.0)
    held.release("server")
    held.release("never-held")
    assert held.refusal("server", None, N1, N2, now=1.0) is None
    assert held.refusal("client", None, N1, N2, now=1.0) is not None


def test_holding_again_restarts_the_hold_with_the_new_key() -> None:
    held = HeldNames(hold=10.0)
    held.hold_for("server", KEY, now=0.0)
    new_key = b"n" * 16
    held.hold_for("server", new_key, now=8.0)
    assert held.refusal("server", resume(KEY), N1, N2, now=12.0) is not None
    assert held.refusal("server", resume(new_key), N1, N2, now=12.0) is None
    assert held.refusal("server", None, N1, N2, now=17.9) is not None
    assert held.refusal("server", None, N1, N2, now=18.0) is None


# --- ssl_ca is the only trust: never the system's store as well ---------------------------


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> str | None:
    """Run a TLS handshake between two contexts in memory; None if it succeeded, else the
    error of the side that failed."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_side=False, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, obj, out, peer_in in (("c", c, c_out, s_in), ("s", s, s_out, c_in)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as exc:
                    return f"{name}: {exc.reason}"
            if out.pending:
                peer_in.write(out.read())
        if all(done.values()):
            # TLS 1.3: the server checks the client's certificate once it reads it.
            try:
                s.read(1)
            except ssl.SSLWantReadError:
                return None
            except ssl.SSLError as exc:
                return f"s: {exc.reason}"
    return "no end"


@pytest.fixture
def other_pki_as_system_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """Another CA, made the system's CA store of this process (``SSL_CERT_FILE``)."""
    other = trustme.CA()
    path = tmp_path / "system-store.pem"
    other.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return other


def test_a_node_with_ssl_ca_does_not_trust_the_system_store(
    pki: Pki, other_pki_as_system_store: trustme.CA, tmp_path: Path
) -> None:
    """A controller whose certificate a CA of the system's store signed is refused by a
    node given ssl_ca (and accepted by a node trusting the system's store)."""
    impostor = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other_pki_as_system_store.issue_cert("localhost").configure_cert(impostor)
    pinned = check(ssl_ca=pki.ca).tls
    system = check(address="tls://localhost:7777").tls
    assert pinned is not None
    assert pinned.client is not None
    assert system is not None
    assert system.client is not None
    assert _handshake(system.client, impostor, "localhost") is None
    why = _handshake(pinned.client, impostor, "localhost")
    assert why is not None
    assert why.startswith("c: CERTIFICATE_VERIFY_FAILED")


def test_a_mutual_tls_controller_does_not_trust_the_system_store(
    pki: Pki, other_pki_as_system_store: trustme.CA, tmp_path: Path
) -> None:
    """A client certificate from a CA of the system's store is refused by a controller
    whose ssl_ca is another CA; one from its ssl_ca is accepted."""
    tls = check(ssl_certificate=pki.certificate, ssl_key=pki.key, ssl_ca=pki.ca, **CONTROLLER).tls
    assert tls is not None
    assert tls.server is not None
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cafile=pki.ca)
    other_pki_as_system_store.issue_cert("intruder").configure_cert(client)
    why = _handshake(client, tls.server, "localhost")
    assert why is not None
    assert why.startswith("s: ")
    ours = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ours.load_verify_locations(cafile=pki.ca)
    ours.load_cert_chain(pki.certificate, pki.key)
    assert _handshake(ours, tls.server, "localhost") is None
