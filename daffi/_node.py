"""One node: the object that owns its pieces and runs them.

A node is made of:

- its :class:`~daffi._session.Session`: the link to the controller (connect, handshake,
  receive loop, heartbeat, reconnect, goodbye);
- its :class:`~daffi._mirror.DirectoryMirror`: who offers what, argument checks;
- the caller's side: the :class:`~daffi._calls.CallTable` of calls waiting for a reply,
  filled by the :class:`~daffi._caller.Caller` (on daffi's loop) and the
  :class:`~daffi._thread_calls.ThreadCaller` (from other threads and loops);
- the callee's side: the :class:`~daffi._dispatch.Dispatcher`, which runs the calls that
  arrive and hosts the scheduler.

Each piece gets from the others only what a small protocol of its own names. The node's
methods that ``Global`` calls are the pieces' own (bound methods, so a call costs no extra
frame).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from daffi._caller import Caller
from daffi._calls import CallTable
from daffi._codec import default_codec
from daffi._connection import DEFAULT_MAX_FRAME_SIZE
from daffi._dispatch import Dispatcher
from daffi._greeting import Introduction
from daffi._link import Link
from daffi._mirror import DirectoryMirror
from daffi._pickling import OptIns, Pickling
from daffi._protocol import CallbackInfo
from daffi._session import Connector, NodeEventHook, Session
from daffi._thread_calls import ThreadCaller
from daffi.exceptions import DaffiError
from daffi.execution_modifiers import MIN_PERIOD_INTERVAL
from daffi.metrics import MetricsHook
from daffi.registry._store import CallbackRegistry

if TYPE_CHECKING:
    from daffi._channel import ChannelPool

__all__ = ["Node"]

#: the waits log where Global's methods log
logger = logging.getLogger("daffi.global")


class Node:
    """A daffi node: offers the callbacks of ``registry`` and calls other nodes' callbacks.

    Args:
        name: this process's unique name.
        registry: the callbacks to offer (changes are advertised via :meth:`advertise`).
        connect: opens the link to the controller (called again on every reconnect).
        controller_label: how log lines and errors name the controller's address.
        on_node_event: awaited as ``hook(node_name, joined)`` for every node that joins or
            leaves, this one included; must not block (spawn work elsewhere).
        workers: how many sync callbacks may run at once in worker threads.
        max_concurrent_calls: incoming calls running at once beyond which new ones are
            refused with an error (a flood from a peer cannot exhaust this process).
        min_period_interval: the shortest schedule interval this node runs (seconds).
        introduction: how it introduces itself on every connection: what it may offer
            (checked before it is sent), how it proves who it is, the handshake's timeout
            (default: by name, the default limits, no credentials, 10 s).
        opt_ins: what it receives beyond msgpack (pickled payloads, transferred functions;
            default: nothing; see :mod:`daffi._pickling`).
        state_dir: where it keeps its durable schedules (None: it keeps none).
    """

    def __init__(
        self,
        name: str,
        registry: CallbackRegistry,
        connect: Connector,
        *,
        controller_label: str = "controller",
        on_node_event: NodeEventHook | None = None,
        workers: int = 40,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        heartbeat_interval: float = 5.0,
        max_backoff: float = 2.0,
        max_concurrent_calls: int = 10_000,
        min_period_interval: float = MIN_PERIOD_INTERVAL,
        open_channel: Callable[[float], socket.socket | None] | None = None,
        introduction: Introduction | None = None,
        opt_ins: OptIns | None = None,
        state_dir: str | None = None,
        metrics: MetricsHook | None = None,
    ) -> None:
        opt_ins = opt_ins if opt_ins is not None else OptIns()
        #: how this node treats pickled payloads (shared by its callers and its dispatcher)
        self.pickling = Pickling(name, opt_ins.allow_pickle)
        self.name = name
        self.registry = registry
        self.codec = default_codec
        self.directory = DirectoryMirror(
            name, registry, self.codec, max_frame_size, pickling=self.pickling
        )
        self.table = CallTable()
        #: runs the calls other nodes send here (and hosts the scheduler)
        self.dispatch = Dispatcher(
            self,
            workers=workers,
            max_concurrent_calls=max_concurrent_calls,
            min_period_interval=min_period_interval,
            allow_transfer=opt_ins.allow_transfer,
            state_dir=state_dir,
            metrics=metrics,
        )
        self.session = Session(
            name,
            registry,
            connect,
            directory=self.directory,
            table=self.table,
            callee=self.dispatch,
            controller_label=controller_label,
            on_node_event=on_node_event,
            workers=workers,
            max_frame_size=max_frame_size,
            heartbeat_interval=heartbeat_interval,
            max_backoff=max_backoff,
            open_channel=open_channel,
            introduction=introduction,
        )
        self.caller = Caller(name, self.table, self.directory, self.session, self.codec)
        self.thread_calls = ThreadCaller(name, self.table, self.directory, self.session, self.codec)

        # The entry points Global (and the dispatcher) use, served by the pieces.
        # the session
        self.wait_connected = self.session.wait_connected
        self.goodbye = self.session.goodbye
        self.advertise = self.session.advertise
        self.send = self.session.send
        # the directory mirror
        self.wait_until = self.directory.wait_until
        self.offers = self.directory.offers
        self.broadcast_targets = self.directory.broadcast_targets
        self.prepare = self.directory.prepare
        self.prepare_info = self.directory.prepare_info
        self.check_size = self.directory.check_size
        # calls from daffi's loop
        self.roundtrip = self.caller.roundtrip
        self.open_download = self.caller.open_download
        self.open_uploads = self.caller.open_uploads
        self.send_nowait = self.caller.send_nowait
        self.broadcast = self.caller.broadcast
        # calls from other threads and loops
        self.call_from_thread = self.thread_calls.call_from_thread
        self.broadcast_from_thread = self.thread_calls.broadcast_from_thread
        self.call_from_other_loop = self.thread_calls.call_from_other_loop
        self.call_in_background = self.thread_calls.call_in_background

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect (and reconnect) to the controller until cancelled.

        Hosts the dispatcher (its executor, and the scheduler) too, above the session:
        schedules live as long as the node, across reconnections.
        """
        async with anyio.create_task_group() as tg:
            await tg.start(self.dispatch.run)
            task_status.started()
            try:
                await self.session.supervise()
            finally:
                tg.cancel_scope.cancel()

    # ------------------------------------------------------------------ state of the pieces

    @property
    def conn(self) -> Link | None:
        """The link to the controller (None while it is down)."""
        return self.session.conn

    @property
    def channels(self) -> ChannelPool | None:
        """The session's call channels (None: sync callers go through the loop)."""
        return self.session.channels

    @property
    def is_connected(self) -> bool:
        return self.session.conn is not None

    @property
    def peers(self) -> dict[str, dict[str, CallbackInfo]]:
        """The other nodes and what they offer (the directory mirror's)."""
        return self.directory.peers

    async def wait_process(self, process_name: str, timeout: float | None) -> None:
        """Wait until ``process_name`` is connected (this node counts once connected)."""
        logger.debug("Waiting node: %r", process_name)

        def present() -> bool:
            return process_name in self.peers or (process_name == self.name and self.is_connected)

        await self.directory.wait_for(present, timeout, f"process {process_name!r} to connect")
        logger.debug("Node found: %r", process_name)

    async def wait_function(self, func_name: str, timeout: float | None) -> None:
        """Wait until a process offers callback ``func_name``."""
        logger.debug("Waiting remote callback: %r", func_name)
        offered = f"a process offering {func_name!r}"
        await self.directory.wait_for(lambda: self.offers(func_name), timeout, offered)
        logger.debug("Function found: %r", func_name)

    @property
    def fatal_error(self) -> DaffiError | None:
        """Why this node will never connect (the controller refused it), if it will not."""
        return self.directory.fatal_error
