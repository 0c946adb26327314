"""The controller's accept loop and its reaper of stalled connections.

The accept loop: a cap on open connections, and back-off when the process runs out of file
descriptors, instead of a crash.

As servers in the field do (nginx's ``worker_connections``, Go's ``http.Server`` backing off
on ``EMFILE``): at the cap the loop stops accepting until a connection closes (further
clients wait in the listen backlog); when ``accept`` fails for lack of descriptors or
memory, it logs once per burst and retries after a pause that doubles from 5 ms to 1 s.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import anyio
import anyio.abc

from daffi._link import Link

__all__ = [
    "DEFAULT_FRAME_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "ConnectionGate",
    "reap_stalled_peers",
    "serve_listener",
]

logger = logging.getLogger("daffi.controller")

#: connections a controller keeps open at once by default (``Global(max_connections=...)``)
DEFAULT_MAX_CONNECTIONS = 10_000

#: seconds a frame may take from its first byte to its last (``Global(frame_timeout=...)``):
#: 64 MiB (the default ``max_frame_size``) at about 1 MiB/s
DEFAULT_FRAME_TIMEOUT = 60.0

#: ``accept`` errors that say the process (or system) is short of a resource for now
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
#: ``accept`` errors about the one connection being accepted (it went away meanwhile)
_ONE_CONNECTION = {errno.ECONNABORTED, errno.ECONNRESET, errno.EPROTO, errno.EPERM}

_FIRST_PAUSE = 0.005
_LONGEST_PAUSE = 1.0


class ConnectionGate:
    """Counts a controller's open connections against ``limit`` (the loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._freed = anyio.Event()
        self._warned = False

    async def wait_for_room(self) -> None:
        while self.open >= self.limit:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "%d connections are open (max_connections): not accepting more until "
                    "one closes",
                    self.open,
                )
            await self._freed.wait()
        self._warned = False

    def opened(self) -> None:
        self.open += 1

    def closed(self) -> None:
        self.open -= 1
        freed, self._freed = self._freed, anyio.Event()
        freed.set()


async def serve_listener(
    listener: anyio.abc.Listener[Any],
    handler: Callable[[Any], Awaitable[None]],
    task_group: anyio.abc.TaskGroup,
    gate: ConnectionGate,
) -> None:
    """Accept connections on ``listener`` and run ``handler(stream)`` for each in
    ``task_group``, within ``gate``, until the listener closes.

    A listener without ``accept`` (a plugin transport's) runs its own ``serve`` loop: the
    cap and the back-off are then the transport's business.
    """

    async def handle(stream: Any) -> None:
        # Counted as open from its accept (below) to its end.
        try:
            await handler(stream)
        finally:
            gate.closed()

    async def handle_served(stream: Any) -> None:
        gate.opened()
        await handle(stream)

    accept = getattr(listener, "accept", None)
    if not callable(accept):
        await listener.serve(handle_served, task_group)
        return
    pause = _FIRST_PAUSE
    while True:
        await gate.wait_for_room()
        try:
            stream = await accept()
        except anyio.ClosedResourceError:
            return
        except (anyio.BrokenResourceError, OSError) as exc:
            # anyio reports a failed accept() as BrokenResourceError raised from the OSError
            # (on trio, and for Unix sockets on asyncio); a listener that is gone as well.
            error = exc if isinstance(exc, OSError) else exc.__cause__
            if not isinstance(error, OSError):
                return
            if error.errno in _ONE_CONNECTION:
                continue
            if error.errno not in _EXHAUSTED:
                if error is exc:
                    raise
                return
            if pause == _FIRST_PAUSE:
                logger.error(
                    "cannot accept connections: %s (%d open); retrying with back-off",
                    error.strerror or error,
                    gate.open,
                )
            await anyio.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)
            continue
        pause = _FIRST_PAUSE
        gate.opened()
        task_group.start_soon(handle, stream)


class _Peer(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def conn(self) -> Link: ...


async def reap_stalled_peers(
    peers: Callable[[], Iterable[_Peer]], heartbeat_interval: float, frame_timeout: float
) -> None:
    """Close the connections of nodes silent for 3 heartbeat intervals, and of nodes whose
    frame has not completed within ``frame_timeout`` of its first byte (a peer trickling
    bytes keeps its connection alive, but not a frame open for ever)."""
    limit = 3 * heartbeat_interval
    period = min(heartbeat_interval, frame_timeout / 2)
    while True:
        await anyio.sleep(period)
        now = time.monotonic()
        for peer in list(peers()):
            conn = peer.conn
            partial_since = conn.partial_since
            if partial_since is not None and now - partial_since > frame_timeout:
                logger.warning(
                    "node %r has not completed a frame within %s s of its first byte "
                    "(frame_timeout); closing its connection",
                    peer.name,
                    frame_timeout,
                )
                await conn.aclose()
            elif now - conn.last_received > limit:
                logger.warning(
                    "node %r sent nothing for %.1f s; closing its connection",
                    peer.name,
                    now - conn.last_received,
                )
                await conn.aclose()
