"""The floor: a bare anyio + msgspec echo between two processes, no daffi.

Frames are a 4-byte big-endian length and a msgpack body, like daffi's. The server decodes
each frame and encodes the value again (daffi's peers decode what they receive too), so the
floor is the cost of the sockets, the event loop and the codec, and nothing else.

    python -m benchmarks.floor server --transport tcp|unix [--path SOCKET]
    python -m benchmarks.floor client --transport tcp|unix (--port P | --path SOCKET)
        --mode sync-portal|async --calls N --warmup W [--deadline S] [--payload-bytes B]

The server prints ``READY {"port": P}`` (or ``{"path": ...}``) once listening and stops when
its stdin closes. The client prints one JSON line: the timed round; one still running after
``--deadline`` seconds prints every thread's traceback to stderr and exits.

Client modes:

* ``sync-portal``: the main thread makes each round trip with ``portal.call`` into an event
  loop running in another thread, as a synchronous user of an async core does; this is the
  fair floor for daffi's ``def`` fetchers.
* ``async``: the round trips run one after the other inside the event loop.

``--payload-bytes B`` echoes one ``bytes`` value of B bytes in every call instead of the call
number (W3); it is compared with what comes back, as daffi's W3 client does.
"""

from __future__ import annotations

import argparse
import faulthandler
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import msgspec
from anyio.abc import SocketAttribute
from anyio.from_thread import start_blocking_portal
from anyio.streams.buffered import BufferedByteReceiveStream

from benchmarks._common import (
    RoundResult,
    announce_ready,
    print_round,
    time_calls,
    wait_for_stdin_eof,
)

_HEADER = 4
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def encode_frame(value: Any) -> bytes:
    """``value`` as one frame: 4-byte big-endian length, then msgpack.

    It is really a ``bytearray`` (as daffi's frames are): the streams send any buffer, and
    copying it into ``bytes`` would make the floor do work daffi does not.
    """
    buf = bytearray(_HEADER)
    _encoder.encode_into(value, buf, _HEADER)
    buf[:_HEADER] = (len(buf) - _HEADER).to_bytes(_HEADER, "big")
    return buf  # type: ignore[return-value]  # see above


async def receive_frame(reader: BufferedByteReceiveStream) -> Any:
    """Read and decode one frame."""
    size = int.from_bytes(await reader.receive_exactly(_HEADER), "big")
    return _decoder.decode(await reader.receive_exactly(size))


# ---------------------------------------------------------------- server


async def _echo(stream: anyio.abc.ByteStream) -> None:
    async with stream:
        reader = BufferedByteReceiveStream(stream)
        try:
            while True:
                await stream.send(encode_frame(await receive_frame(reader)))
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
            return  # the client is done


async def serve(transport: str, path: str | None) -> None:
    """Echo frames on a loopback TCP port or a Unix socket until stdin closes."""
    listener: anyio.abc.Listener[Any]
    if transport == "tcp":
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        info: dict[str, Any] = {"port": listener.extra(SocketAttribute.local_port)}
    else:
        assert path is not None, "--path is required for unix"
        listener = await anyio.create_unix_listener(path)
        info = {"path": path}
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, _echo)
        announce_ready(**info)
        await anyio.to_thread.run_sync(wait_for_stdin_eof, abandon_on_cancel=True)
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------- client


class _Client:
    """One connection to the floor server; :meth:`roundtrip` sends a value and reads it back."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)

    @classmethod
    async def connect(cls, transport: str, port: int | None, path: str | None) -> _Client:
        if transport == "tcp":
            assert port is not None, "--port is required for tcp"
            return cls(await anyio.connect_tcp("127.0.0.1", port))
        assert path is not None, "--path is required for unix"
        return cls(await anyio.connect_unix(path))

    async def roundtrip(self, value: Any) -> Any:
        await self.stream.send(encode_frame(value))
        return await receive_frame(self.reader)


def _value_of(args: argparse.Namespace) -> Callable[[int], Any]:
    """What call ``i`` sends: ``i`` itself, or the same ``--payload-bytes`` bytes each time."""
    if not args.payload_bytes:
        return lambda i: i
    payload = payload_bytes(args.payload_bytes)
    return lambda i: payload


def payload_bytes(size: int) -> bytes:
    """``size`` bytes that are not all zeros (a repeating 0..255 pattern)."""
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def run_sync_portal(args: argparse.Namespace) -> RoundResult:
    value_of = _value_of(args)
    with start_blocking_portal("asyncio") as portal:
        client = portal.call(_Client.connect, args.transport, args.port, args.path)
        try:

            def call(i: int) -> None:
                value = value_of(i)
                if portal.call(client.roundtrip, value) != value:
                    raise AssertionError(f"floor echo of {i} came back wrong")

            time_calls(call, args.warmup)
            return time_calls(call, args.calls)
        finally:
            portal.call(client.stream.aclose)


async def run_async(args: argparse.Namespace) -> RoundResult:
    value_of = _value_of(args)
    client = await _Client.connect(args.transport, args.port, args.path)
    async with client.stream:
        for i in range(args.warmup):
            await client.roundtrip(value_of(i))
        latencies = [0] * args.calls
        clock = time.perf_counter_ns
        start = clock()
        for i in range(args.calls):
            value = value_of(i)
            t0 = clock()
            if await client.roundtrip(value) != value:
                raise AssertionError(f"floor echo of {i} came back wrong")
            latencies[i] = clock() - t0
        return RoundResult.from_latencies(latencies, clock() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--transport", choices=("tcp", "unix"), required=True)
    parser.add_argument("--port", type=int)
    parser.add_argument("--path")
    parser.add_argument("--mode", choices=("sync-portal", "async"), default="sync-portal")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--deadline", type=float, default=300.0)
    parser.add_argument("--payload-bytes", type=int, default=0, help="echo B bytes (W3)")
    args = parser.parse_args()
    if args.transport == "unix" and args.path is None:
        parser.error("--path is required with --transport unix")
    if args.transport == "tcp" and args.role == "client" and args.port is None:
        parser.error("--port is required for a tcp client")
    if args.role == "server":
        anyio.run(serve, args.transport, args.path, backend="asyncio")
        return
    faulthandler.dump_traceback_later(args.deadline, exit=True)
    if args.mode == "sync-portal":
        print_round(run_sync_portal(args))
    else:
        print_round(anyio.run(run_async, args, backend="asyncio"))


if __name__ == "__main__":
    main()
