"""The floor: a bare anyio + msgspec echo between two processes, no daffi (``ours`` virtualenv).

    python -m benchmarks.compare.lib_floor server --transport unix|tcp --dir D
    python -m benchmarks.compare.lib_floor client --workload w1|w2|w3|w5|w6 --mode sync|async ...

The same idea as ``benchmarks/floor.py`` and ``benchmarks/floor_async.py``, kept separate so
that this comparison does not change when those do. Frames are a 4-byte big-endian length and
a msgpack body, as daffi's are. The server decodes every frame and encodes the value again;
frames that arrive together are answered with one write (daffi's connections coalesce writes
too). One hop, no routing, no threads: the cost of the sockets, the event loop and the codec.

Client modes:

* ``sync`` (W1, W3): the main thread makes each round trip with ``portal.call`` into an event
  loop running in another thread (``BlockingPortal``), as a synchronous user of an async core
  does: the fair floor for ``def`` fetchers.
* ``async`` (W1, W3): the round trips one after another inside the event loop.
* W2 and W5 (``async``): ``--concurrency`` tasks share one connection, each sending
  ``[request id, i]`` and waiting for its answer; a reader task hands answers back by id, and a
  task that sends while another is writing leaves its frame to that writer.
* W6 (``sync``): the same connection and reader, driven from the main thread through a
  ``BlockingPortal``: each call is ``portal.start_task_soon(call, i)`` (a future at once), and
  the thread keeps ``--concurrency`` of them outstanding, waiting for the oldest one's result.

The floor runs on asyncio only.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import msgspec
from anyio.abc import SocketAttribute
from anyio.from_thread import start_blocking_portal

from benchmarks.compare import _proto

LIB = "floor"
_HEADER = 4
_READ_SIZE = 256 * 1024
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def encode_frame(value: Any) -> bytearray:
    buf = bytearray(_HEADER)
    _encoder.encode_into(value, buf, _HEADER)
    buf[:_HEADER] = (len(buf) - _HEADER).to_bytes(_HEADER, "big")
    return buf


class FrameReader:
    """Frames parsed from one growing buffer: a read that brings many frames costs one read."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    def buffered(self) -> list[Any]:
        values = []
        buf = self.buffer
        while len(buf) >= _HEADER:
            end = _HEADER + int.from_bytes(buf[:_HEADER], "big")
            if len(buf) < end:
                break
            with memoryview(buf) as view:  # released before the buffer shrinks
                values.append(_decoder.decode(view[_HEADER:end]))
            del buf[:end]
        return values

    async def batch(self) -> list[Any]:
        """At least one decoded frame: what is buffered, reading more if needed."""
        while True:
            values = self.buffered()
            if values:
                return values
            self.buffer += await self.stream.receive(_READ_SIZE)


# ---------------------------------------------------------------- server


async def _echo(stream: anyio.abc.ByteStream) -> None:
    async with stream:
        reader = FrameReader(stream)
        try:
            while True:
                values = await reader.batch()
                await stream.send(b"".join(encode_frame(v) for v in values))
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the client is done


async def serve(args: argparse.Namespace) -> None:
    listener: anyio.abc.Listener[Any]
    if args.transport == "tcp":
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        connect: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": listener.extra(SocketAttribute.local_port),
        }
    else:
        path = os.path.join(args.dir, "floor.sock")
        listener = await anyio.create_unix_listener(path)
        connect = {"path": path}
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, _echo)
        _proto.announce_ready(
            LIB,
            f"anyio {anyio_version()}, msgspec {msgspec.__version__}",
            anyio.__file__,
            connect=connect,
        )
        await anyio.to_thread.run_sync(_proto.wait_for_stdin_eof, abandon_on_cancel=True)
        tg.cancel_scope.cancel()


def anyio_version() -> str:
    from importlib.metadata import version

    return version("anyio")


# ---------------------------------------------------------------- clients


async def _connect(connect: dict[str, Any]) -> anyio.abc.ByteStream:
    if "port" in connect:
        return await anyio.connect_tcp(connect["host"], connect["port"])
    return await anyio.connect_unix(connect["path"])


