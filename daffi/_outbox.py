"""The sending side of a connection: frames queued from any thread, coalesced, and written
by whoever may write first.

On daffi's loop the first sender becomes the writer and flushes everything queued meanwhile
in one write (on asyncio at the end of the loop turn); other threads write straight to the
socket when the connection's socket access allows it and nothing is queued, or hand their
frames to the writer task (:meth:`Outbox.run_writer`). A write is never interrupted half
way, and a queue over ``high_water`` bytes makes loop senders wait (backpressure). With TLS,
each frame is sealed when it is queued, under the lock that orders the queue, so records
leave in queue order whichever path writes them (see :mod:`daffi._cipher`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from daffi._backends import SocketAccess
from daffi._cipher import Cipher
from daffi._crossloop import loop_call_soon
from daffi._frames import encode_frame
from daffi._protocol import Message

__all__ = ["Outbox"]


class Outbox:
    """The frames a connection sends, and who writes them (see the module docstring).

    Args:
        stream: the connection's byte stream (the writer task's path).
        direct: what the connection may do with its socket beside the stream.
        high_water: queued bytes above which loop senders wait.
        cipher: the connection's TLS (None: plaintext).
        peer: names the peer for errors (it may change after the handshake).
        on_broken: closes the connection when the writer task finds the peer gone.
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        direct: SocketAccess,
        *,
        high_water: int,
        cipher: Cipher | None,
        peer: Callable[[], str],
        on_broken: Callable[[], Awaitable[None]],
    ) -> None:
        self.stream = stream
        self.high_water = high_water
        self._direct = direct
        self._cipher = cipher
        self._peer = peer
        self._on_broken = on_broken
        self._loop_thread = threading.get_ident()
        self._call_soon = loop_call_soon()
        self._call_soon_local = direct.end_of_turn
        # Guarded by _lock (taken briefly, from any thread):
        self._lock = threading.Lock()
        self._frames: list[bytes | bytearray] = []
        self._queued = 0
        self._writing = False  # someone on the loop is flushing _frames
        self._kick_pending = False  # a wake-up of run_writer is on its way
        # Some thread (the loop's or another) writes _frames through the direct socket,
        # outside the lock; it keeps writing until nothing is queued.
        self._direct_busy = False
        self._close_direct = False  # close the direct socket once its writer is done
        self._error: BaseException | None = None
        # Loop-side events:
        self._kick = anyio.Event()
        self._drained = anyio.Event()
        self._flush_scheduled = False
        self._drain_wanted = False
        #: run_writer waits for a kick (trio: send_frame leaves the turn's writes to it)
        self._writer_waits = False

    @property
    def idle(self) -> bool:
        """Nothing is queued and no thread is writing (the socket may change hands)."""
        return not self._frames and not self._direct_busy

    async def send(self, msg: Message) -> None:
        """Encode and send one message (on daffi's loop).

        Raises:
            anyio.BrokenResourceError: the peer is gone (also for a closed connection).
        """
        await self.send_frame(encode_frame(msg))

    async def send_frame(self, frame: bytes | bytearray) -> None:
        """Send one already encoded frame (length prefix included), on daffi's loop."""
        with self._lock:
            if self._error is not None:
                raise self.broken()
            if self._cipher is not None:
                frame = self._cipher.seal(frame)
            self._frames.append(frame)
            self._queued += len(frame)
            lead = schedule = now = wake = False
            if self._writing or self._kick_pending or self._direct_busy:
                pass  # the writer in charge sends it
            elif self._call_soon_local is not None:
                # Written once the tasks ready in this loop turn have run: every frame they
                # queue goes out in the same system call, with no task switch.
                schedule = not self._flush_scheduled
                self._flush_scheduled = True
            elif self._direct.can_write:
                if self._writer_waits:
                    # No end-of-turn hook (trio): the writer task, woken now, runs after the
                    # tasks ready in this turn and writes what they queued in one call.
                    wake = not self._flush_scheduled
                    self._flush_scheduled = True
                else:
                    # No writer task yet (a handshake): write now.
                    now = self._direct_busy = True
            else:
                lead = self._writing = True
            # Decided under the lock: another thread may be draining the queue right now.
            drained = None
            if not lead and self._queued > self.high_water:
                self._drain_wanted = True
                drained = self._drained
        if schedule:
            assert self._call_soon_local is not None
            self._call_soon_local(self._flush_soon)
        elif wake:
            self._kick.set()
        elif now:
            self._write_direct()
        if lead:
            await self._flush()
        elif drained is not None:
            await drained.wait()
            if self._error is not None:
                raise self.broken()

    def _flush_soon(self) -> None:
        # A plain callback on the loop, between tasks: write what this turn queued.
        with self._lock:
            self._flush_scheduled = False
            if (
                self._writing
                or self._kick_pending
                or self._direct_busy
                or not self._frames
                or self._error
            ):
                return
            self._direct_busy = True
        self._write_direct()

    def _write_direct(self) -> None:
        """Write queued frames through the direct socket until none is left (any thread).

        The caller took the ``_direct_busy`` role. The system calls happen outside the lock,
        so other senders only queue their frames meanwhile, and they go out in the next
        write: under load, many replies share one system call. What the socket does not
        take is left to the loop's writer task.
        """
        while True:
            with self._lock:
                frames = self._frames
                if not frames or self._error is not None:
                    self._release_direct()
                    signal = self._drain_wanted and self._error is None
                    break
                self._frames = []
                self._queued = 0
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            sent = self._direct.send(data)
            if sent < len(data):
                # The socket is full: the writer task waits until it can take the rest.
                with self._lock:
                    rest = data[sent:]
                    self._frames.insert(0, rest)
                    self._queued += len(rest)
                    self._release_direct()
                    kick = not (self._writing or self._kick_pending)
                    if kick:
                        self._kick_pending = True
                if kick:
                    self._wake_from_any_thread()
                return
        if signal:
            if threading.get_ident() == self._loop_thread:
                self._signal_drained()
            else:
                self._call_soon(self._signal_drained)

    def _release_direct(self) -> None:
        # With the lock held: give up the direct-writer role (closing the socket if the
        # connection was closed meanwhile).
        self._direct_busy = False
        if self._close_direct:
            self._direct.close()

    def _signal_drained(self) -> None:
        if self._drain_wanted:
            self._drain_wanted = False
            drained, self._drained = self._drained, anyio.Event()
            drained.set()

    def _wake_from_any_thread(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._kick.set()
        else:
            self._call_soon(self._wake)

    def send_threadsafe(self, msg: Message) -> None:
        """Queue one message from any thread (never blocks; :meth:`run_writer` sends it).

        Raises:
            anyio.BrokenResourceError: the connection is closed.
        """
        self.send_frame_threadsafe(encode_frame(msg))

    def send_frames_threadsafe(self, frames: list[bytes | bytearray]) -> None:
        """Send encoded frames in order from any thread, in one write when it can."""
        self.send_frame_threadsafe(frames[0] if len(frames) == 1 else b"".join(frames))

    def send_frame_threadsafe(self, frame: bytes | bytearray) -> None:
        """Queue one encoded frame from any thread (see :meth:`send_threadsafe`)."""
        with self._lock:
            if self._error is not None:
                raise self.broken()
            if self._cipher is not None:
                frame = self._cipher.seal(frame)
                if not frame:
                    return  # (no protocol output was waiting after all)
            self._frames.append(frame)
            self._queued += len(frame)
            if self._writing or self._kick_pending or self._direct_busy:
                return  # the writer in charge picks it up
            if self._call_soon_local is not None and threading.get_ident() == self._loop_thread:
                # On the loop: written at the end of this turn, with whatever else it queues.
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    self._call_soon_local(self._flush_soon)
                return
            # Write from this thread if possible, sparing a wake-up of the loop.
            mine = self._direct_busy = self._direct.can_write
            if not mine:
                self._kick_pending = True
        if mine:
            self._write_direct()
        else:
            self._wake_from_any_thread()

    def _wake(self) -> None:
        self._kick.set()

    async def run_writer(self) -> None:
        """Send what other threads queued, and on trio what a turn of the loop's tasks
        queued; run it in the connection's task group."""
        while True:
            self._writer_waits = True
            try:
                await self._kick.wait()
            finally:
                self._writer_waits = False
            self._kick = anyio.Event()
            if self._flush_scheduled and self._call_soon_local is None:
                # Woken by send_frame (trio), after every task ready in that turn has run.
                # Plain code, no checkpoint: the write happens even if this task was
                # cancelled meanwhile (a stop right after sending Bye).
                self._flush_soon()
            with self._lock:
                self._kick_pending = False
                if self._writing or self._direct_busy or not self._frames:
                    continue
                self._writing = True
            try:
                await self._flush()
            except anyio.BrokenResourceError:
                # The peer is gone: only this connection ends (its receiver sees the end of
                # the stream once it is closed); the task group around it goes on.
                await self._on_broken()
                return

    async def _flush(self) -> None:
        # The caller holds the writer role. A write is never interrupted half way: on trio a
        # cancelled send_all would leave a partial frame on the wire.
        try:
            with anyio.CancelScope(shield=True):
                while True:
                    with self._lock:
                        if not self._frames:
                            self._writing = False
                            break
                        frames, self._frames = self._frames, []
                        self._queued = 0
                    data = frames[0] if len(frames) == 1 else b"".join(frames)
                    await self.stream.send(data)  # type: ignore[arg-type]  # any buffer works
        except (
            anyio.ClosedResourceError,
            anyio.BrokenResourceError,
            anyio.EndOfStream,
            OSError,
        ) as exc:
            self.fail(exc)
            raise self.broken() from exc
        finally:
            drained, self._drained = self._drained, anyio.Event()
            drained.set()

    @property
    def congested(self) -> bool:
        """Whether more than ``high_water`` bytes wait to be written."""
        return self._queued > self.high_water

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
            self._frames.clear()
            self._queued = 0
            self._writing = False

    def broken(self) -> anyio.BrokenResourceError:
        return anyio.BrokenResourceError(f"connection to {self._peer()} is closed")

    async def close(self) -> None:
        """Stop sending: what was queued last (a ``Reject``, a ``Bye``) is written first if
        no write is in progress, for a second at most; then every later send fails, and the
        direct socket is closed (by the thread writing through it, if one is)."""
        with self._lock:
            flush = (
                self._error is None
                and bool(self._frames)
                and not self._writing
                and not self._direct_busy
            )
            if flush:
                self._writing = True
        if flush:
            with anyio.move_on_after(1, shield=True):
                with contextlib.suppress(anyio.BrokenResourceError):
                    await self._flush()
        self.fail(anyio.ClosedResourceError())
        with self._lock:
            # A thread writing through the duplicate descriptor must not see it closed (and
            # its number reused) half way: then that thread closes it when done.
            if self._direct_busy:
                self._close_direct = True
            else:
                self._direct.close()
        drained, self._drained = self._drained, anyio.Event()
        drained.set()
