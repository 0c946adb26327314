"""Chaos harness, the attacks: one function per attack, the :data:`ATTACKS` table, the runs.

Each attack function (:func:`deep_nesting` to :func:`tiny_period`, numbered as in the table)
takes the network under attack (``_chaos_network.Chaos``) and returns what it observed.
:func:`run_attack` runs one (:meth:`Chaos.run` measures it), :func:`run_attacks` several, on
networks of their own; :func:`format_table` renders their records as a Markdown table and
:func:`iter_records` as plain dicts. Used by ``test_chaos.py`` and ``benchmarks/attacks.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec

from daffi._frames import encode_frame
from daffi._protocol import (
    PROTOCOL_VERSION,
    Call,
    CallbackInfo,
    Credit,
    Hello,
    Ping,
    Pong,
    Register,
    Reject,
    Result,
    StreamItem,
    YieldItem,
    encode_callbacks,
)

from ._chaos_network import AttackRecord, Chaos, Proc
from ._chaos_probes import (
    ChaosError,
    RawPeer,
    args_payload,
    open_fds,
    socket_path,
    trickle_closed,
    value_payload,
)

__all__ = [
    "ATTACKS",
    "IDLE_NOFILE",
    "KILL_NODES",
    "KILL_ROUNDS",
    "Attack",
    "format_table",
    "iter_records",
    "run_attack",
    "run_attacks",
]

#: the controller's open-file limits (soft and hard, set in its process only) the idle flood
#: runs at, each on a network of its own: with one descriptor more, a different call (the
#: ``accept`` itself, or what follows it) is the first to run out
IDLE_NOFILE = (256, 257)

#: levels of the deeply nested frame: a 1 KiB frame, deeper than msgspec decodes
DEEP_LEVELS = 1_000
#: deeply nested frames sent before a handshake, and as many after one
DEEP_FRAMES = 10
#: what the controller logs (an error) for each
DEEP_LOG = "sent a frame nested deeper than daffi decodes"
#: rounds of the mass disconnect, and nodes SIGKILLed at once in each
KILL_ROUNDS = 5
KILL_NODES = 50
#: idle connections opened against the controller (its descriptors: IDLE_NOFILE)
IDLE_CONNECTIONS = 320
#: how long the flood waits for the controller to log that it ran out of descriptors, then
#: how long it is held
IDLE_LOG_WAIT = 1.0
IDLE_HOLD = 1.0
#: stream frames sent without credit
NO_CREDIT_ITEMS = 200
#: call ids around the legitimate client's latest that the injection sprays
SPRAY_SPAN = 1000
#: Register frames of the registration flood, and callbacks in each
REGISTER_FRAMES = 5
REGISTER_CALLBACKS = 500_000
#: connections trickling an announced frame, and the size they announce
TRICKLERS = 8
TRICKLE_SIZE = 60 * 1024 * 1024
#: what the controller logs (a warning) when it closes one
TRICKLE_LOG = "has not completed a frame within"
#: abandoned calls of the hanging def callback (the server has 40 workers), their timeout,
#: and how long each keeps its worker
ABANDONED_CALLS = 45
ABANDONED_TIMEOUT = 0.3
HANG_SECONDS = 4.0
#: schedules asked for below each minimum
PERIOD_TRIES = 50


def deep_frame(depth: int = DEEP_LEVELS) -> bytes:
    """A call whose payload is ``depth`` msgpack arrays, one inside the other (a frame of
    about ``depth`` bytes, as ``tests/integration/test_hostile_peers.py`` builds it)."""
    payload = msgspec.Raw(b"\x91" * depth + b"\x90")
    return bytes(encode_frame(Call(1, "echo", payload, "deep", None, None)))


def deep_nesting(net: Chaos) -> dict[str, Any]:
    """1. Frames nested 1,000 levels deep, before a handshake and after one: the controller
    must close each of those connections, and only those."""
    frame = deep_frame()
    logged = net.controller_log_count(DEEP_LOG)
    closed = {"before handshake": 0, "after handshake": 0}
    for when in closed:
        for i in range(DEEP_FRAMES):
            peer = RawPeer.connect(net.sock_dir)
            try:
                if when == "after handshake":
                    peer.send(Hello(PROTOCOL_VERSION, f"deep-{i}", ("msgpack",), ()))
                peer.send_bytes(frame)
                closed[when] += peer.closed_by_controller(5.0)
            finally:
                peer.close()
    return {
        "frame bytes": len(frame),
        "frames": 2 * DEEP_FRAMES,
        **closed,
        "logged": net.controller_log_count(DEEP_LOG) - logged,
    }


def mass_kill(net: Chaos) -> dict[str, Any]:
    """2. One process holding 50 nodes, each in a call to the server, SIGKILLed; 5 rounds.

    The server prints "NAP <name>" when a doomed node's call reaches it and "GONE <name>"
    when the controller announces the node's loss: each round waits for all 50 of both."""
    server = net._need(net.server)
    gone = []
    for round_ in range(KILL_ROUNDS):
        doomed = net.launch("doomed.py", str(round_), "--nodes", str(KILL_NODES))
        try:
            doomed.wait_for_line(r"^JOINED", timeout=30)
            prefix = f"doomed-{round_}-"
            naps = server.wait_for_count(f"NAP {prefix}", KILL_NODES, timeout=15)
            if naps < KILL_NODES:
                raise ChaosError(f"round {round_}: only {naps} calls reached the server")
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.popen.wait(5)
            gone.append(server.wait_for_count(f"GONE {prefix}", KILL_NODES, timeout=15))
        finally:
            doomed.stop()
    return {"rounds": KILL_ROUNDS, "nodes killed": KILL_ROUNDS * KILL_NODES, "seen gone": sum(gone)}