class Sequential:
    """One connection; :meth:`roundtrip` sends a value and reads it back."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.reader = FrameReader(stream)

    async def roundtrip(self, value: Any) -> Any:
        await self.stream.send(encode_frame(value))
        (answer,) = await self.reader.batch()
        return answer


class Multiplexer:
    """Many tasks' calls over one connection, matched to their answers by request id."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.reader = FrameReader(stream)
        self.waiting: dict[int, list[Any]] = {}
        self.next_id = 0
        self.pending: list[bytes] = []
        self.writing = False

    async def read_answers(self) -> None:
        while True:
            for request_id, value in await self.reader.batch():
                slot = self.waiting.pop(request_id)
                slot[1] = value
                slot[0].set()

    async def _send(self, frame: bytes) -> None:
        self.pending.append(frame)
        if self.writing:
            return  # the task writing now sends it with its own frames
        self.writing = True
        try:
            while self.pending:
                frames, self.pending = self.pending, []
                await self.stream.send(frames[0] if len(frames) == 1 else b"".join(frames))
        finally:
            self.writing = False

    async def call(self, value: Any) -> Any:
        request_id = self.next_id
        self.next_id += 1
        slot = self.waiting[request_id] = [anyio.Event(), None]
        await self._send(bytes(encode_frame([request_id, value])))
        await slot[0].wait()
        return slot[1]


def run_sync_portal(args: argparse.Namespace, timer: _proto.Timer) -> dict[str, Any]:
    with start_blocking_portal("asyncio") as portal:
        stream = portal.call(_connect, args.connect)
        client = Sequential(stream)
        try:
            return _proto.run_sync(
                lambda v: portal.call(client.roundtrip, v), _proto.check_echo, args, timer
            )
        finally:
            portal.call(stream.aclose)


def run_sync_pipelined(args: argparse.Namespace, timer: _proto.Timer) -> dict[str, Any]:
    with start_blocking_portal("asyncio") as portal:
        stream = portal.call(_connect, args.connect)
        mux = Multiplexer(stream)
        reader = portal.start_task_soon(mux.read_answers)
        try:
            return _proto.run_pipelined(
                lambda v: portal.start_task_soon(mux.call, v),
                lambda future: future.result(),
                args,
                timer,
            )
        finally:
            reader.cancel()
            portal.call(stream.aclose)


async def run_async_sequential(args: argparse.Namespace, timer: _proto.Timer) -> dict[str, Any]:
    make = _proto.value_maker(args)
    async with await _connect(args.connect) as stream:
        client = Sequential(stream)
        for i in range(args.warmup):
            value = make(i)
            _proto.check_echo(await client.roundtrip(value), value)
            timer.first_call_done()
        latencies = [0] * args.calls
        clock = time.perf_counter_ns
        start = clock()
        for i in range(args.calls):
            value = make(i)
            t0 = clock()
            got = await client.roundtrip(value)
            latencies[i] = clock() - t0
            _proto.check_echo(got, value)
        return timer.result(args.calls, clock() - start, latencies)


async def run_concurrent(args: argparse.Namespace, timer: _proto.Timer) -> dict[str, Any]:
    async def gather(workers: list[Any]) -> None:
        async with anyio.create_task_group() as tg:
            for run in workers:
                tg.start_soon(run)

    async with await _connect(args.connect) as stream, anyio.create_task_group() as tg:
        mux = Multiplexer(stream)
        tg.start_soon(mux.read_answers)
        result = await _proto.run_concurrent(mux.call, args, timer, gather)
        tg.cancel_scope.cancel()
    return result


def main() -> None:
    args = _proto.parse_args()
    if args.role == "server":
        anyio.run(serve, args, backend="asyncio")
        return
    if args.role != "client":
        raise SystemExit(f"the floor has no {args.role!r} role")
    timer = _proto.Timer()
    if args.workload == "w4":
        _proto.not_available("no broadcast in a bare echo")
    if args.workload in ("w2", "w5"):
        result = anyio.run(run_concurrent, args, timer, backend="asyncio")
    elif args.workload == "w6":
        result = run_sync_pipelined(args, timer)
    elif args.mode == "sync":
        result = run_sync_portal(args, timer)
    else:
        result = anyio.run(run_async_sequential, args, timer, backend="asyncio")
    _proto.emit_result(result)


if __name__ == "__main__":
    main()
