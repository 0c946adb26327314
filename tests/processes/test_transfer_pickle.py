"""Code transfer and the pickle codec between processes, over TCP on loopback.

A server (controller and node, ``pickle_server.py``) and a client (``pickle_client.py``),
each started with or without ``allow_pickle`` and ``allow_transfer``: ``transfer_and_call``
runs only on a server that allows it (and a refused payload is never unpickled: its
arguments would create a directory), and values msgpack cannot carry travel pickled only
when both processes allow pickle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Launcher, make_endpoint, parse_results

pytestmark = [pytest.mark.processes, pytest.mark.timeout(90)]


def run(
    launch: Launcher, tmp_path: Path, server_switches: str, client_switches: str
) -> tuple[dict[str, str], int, Path]:
    """Start the server and the client with these switches; the client's results, the
    server's PID and the client's tripwire directory."""
    endpoint = make_endpoint("tcp")
    server = launch(
        "pickle_server.py", *endpoint.argv, "server", server_switches, name="server", stdin=True
    )
    pid = int(server.wait_for_line(r"^READY (\d+)", timeout=20).group(1))
    tripwire = tmp_path / "tripwire"
    client = launch(
        "pickle_client.py", *endpoint.argv, "server", client_switches, str(tripwire), name="client"
    )
    client.wait_for_line(r"^DONE$", timeout=40)
    assert client.wait_exit(10) == 0, client.describe()
    server.send_line()
    server.wait_for_line(r"^STOPPED$", timeout=10)
    return parse_results(client), pid, tripwire


def test_transfer_is_refused_by_default_and_nothing_is_unpickled(
    launch: Launcher, tmp_path: Path
) -> None:
    results, _, tripwire = run(launch, tmp_path, "none", "none")

    refusal = "GlobalContextError: process 'server' does not run transferred functions"
    for label in ("transfer", "transfer_async", "transfer_lambda", "tripwire"):
        assert results[label].startswith(refusal), (label, results[label])
        assert "allow_transfer=True" in results[label]
    assert not tripwire.exists()


def test_transfer_runs_on_a_server_that_allows_it(launch: Launcher, tmp_path: Path) -> None:
    results, server_pid, tripwire = run(launch, tmp_path, "transfer", "none")

    assert results["transfer"] == f"ok {server_pid}"  # it ran in the server's process
    assert results["transfer_async"] == f"ok {server_pid}"
    assert results["transfer_lambda"] == "ok 42"
    assert results["tripwire"] == "ok 'ran'"
    assert tripwire.is_dir()  # the server unpickled the arguments: the proof is live
    # transfer does not imply pickle: values msgpack cannot carry still do not travel
    assert results["unwrap"].startswith("PayloadEncodeError: cannot send argument 0 of type Box")


#: what the caller of ``wrap`` gets when the server cannot send its result back
WRAP_REFUSED = (
    "RemoteTypeError: TypeError: the result of 'wrap' cannot be sent back to the caller: "
    "cannot send value of type Box"
)


@pytest.mark.parametrize(
    ("server_switches", "client_switches", "wrap", "unwrap"),
    [
        ("pickle", "pickle", "ok Box(3)", "ok 5"),
        (
            "pickle",
            "none",
            # the server may pickle its result, but the client did not say it accepts it
            WRAP_REFUSED,
            # the client may not pickle: nothing is sent
            "PayloadEncodeError: cannot send argument 0 of type Box",
        ),
        (
            "none",
            "pickle",
            WRAP_REFUSED,
            # the client pickled it; the server refused it unread
            "GlobalContextError: process 'server' refused the pickled arguments of 'unwrap'",
        ),
        (
            "none",
            "none",
            WRAP_REFUSED,
            "PayloadEncodeError: cannot send argument 0 of type Box",
        ),
    ],
    ids=["both", "server-only", "client-only", "neither"],
)
def test_pickle_needs_both_processes(
    launch: Launcher,
    tmp_path: Path,
    server_switches: str,
    client_switches: str,
    wrap: str,
    unwrap: str,
) -> None:
    results, _, _ = run(launch, tmp_path, server_switches, client_switches)

    assert results["wrap"].startswith(wrap), results["wrap"]
    assert results["unwrap"].startswith(unwrap), results["unwrap"]
    if server_switches == "pickle" and client_switches == "none":
        assert "the caller 'client' does not (allow_pickle=False" in results["wrap"]
    if "pickle" not in (server_switches, client_switches):
        assert "Global(allow_pickle=True) on both ends" in results["unwrap"]
