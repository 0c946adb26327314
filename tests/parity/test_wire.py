"""The wires carry the cells the way the matrix means: over each wire, the socket fast paths
are taken (so the other modules test them, not a fallback through the event loop), and on
the ``tls`` wire every remote connection is TLS and every join authenticated.

One sync call of a ``def`` callback per topology and backend, then checks of private state
(read on purpose; see ``_net.py`` for the paths of each topology):

- every node connection to a remote controller: sealed by daffi's TLS (``Connection._cipher``)
  exactly on the ``tls`` wire; written to directly from threads (``SocketAccess.can_write``);
  on asyncio, read by the direct reader (``Connection._reader``);
- the controller's peers that joined over the wire: an authenticated session
  (``Peer.session_key``) exactly on the ``tls`` wire (auth token and mutual TLS);
- the sync caller of a remote controller: its call channel pool is on and holds the channel
  the call used (``ChannelPool._all``);
- ``ctrl-in-callee``: that channel is served by a ``daffi-channel`` thread;
- ``ctrl-in-caller`` / ``ctrl-apart``: the callee's work channel is attached (``network``
  asserts it before it yields).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from daffi import FG, Global

from ._callbacks import Probe, call, callee_callbacks
from ._net import TOPOLOGIES, Wire, network

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def _remote_connection(g: Global) -> Any:
    """The node connection of ``g`` to its remote controller (private: ``Session.conn``)."""
    node = g._runtime.node
    assert node is not None
    conn = node.session.conn
    assert conn is not None, f"{g.process_name!r} is not connected"
    return conn


def _check_connection(name: str, conn: Any, wire: Wire, backend: str) -> None:
    assert (conn._cipher is not None) == (wire.name == "tls"), (
        f"{name}'s connection on the {wire.name} wire: cipher={conn._cipher!r}"
    )
    assert conn._direct.can_write, f"{name}'s connection is not written to directly"
    if backend == "asyncio":
        assert conn._reader is not None, f"{name}'s connection is not read by the direct reader"


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_wire_takes_the_fast_paths(wire: Wire, anyio_backend: str, topology: str) -> None:
    callbacks = callee_callbacks("def", Probe())
    async with network(wire, topology, anyio_backend, "sync", callbacks) as net:
        answer = await call(net, "echo", "over-the-wire", modifier=FG(timeout=2), bound=5)
        assert (answer.error, answer.value) == (None, "over-the-wire")

        remote = {
            "ctrl-in-callee": {"caller": net.caller},
            "ctrl-in-caller": {"callee": net.callee},
            "ctrl-apart": {"caller": net.caller, "callee": net.callee},
        }[topology]
        peers = net.controller_core().peers
        for name, g in remote.items():
            _check_connection(name, _remote_connection(g), wire, anyio_backend)
            assert (peers[name].session_key is not None) == (wire.name == "tls"), (
                f"{name} joined the controller on the {wire.name} wire with "
                f"session_key={peers[name].session_key!r}"
            )

        if "caller" in remote:
            assert net.caller._runtime.node is not None
            pool = net.caller._runtime.node.channels
            assert pool is not None, "the sync caller has no call channel pool"
            assert not pool.disabled, "the sync caller's call channels are disabled"
            assert pool._all, "the sync call did not go through a call channel"
        if topology == "ctrl-in-callee":
            served = [t for t in threading.enumerate() if t.name.startswith("daffi-channel")]
            assert served, "the caller's call channel is not served by a daffi-channel thread"
