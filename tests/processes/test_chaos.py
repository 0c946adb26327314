"""Real-process chaos tests (issue 11): a controller survives hostile peers and faults
while a legitimate client loses no call.

One controller, server and legitimate client per backend (processes, see
``_chaos_network.py``), shared by the attacks of that backend (``_chaos_attacks.py``) in the
order below. After each attack: the controller process still runs, a fresh node's ``echo``
round trip through it succeeds, and the legitimate client's calls made during the attack all
succeeded (and there were some). For
the mass kill and the abandoned calls only the legitimate client's calls count: the
attackers' own calls are meant to fail. No timing and no memory assertions: the controller's
RSS is reported by ``benchmarks/attacks.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._chaos_attacks import IDLE_NOFILE, KILL_NODES, KILL_ROUNDS, run_attack
from ._chaos_network import BACKENDS, AttackRecord, Chaos

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module", params=BACKENDS)
def chaos(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chaos]:
    """The network under attack on one backend, shared by this module's tests."""
    workdir = tmp_path_factory.mktemp(f"chaos-{request.param}")
    with Chaos(str(request.param), workdir=workdir, settle=0.2) as net:
        yield net


def survived(net: Chaos, attack: str) -> AttackRecord:
    """Run ``attack`` and check what every attack must leave intact."""
    record = run_attack(net, attack)
    context = f"{attack} on {net.backend}: {record}\n{net.describe()}"
    assert record.harness_error is None, context
    assert record.controller_running, context
    assert record.routing_problem is None, context
    assert record.legit_failed == 0, context
    assert record.legit_ok > 0, context  # the client did call while the attack ran
    return record


def test_deeply_nested_frames_close_only_their_connections(chaos: Chaos) -> None:
    record = survived(chaos, "deep_nesting")
    details = record.details
    assert details["before handshake"] == details["after handshake"] == details["frames"] // 2
    assert details["logged"] == details["frames"]  # one protocol error each


def test_fifty_nodes_killed_at_once_five_times(chaos: Chaos) -> None:
    record = survived(chaos, "mass_kill")
    # Every killed node's loss reached the server (its calls in flight were theirs).
    assert record.details["seen gone"] == KILL_ROUNDS * KILL_NODES


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_idle_flood_past_the_descriptor_limit_backs_off(backend: str, tmp_path: Path) -> None:
    """A network of its own per limit: the controller's RLIMIT_NOFILE is lowered (256, then
    257: with one more, another call is the first to run out), then 320 idle connections.

    This found that a failed accept() reported as anyio's BrokenResourceError (raised from
    the EMFILE) was taken for a closed listener: the controller stopped accepting for good."""
    for nofile in IDLE_NOFILE:
        with Chaos(backend, workdir=tmp_path / str(nofile), nofile=nofile, settle=0.2) as net:
            record = survived(net, "idle_flood")
            details = record.details
            assert details["connected"] == details["connections"]
            # The attack reached its target: accept ran out of descriptors (and said so).
            assert details["EMFILE logged"], net.describe()


def test_stream_credit_abuse_and_injection_close_the_abuser(chaos: Chaos) -> None:
    record = survived(chaos, "stream_abuse")
    assert record.details["over-grant closed"]
    assert record.details["no-credit closed"]
    assert record.details["spray closed"]


def test_huge_registrations_are_refused_and_the_connection_kept(chaos: Chaos) -> None:
    record = survived(chaos, "registration_flood")
    details = record.details
    assert details["rejected"] == details["frames"]
    assert "it offers 500000 callbacks, over the limit of 10000" in details["reason"]
    assert details["connection kept"]


def test_frames_that_never_complete_are_closed(chaos: Chaos) -> None:
    record = survived(chaos, "partial_frames")
    details = record.details
    assert details["closed"] == details["connections"]
    # Closed by the frame timeout (not for the size announced): the warning names each.
    assert details["frame_timeout logged"] == details["connections"]


def test_abandoned_def_calls_do_not_stop_the_client(chaos: Chaos) -> None:
    record = survived(chaos, "abandoned_calls")
    details = record.details
    # The attacker's own calls fail: the first 40 time out holding every worker, the rest
    # are refused at once.
    assert details["held workers"] == {"TimeoutError": 40}
    assert details["refused"] == {"GlobalContextError": details["calls"] - 40}


def test_period_below_the_minimum_is_refused(chaos: Chaos) -> None:
    record = survived(chaos, "tiny_period")
    tries = record.details["tries"]
    assert record.details["below 1 ms"] == {"InitializationError": tries}
    assert record.details["below minimum"] == {"ArgumentsError": tries}


def test_the_client_lost_no_call_from_start_to_end(chaos: Chaos) -> None:
    """Between the attacks too. Stops the client (the last test of each backend): its calls
    still in flight end (at most its 5 s timeout) and count before it reports."""
    counts = chaos.stop_client()
    assert counts.failed == 0, f"{counts}\n{chaos.describe()}"
    assert counts.ok > 0
    assert chaos.controller is not None
    assert chaos.controller.running