def idle_flood(net: Chaos) -> dict[str, Any]:
    """3. Hundreds of connections that send nothing, more than the controller has file
    descriptors: ``accept`` fails with EMFILE and the controller must back off, keep serving
    the connections it has, and accept again once descriptors are free."""
    logged_before = net.controller_log_count("cannot accept connections")
    sockets: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(IDLE_CONNECTIONS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            try:
                sock.connect(socket_path(net.sock_dir))
            except OSError:
                sock.close()
                refused += 1
            else:
                sockets.append(sock)
        deadline = time.monotonic() + IDLE_LOG_WAIT
        while (
            net.controller_log_count("cannot accept connections") == logged_before
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        time.sleep(IDLE_HOLD)  # the legitimate client keeps calling meanwhile
        fds = open_fds(net._need(net.controller).pid)
    finally:
        for sock in sockets:
            sock.close()
    return {
        "connections": IDLE_CONNECTIONS,
        "connected": len(sockets),
        "refused": refused,
        "controller fds at the limit": fds,
        "EMFILE logged": net.controller_log_count("cannot accept connections") > logged_before,
    }


def stream_abuse(net: Chaos) -> dict[str, Any]:
    """4. Stream credit abuse and injection: a caller of the generator that over-grants
    credit, a caller that streams 200 items without credit (both must be closed, not the
    server), and a node spraying ``Result`` and ``YieldItem`` frames at the legitimate
    client's call ids (dropped; the sprayer closed at 100 stray stream frames)."""
    details: dict[str, Any] = {}
    # Over-granting credit for the generator's values.
    peer = RawPeer.join(net.sock_dir, "greedy-credit")
    try:
        peer.send(Call(1, "count", args_payload(1000), "greedy-credit"))
        first = peer.receive_until(YieldItem)
        peer.send(Credit(first.id, "greedy-credit", 1000, True))
        details["over-grant closed"] = peer.closed_by_controller(5.0)
    finally:
        peer.close()
    # Streaming arguments beyond the credit window.
    peer = RawPeer.join(net.sock_dir, "no-credit")
    try:
        items = [StreamItem(2, "no-credit", args_payload(i)) for i in range(NO_CREDIT_ITEMS)]
        with contextlib.suppress(OSError):  # it may be closed while we write
            peer.send(Call(2, "collect", args_payload(), "no-credit", stream_in=True), *items)
        details["no-credit closed"] = peer.closed_by_controller(5.0)
    finally:
        peer.close()
    # Spraying the legitimate client's call ids: its latest is about the number of calls it
    # started, and one of its streams (``ticker``) is always open. Stray frames for a live
    # call are dropped and counted (closed at 100); those for no call are dropped.
    calls = net.client_counts().calls
    ids = range(max(calls - SPRAY_SPAN // 2, 1), calls + SPRAY_SPAN // 2)
    injected = value_payload("INJECTED")
    peer = RawPeer.join(net.sock_dir, "sprayer")
    sweeps = 0
    try:
        with contextlib.suppress(OSError):  # closed by the controller
            peer.send(*[Result(i, "legit", injected) for i in ids])
            sweep = b"".join(bytes(encode_frame(YieldItem(i, "legit", injected))) for i in ids)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                peer.send_bytes(sweep)
                sweeps += 1
                time.sleep(0.005)
        details["spray closed"] = peer.closed_by_controller(5.0)
        details["sprayed"] = f"{len(ids)} Result + {sweeps} x {len(ids)} YieldItem"
    finally:
        peer.close()
    return details


@cache
def _huge_registration() -> msgspec.Raw:
    return encode_callbacks(tuple(CallbackInfo(f"cb_{i:07d}") for i in range(REGISTER_CALLBACKS)))


def registration_flood(net: Chaos) -> dict[str, Any]:
    """5. Five Register frames of 500,000 callbacks (7 MiB each) from a node that joined:
    each must be refused (``Reject``) without being decoded; the connection stays."""
    huge = _huge_registration()
    peer = RawPeer.join(net.sock_dir, "registrar")
    reasons = []
    try:
        for _ in range(REGISTER_FRAMES):
            peer.send(Register(huge))
            reasons.append(peer.receive_until(Reject, 30.0).reason)
        peer.send(Ping())
        kept = isinstance(peer.receive_until(Pong, 10.0), Pong)
    finally:
        peer.close()
    return {
        "frames": REGISTER_FRAMES,
        "frame MiB": round(len(huge) / 2**20, 1),
        "rejected": len(reasons),
        # "controller 'c' refused the callbacks this process offers: it offers ..."
        "reason": reasons[0].rpartition("offers: ")[2] if reasons else None,
        "connection kept": kept,
    }


def partial_frames(net: Chaos) -> dict[str, Any]:
    """6. Eight nodes each announcing a 60 MiB frame and trickling it a byte at a time: the
    controller must close each once its ``frame_timeout`` has passed."""
    logged = net.controller_log_count(TRICKLE_LOG)
    peers = [RawPeer.join(net.sock_dir, f"trickle-{i}") for i in range(TRICKLERS)]
    started = time.monotonic()
    closed_after: dict[int, float] = {}
    try:
        for peer in peers:
            peer.send_bytes(TRICKLE_SIZE.to_bytes(4, "big") + b"\x00")
            peer.sock.setblocking(False)
        deadline = started + net.frame_timeout + 10
        while len(closed_after) < len(peers) and time.monotonic() < deadline:
            time.sleep(0.05)
            for index, peer in enumerate(peers):
                if index in closed_after:
                    continue
                if trickle_closed(peer.sock):
                    closed_after[index] = time.monotonic() - started
    finally:
        for peer in peers:
            peer.close()
    return {
        "connections": TRICKLERS,
        "announced MiB": TRICKLE_SIZE // 2**20,
        "closed": len(closed_after),
        "closed after s": round(max(closed_after.values()), 2) if closed_after else None,
        "frame_timeout logged": net.controller_log_count(TRICKLE_LOG) - logged,
    }


def _outcomes(proc: Proc, pattern: str) -> dict[str, Any]:
    match = proc.wait_for_line(pattern, timeout=30)
    return json.loads(match[1])


def abandoned_calls(net: Chaos) -> dict[str, Any]:
    """7. 45 calls of the server's hanging ``def`` callback, each given up after 0.3 s: the
    first 40 hold every worker; the next 5 are refused at once. The legitimate client's
    ``echo`` (async) must not notice."""
    abandoner = net.launch(
        "abandoner.py",
        "--calls",
        str(ABANDONED_CALLS),
        "--timeout",
        str(ABANDONED_TIMEOUT),
        "--hang",
        str(HANG_SECONDS),
    )
    try:
        held = _outcomes(abandoner, r"^RESULT held ok=\d+ errors=(\{.*\})")
        refused = _outcomes(abandoner, r"^RESULT refused ok=\d+ errors=(\{.*\})")
        abandoner.wait_for_line(r"^DONE", timeout=15)
    finally:
        abandoner.stop()
    return {"calls": ABANDONED_CALLS, "held workers": held, "refused": refused}


def tiny_period(net: Chaos) -> dict[str, Any]:
    """8. Schedules asked for below 1 ms (refused where they are built) and below the
    server's ``min_period_interval`` (refused by the server), 50 times each."""
    abuser = net.launch("period_abuser.py", "--tries", str(PERIOD_TRIES))
    try:
        below_floor = _outcomes(abuser, r"^RESULT below_floor (\{.*\})")
        below_minimum = _outcomes(abuser, r"^RESULT below_minimum (\{.*\})")
        abuser.wait_for_line(r"^DONE", timeout=15)
    finally:
        abuser.stop()
    return {"tries": PERIOD_TRIES, "below 1 ms": below_floor, "below minimum": below_minimum}


@dataclass(frozen=True)
class Attack:
    """One attack: its title in the table and the function that runs it."""

    title: str
    function: Callable[[Chaos], dict[str, Any]]
    #: the controller's RLIMIT_NOFILE values it runs at, each on a network of its own; empty:
    #: it runs on the shared network (no lowered limit)
    nofile: tuple[int, ...] = ()


#: attack key -> attack, in the order they run
ATTACKS: dict[str, Attack] = {
    "deep_nesting": Attack(
        "1. deep nesting (1 KiB, 1,000 levels; 10 before + 10 after handshake)", deep_nesting
    ),
    "mass_kill": Attack("2. 50 nodes SIGKILLed at once, 5 rounds", mass_kill),
    "idle_flood": Attack(f"3. {IDLE_CONNECTIONS} idle connections", idle_flood, IDLE_NOFILE),
    "stream_abuse": Attack("4. stream credit abuse + injection", stream_abuse),
    "registration_flood": Attack("5. 5 Register frames of 500,000 callbacks", registration_flood),
    "partial_frames": Attack("6. 8 connections trickling a 60 MiB frame", partial_frames),
    "abandoned_calls": Attack(
        "7. 45 abandoned calls of a hanging def (40 workers)", abandoned_calls
    ),
    "tiny_period": Attack("8. PERIOD below the minimum", tiny_period),
}


def run_attack(net: Chaos, attack: str) -> AttackRecord:
    """Run the attack named ``attack`` (a key of :data:`ATTACKS`) on ``net`` and measure it."""
    return net.run(attack, ATTACKS[attack].function)


def run_attacks(
    backend: str,
    attacks: list[str] | None = None,
    *,
    fresh: bool = False,
    settle: float = 2.0,
    progress: Callable[[str], None] | None = None,
) -> list[AttackRecord]:
    """Run ``attacks`` (default: all, in order) on one backend and return their records.

    ``fresh``: a new controller, server and client for each attack (else one set for all
    but those that need a network of their own: the idle flood, one per limit).
    """
    names = list(ATTACKS) if attacks is None else attacks
    shared = [name for name in names if not ATTACKS[name].nofile]
    groups: list[tuple[int | None, list[str]]] = [(None, [name]) for name in shared]
    if not fresh and shared:
        groups = [(None, shared)]
    groups += [(n, [name]) for name in names for n in ATTACKS[name].nofile]
    records: list[AttackRecord] = []
    for nofile, group in groups:
        with Chaos(backend, settle=settle, nofile=nofile) as net:
            for name in group:
                if progress is not None:
                    progress(f"{backend}: {name}" + (f" (nofile={nofile})" if nofile else ""))
                records.append(run_attack(net, name))
    order = list(ATTACKS)
    return sorted(records, key=lambda r: (order.index(r.attack), r.nofile or 0))


def _rss(record: AttackRecord) -> str:
    return f"{record.rss_before:.1f} / {record.rss_peak:.1f} / {record.rss_after:.1f}"


def format_table(records: list[AttackRecord]) -> str:
    """A Markdown table of ``records``: one row per attack and backend."""
    rows = [
        "| attack | backend | legit calls ok | failed | controller alive | "
        "RSS before / peak / after (MiB) | duration (s) | observed |",
        "|---|---|---:|---:|---|---|---:|---|",
    ]
    for record in records:
        failed = str(record.legit_failed)
        if record.legit_errors:
            failed += " (" + ", ".join(f"{k}: {v}" for k, v in record.legit_errors.items()) + ")"
        alive = "yes" if record.controller_alive else "**NO**"
        if record.routing_problem and record.controller_running:
            alive += f" (running, not routing: {record.routing_problem})"
        title = ATTACKS[record.attack].title
        if record.nofile is not None:
            title += f", controller nofile={record.nofile}"
        observed = "; ".join(f"{k}: {_brief(v)}" for k, v in record.details.items())
        if record.harness_error:
            observed = f"harness error: {record.harness_error.splitlines()[0]}; " + observed
        rows.append(
            f"| {title} | {record.backend} | {record.legit_ok} | {failed} | "
            f"{alive} | {_rss(record)} | {record.duration:.1f} | {observed} |"
        )
    return "\n".join(rows)


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def iter_records(records: list[AttackRecord]) -> Iterator[dict[str, Any]]:
    """``records`` as plain dicts (for JSON)."""
    for record in records:
        yield {**record.__dict__, "controller_alive": record.controller_alive}
