"""A node's link when its address is ``nats://``: the controller's part, done by the node
itself, over NATS subjects.

The node (session, caller, dispatcher, schedules) is the same as in controller mode: it
talks to a :class:`~daffi._link.Link`. :class:`NatsLink` is that link. What a controller
would do with the node's messages, it does on the node's side:

- **Joining.** The node's ``Hello`` is answered here: the link announces the node on the
  presence subject (``<ns>.presence``, a ``NodeUp``), every other node answers with its own
  ``NodeUp`` on the new node's subject, and after a short settling time the link gives the
  session a ``Welcome`` with the nodes heard of (or a ``Reject`` if a node of the same name
  answered: NATS does not echo a node's own messages back, so any ``NodeUp`` of its name is
  another process's).
- **Routing.** Every message for a node goes to that node's subject (``<ns>.node.<name>``).
  The target of a call is chosen by the same :class:`~daffi._router.Router` as in a
  controller (``receiver=``, else round-robin among the nodes offering the callback, the
  caller excluded), which also keeps the caller's calls in flight, so cancels and stream
  frames follow their call and a node that leaves fails the calls it was running.
- **Presence.** Each node repeats its ``NodeUp`` every heartbeat interval; a node silent
  for three intervals is taken as gone (as the controller does with a silent connection),
  and one that stops says so (``NodeDown``). Hooks and ``wait_process`` see these as in
  controller mode.
- **Heartbeats.** The session's ``Ping`` is answered once a round trip to the NATS server
  succeeded, so a node cut off from NATS sees its link die and reconnects.

A call to a node whose subject has no subscriber any more (it died since it was last heard
of) is answered at once by the NATS server (no responders); the link turns that into the
caller's ``RemoteStoppedUnexpectedly``.

Trust: any client allowed to publish on the namespace's subjects can send any daffi
message. In NATS mode, the NATS server's authentication and subject permissions are the
boundary (see docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from daffi._crossloop import LoopWaker, loop_waker
from daffi._frames import MalformedFrame, decode_frame, encode_frame
from daffi._link import DirectHandler
from daffi._nats_address import NatsServers, Subjects
from daffi._nats_client import NatsClient
from daffi._nats_presence import CONTROLLER_NAME, Member, Presence
from daffi._protocol import (
    Bye,
    Call,
    Cancel,
    Credit,
    Error,
    Hello,
    Message,
    NodeDown,
    NodeUp,
    Ping,
    Pong,
    Register,
    Reject,
    Result,
    StreamEnd,
    StreamItem,
    Welcome,
    YieldItem,
    decode_callbacks,
    error_reply,
)
from daffi._router import InFlight, Router, valid_timeout

if TYPE_CHECKING:
    import ssl

    from daffi._cipher import TlsSocket

__all__ = ["NatsLink"]

logger = logging.getLogger("daffi.nats")


class NatsLink:
    """The link of node ``name`` over the NATS servers of ``address`` (see the module
    docstring). Made by :meth:`open`."""

    in_process = False
    partial_since = None
    inline_slots_of_other = 0

    def __init__(
        self,
        address: NatsServers,
        name: str,
        *,
        heartbeat_interval: float,
        max_frame_size: int,
        max_calls_in_flight: int,
    ) -> None:
        self.address = address
        self.name = name
        self.peer = f"NATS at {address}"
        self.max_frame_size = max_frame_size
        self.last_received = time.monotonic()
        self.direct: DirectHandler | None = None
        self.inline = None
        self.inline_slots = 0
        self.heartbeat_interval = heartbeat_interval
        self.router: Router[Member] = Router(max_calls_in_flight)
        self.client: NatsClient | None = None
        self.subjects = Subjects(address.namespace)
        #: who is there: joining, announcements, liveness
        self.presence = Presence(self, self.router, name, heartbeat_interval)
        self._send, self._receive = anyio.create_memory_object_stream[tuple[Message, bytes]](
            math.inf
        )
        self._loop_thread = threading.get_ident()
        self._waker: LoopWaker = loop_waker()
        self._lock = threading.Lock()
        #: calls other nodes made that run here, by caller: cancelled if the caller leaves
        self._running_for: dict[str, set[int]] = {}
        self._closed = False
        self._waiting = False  # the session's task waits in receive()
        self._welcomed = False  # the session has its Welcome (see _give)
        self._early: list[tuple[Message, bytes]] = []

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open(
        cls,
        address: NatsServers,
        name: str,
        *,
        heartbeat_interval: float,
        max_frame_size: int,
        max_calls_in_flight: int,
        tls: ssl.SSLContext | None,
        connect_timeout: float,
    ) -> NatsLink:
        """Connect to NATS and subscribe to this node's subjects (the node joins when the
        session sends its ``Hello``).

        Raises:
            InitializationError: no NATS server could be reached.
            AuthenticationError: the server refused the credentials.
        """
        link = cls(
            address,
            name,
            heartbeat_interval=heartbeat_interval,
            max_frame_size=max_frame_size,
            max_calls_in_flight=max_calls_in_flight,
        )
        link.client = await NatsClient.connect(
            address,
            name=name,
            received=link._received,
            on_closed=link._nats_closed,
            tls=tls,
            connect_timeout=connect_timeout,
        )
        try:
            for subject in (
                link.subjects.node(name),
                link.subjects.presence,
                f"{link.subjects.returns(name)}.>",
            ):
                await link.client.subscribe(subject)
        except BaseException:
            await link.client.aclose()
            raise
        where = link.client.connected_url
        link.presence.me.address = f"{socket.gethostname()} pid {os.getpid()} via {where}"
        return link

    # ------------------------------------------------------------------ Link: receiving

    async def receive(self) -> tuple[Message, bytes | bytearray]:
        self._waiting = True
        try:
            msg, frame = await self._receive.receive()
        except (anyio.ClosedResourceError, anyio.EndOfStream):
            raise anyio.EndOfStream from None
        finally:
            self._waiting = False
        self.last_received = time.monotonic()
        return msg, frame

    def _give(self, msg: Message, frame: bytes | None = None) -> None:
        """Hand ``msg`` to the session (on daffi's loop, from any thread).

        While the session waits in :meth:`receive` with nothing queued (so everything before
        was handled), its direct handler may take ``msg`` at once, as it takes a stream
        connection's frames: replies, and calls of ``def`` callbacks (started in a worker
        thread), skip a wake-up of the session's task.
        """
        if threading.get_ident() != self._loop_thread:
            with contextlib.suppress(RuntimeError):
                self._waker.soon(lambda: self._give(msg, frame))
            return
        if frame is None:
            frame = bytes(encode_frame(msg))
        if not self._welcomed and not isinstance(msg, Welcome | Reject):
            # Others may call this node as soon as they hear its announcement: what comes
            # before its Welcome waits for it, as a controller sends nothing before.
            self._early.append((msg, frame))
            return
        direct = self.direct
        if (
            direct is not None
            and self._waiting
            and not self._send.statistics().current_buffer_used
            and direct(msg, frame)
        ):
            self.last_received = time.monotonic()
            return
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._send.send_nowait((msg, frame))
        # The session's task has a message to handle now: until it waits again, nothing may
        # overtake that one through the direct handler.
        self._waiting = False

    def _received(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        """A message from NATS (on daffi's loop)."""
        if subject.startswith(self.subjects.returns(self.name)):
            self._no_responders(subject, headers)
            return
        try:
            msg = decode_frame(data, f"a peer on {subject}")
        except MalformedFrame as exc:
            logger.warning("node %r: dropped a message on %s: %s", self.name, subject, exc)
            return
        self._accept(msg, data, from_presence=subject == self.subjects.presence)

    def _accept(self, msg: Message, data: bytes, *, from_presence: bool) -> None:
        """A message for this node (from NATS, or from itself), decoded."""
        if isinstance(msg, NodeUp):
            self.presence.node_up(msg, from_presence=from_presence)
        elif isinstance(msg, NodeDown):
            self.presence.node_down(msg.name, "left" if msg.clean else "disconnected")
        elif isinstance(msg, Result | Error):
            if msg.dst == self.name and self.router.forget((self.name, msg.id)) is not None:
                self._give(msg, data)
        elif isinstance(msg, Call):
            if msg.want_result:
                with self._lock:
                    self._running_for.setdefault(msg.src, set()).add(msg.id)
            self._give(msg, data)
        elif isinstance(msg, Cancel | StreamItem | StreamEnd | YieldItem | Credit):
            self._give(msg, data)
        else:
            logger.warning("node %r: dropped an unexpected %s", self.name, type(msg).__name__)

    # ------------------------------------------------------------------ presence host

    def give(self, msg: Message) -> None:
        self._give(msg)

    def publish_to(self, name: str | None, msg: Message) -> None:
        subject = self.subjects.presence if name is None else self.subjects.node(name)
        self._publish(subject, bytes(encode_frame(msg)))

    async def flush(self, timeout: float) -> bool:
        assert self.client is not None
        return await self.client.flush(timeout)

    def gone(self, name: str, how: str) -> None:
        """Node ``name`` left the directory: fail this node's calls it was running, and
        cancel the calls it made that run here (nobody waits for their results)."""
        for key, route in self.router.take_all(name):
            if key[0] == self.name and route.executor == name:
                text = f"process {name!r} {how} while running {route.callback!r}"
                self._give(error_reply(key[1], self.name, "RemoteStoppedUnexpectedly", text, name))
        with self._lock:
            ids = self._running_for.pop(name, set())
        for call_id in ids:
            self._give(Cancel(call_id, name))

    async def run_writer(self) -> None:
        """Repeat this node's presence and retire the nodes not heard of for three
        heartbeat intervals, until cancelled (a task of the session)."""
        while True:
            await anyio.sleep(self.heartbeat_interval)
            self.presence.tick()

    # ------------------------------------------------------------------ Link: sending

    @property
    def congested(self) -> bool:
        return False

    async def send(self, msg: Message) -> None:
        await self._route(msg, None)

    async def send_frame(self, frame: bytes | bytearray) -> None:
        await self._route(decode_frame(frame, "this node"), bytes(frame))

    def send_threadsafe(self, msg: Message) -> None:
        self._route_now(msg, None)

    def send_frame_threadsafe(self, frame: bytes | bytearray) -> None:
        self._route_now(decode_frame(frame, "this node"), bytes(frame))

    def send_frames_threadsafe(self, frames: list[bytes | bytearray]) -> None:
        for frame in frames:
            self.send_frame_threadsafe(frame)

    def offer_direct(self, msg: Message, frame: bytes | bytearray) -> bool:
        return False

    def run_inline(self, msg: Call) -> Result | Error | None:
        return None

    def detach_socket(self) -> tuple[socket.socket | TlsSocket, bytes] | None:
        return None

    async def _route(self, msg: Message, frame: bytes | None) -> None:
        """What a controller does with a message of its node (on daffi's loop)."""
        if isinstance(msg, Hello):
            answer = await self.presence.join(msg.callbacks, str(self.address))
            self._welcomed = isinstance(answer, Welcome)
            self._give(answer)
            early, self._early = self._early, []
            for queued, queued_frame in early:
                self._give(queued, queued_frame)
        elif isinstance(msg, Ping):
            assert self.client is not None
            if await self.client.flush(self.heartbeat_interval):
                self._give(Pong())
        elif isinstance(msg, Bye):
            await self.presence.leave()
            self._send.close()
        elif isinstance(msg, Register):
            self.presence.offer(decode_callbacks(msg.callbacks))
        else:
            self._route_now(msg, frame)

    def _route_now(self, msg: Message, frame: bytes | None) -> None:
        """Route a call, a reply, a cancel or a stream frame (any thread)."""
        if isinstance(msg, Call):
            self._route_call(msg, frame)
            return
        if isinstance(msg, Result | Error):
            with self._lock:
                running = self._running_for.get(msg.dst)
                if running is not None:
                    running.discard(msg.id)
            to = msg.dst
        elif isinstance(msg, Cancel):
            route = self.router.forget((msg.src, msg.id))
            if route is None:
                return
            to = route.executor
        elif isinstance(msg, StreamItem | StreamEnd) or (isinstance(msg, Credit) and msg.to_callee):
            caller = msg.src if isinstance(msg, StreamItem | StreamEnd) else msg.peer
            route = self.router.stream_route((caller, msg.id))
            if route is None:
                return
            to = route.executor
        elif isinstance(msg, YieldItem):
            to = msg.dst
        elif isinstance(msg, Credit):
            to = msg.peer
        else:
            logger.debug("node %r: nothing routes a %s over NATS", self.name, type(msg).__name__)
            return
        self._deliver(to, msg, frame)

    def _route_call(self, msg: Call, frame: bytes | None) -> None:
        if not valid_timeout(msg):
            self._fail(msg, "GlobalContextError", f"a call with timeout {msg.timeout!r}")
            return
        target = self.router.target(self.name, msg)
        if target is None:
            if msg.want_result:
                self._fail(msg, "UnableToFindCandidate", self.router.why_no_target(msg))
            else:
                logger.warning(
                    "dropped call %r from %r: %s",
                    msg.name,
                    msg.src,
                    self.router.why_no_target(msg),
                )
            return
        if msg.want_result and not self.router.record(
            (self.name, msg.id), InFlight(target.name, msg.name, None)
        ):
            self._fail(
                msg, "GlobalContextError", self.router.why_too_many(self.name, CONTROLLER_NAME)
            )
            return
        reply = f"{self.subjects.returns(self.name)}.{msg.id}" if msg.want_result else ""
        self._deliver(target.name, msg, frame, reply=reply)

    def _deliver(self, to: str, msg: Message, frame: bytes | None, *, reply: str = "") -> None:
        payload = frame if frame is not None else bytes(encode_frame(msg))
        if to == self.name:  # receiver= this node: no trip through NATS, nor a new decode
            self._accept(msg, payload, from_presence=False)
            return
        assert self.client is not None
        limit = self.client.max_payload
        if len(payload) > limit:
            self._too_large(msg, len(payload), limit)
            return
        self._publish(self.subjects.node(to), payload, reply)

    def _publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        assert self.client is not None
        self.client.publish(subject, payload, reply)

    def _too_large(self, msg: Message, size: int, limit: int) -> None:
        text = (
            f"{type(msg).__name__} of {size} bytes is larger than the NATS server takes "
            f"({limit} bytes, its max_payload)"
        )
        if isinstance(msg, Call):
            self.router.forget((self.name, msg.id))
            self._fail(msg, "PayloadEncodeError", f"the arguments of {msg.name!r}: {text}")
        elif isinstance(msg, Result):
            error = error_reply(
                msg.id, msg.dst, "RemoteCallError", f"the result: {text}", self.name
            )
            self._deliver(msg.dst, error, None)
        elif isinstance(msg, YieldItem):
            # A value of a generator running here: the caller's call fails, the generator
            # is stopped.
            error = error_reply(
                msg.id, msg.dst, "RemoteCallError", f"a yielded value: {text}", self.name
            )
            self._deliver(msg.dst, error, None)
            self._give(Cancel(msg.id, msg.dst))
        elif isinstance(msg, StreamItem):
            # An item this node streams into a call: the call fails here and is cancelled
            # where it runs.
            route = self.router.forget((self.name, msg.id))
            error = error_reply(
                msg.id, self.name, "PayloadEncodeError", f"a streamed item: {text}", ""
            )
            self._give(error)
            if route is not None:
                self._deliver(route.executor, Cancel(msg.id, self.name), None)
        else:
            logger.error("node %r: dropped a %s", self.name, text)

    def _fail(self, msg: Call, kind: str, text: str) -> None:
        if msg.want_result:
            self._give(error_reply(msg.id, msg.src, kind, text, CONTROLLER_NAME))

    def _no_responders(self, subject: str, headers: dict[str, str] | None) -> None:
        """The server says a call went to a subject nobody listens to: its node is gone."""
        status = (headers or {}).get("Status", "")
        if not status.startswith("503"):
            return
        with contextlib.suppress(ValueError):
            call_id = int(subject.rsplit(".", 1)[1])
            route = self.router.forget((self.name, call_id))
            if route is None:
                return
            text = f"process {route.executor!r} is not connected to NATS any more"
            self._give(
                error_reply(call_id, self.name, "RemoteStoppedUnexpectedly", text, route.executor)
            )
            self.presence.node_down(route.executor, "disconnected")

    # ------------------------------------------------------------------ closing

    def _nats_closed(self) -> None:
        logger.warning("node %r: the NATS connection closed", self.name)
        self._send.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._send.close()
        if self.client is not None:
            await self.client.aclose()
