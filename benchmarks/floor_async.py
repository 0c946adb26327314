"""Floors for W2 and the streams: bare anyio + msgspec between two processes, no daffi.

Frames are the same as in ``floor.py`` (4-byte big-endian length + msgpack).

    python -m benchmarks.floor_async server --path SOCKET
    python -m benchmarks.floor_async concurrent --path SOCKET --calls N --warmup W
        --concurrency C [--deadline S]
    python -m benchmarks.floor_async download|upload --path SOCKET --items N --warmup W
        [--deadline S]

The server prints ``READY {"path": ...}`` once listening and stops when its stdin closes. On
each connection it reads the first frame, which says what the connection is for:

* ``["echo"]``: pipelined echo (W2). Every frame is ``[request id, value]``; the server decodes
  each one and encodes it again. Each read may bring many frames; their answers leave in one
  write, as daffi's connections coalesce the frames queued while they write.
* ``["down", n]``: the server sends ``n`` frames, the ints ``0..n-1`` one frame and one write
  each (daffi's generator callback also sends one frame per value), then ``None``.
* ``["up"]``: the client sends frames until ``None``; the server decodes each one, then
  answers with how many it got.

Clients print one ``RoundResult`` JSON line:

* ``concurrent`` (W2 floor): ``C`` tasks share one connection, each sending ``[id, i]`` and
  waiting for its answer, ``N`` calls in all; a reader task hands each answer to its waiter by
  request id, and a task that sends while another is writing leaves its frame to that writer
  (write coalescing, as daffi does). p50/p99 are per call.
* ``download`` / ``upload`` (streams floor): one-way streams of ``N`` framed ints; only the
  rate counts (items/s), the latency fields are 0.

A client still running after ``--deadline`` seconds prints every thread's traceback and exits.
"""

from __future__ import annotations

import argparse
import faulthandler
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from benchmarks._common import (
    RoundResult,
    announce_ready,
    print_round,
    wait_for_stdin_eof,
)
from benchmarks.compare.lib_floor import FrameReader as _FrameReader
from benchmarks.floor import encode_frame

# ---------------------------------------------------------------- server


async def _handle(stream: anyio.abc.ByteStream) -> None:
    async with stream:
        reader = _FrameReader(stream)
        try:
            first, *rest = await reader.batch()
            if first[0] == "echo":
                await _echo(stream, reader, rest)
            elif first[0] == "down":
                await _down(stream, int(first[1]))
            elif first[0] == "up":
                await _up(stream, reader, rest)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the client is done


async def _echo(stream: anyio.abc.ByteStream, reader: _FrameReader, values: list[Any]) -> None:
    while True:
        if values:
            await stream.send(b"".join(encode_frame(v) for v in values))
        values = await reader.batch()


async def _down(stream: anyio.abc.ByteStream, n: int) -> None:
    for i in range(n):
        await stream.send(encode_frame(i))
    await stream.send(encode_frame(None))


async def _up(stream: anyio.abc.ByteStream, reader: _FrameReader, values: list[Any]) -> None:
    count = 0
    while True:
        for value in values:
            if value is None:
                await stream.send(encode_frame(count))
                return
            count += 1
        values = await reader.batch()


async def serve(path: str) -> None:
    """Serve the three kinds of connection on a Unix socket until stdin closes."""
    listener = await anyio.create_unix_listener(path)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, _handle)
        announce_ready(path=path)
        await anyio.to_thread.run_sync(wait_for_stdin_eof, abandon_on_cancel=True)
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------- W2 client


class _Waiter:
    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value: Any = None


class _Multiplexer:
    """Many tasks' calls over one connection, matched to their answers by request id."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.reader = _FrameReader(stream)
        self.waiting: dict[int, _Waiter] = {}
        self.next_id = 0
        self.pending: list[bytes] = []
        self.writing = False

    async def read_answers(self) -> None:
        while True:
            for request_id, value in await self.reader.batch():
                waiter = self.waiting.pop(request_id)
                waiter.value = value
                waiter.event.set()

    async def send(self, frame: bytes) -> None:
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
        waiter = self.waiting[request_id] = _Waiter()
        await self.send(encode_frame([request_id, value]))
        await waiter.event.wait()
        return waiter.value


async def run_concurrent(args: argparse.Namespace) -> RoundResult:
    stream = await anyio.connect_unix(args.path)
    async with stream, anyio.create_task_group() as tg:
        mux = _Multiplexer(stream)
        await stream.send(encode_frame(["echo"]))
        tg.start_soon(mux.read_answers)
        await time_concurrent_calls(mux.call, args.warmup, args.concurrency)
        result = await time_concurrent_calls(mux.call, args.calls, args.concurrency)
        tg.cancel_scope.cancel()
    return result


async def time_concurrent_calls(
    call: Callable[[int], Awaitable[Any]], calls: int, concurrency: int
) -> RoundResult:
    """``calls`` calls of ``call(i)`` by ``concurrency`` tasks, each one after another.

    Every call must return ``i``. calls/s is ``calls`` over the wall time from the first call
    to the last answer; the percentiles are per call. daffi's W2 client uses it too.
    """
    latencies: list[int] = []
    clock = time.perf_counter_ns

    async def worker(first: int) -> None:
        for i in range(first, calls, concurrency):
            t0 = clock()
            if await call(i) != i:
                raise AssertionError(f"floor echo of {i} came back wrong")
            latencies.append(clock() - t0)

    start = clock()
    async with anyio.create_task_group() as tg:
        for first in range(min(concurrency, calls)):
            tg.start_soon(worker, first)
    return RoundResult.from_latencies(latencies, clock() - start)


# ---------------------------------------------------------------- stream clients


async def _download(path: str, n: int) -> None:
    stream = await anyio.connect_unix(path)
    async with stream:
        await stream.send(encode_frame(["down", n]))
        reader = _FrameReader(stream)
        expected = 0
        while True:
            for value in await reader.batch():
                if value is None:
                    if expected != n:
                        raise AssertionError(f"floor download ended after {expected} of {n}")
                    return
                if value != expected:
                    raise AssertionError(f"floor download: got {value}, expected {expected}")
                expected += 1


async def _upload(path: str, n: int) -> None:
    stream = await anyio.connect_unix(path)
    async with stream:
        await stream.send(encode_frame(["up"]))
        for i in range(n):
            await stream.send(encode_frame(i))
        await stream.send(encode_frame(None))
        (count,) = await _FrameReader(stream).batch()
        if count != n:
            raise AssertionError(f"floor upload: the server got {count} of {n} items")


async def run_stream(args: argparse.Namespace) -> RoundResult:
    run = _download if args.role == "download" else _upload
    await run(args.path, args.warmup)
    start = time.perf_counter_ns()
    await run(args.path, args.items)
    return RoundResult(args.items, time.perf_counter_ns() - start, 0, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("server", "concurrent", "download", "upload"))
    parser.add_argument("--path", required=True, help="the server's Unix socket")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--deadline", type=float, default=300.0)
    args = parser.parse_args()
    if args.role == "server":
        anyio.run(serve, args.path, backend="asyncio")
        return
    faulthandler.dump_traceback_later(args.deadline, exit=True)
    if args.role == "concurrent":
        print_round(anyio.run(run_concurrent, args, backend="asyncio"))
    else:
        print_round(anyio.run(run_stream, args, backend="asyncio"))


if __name__ == "__main__":
    main()
