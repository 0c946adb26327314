"""The node the chaos attacks aim at: quick callbacks, a generator, and a def that hangs.

Usage: server.py BACKEND SOCK_DIR

- ``echo(x)``: returns ``x`` (``async def``: it needs no worker thread, so the abandoned
  ``def`` calls that hold every worker do not stop it);
- ``count(n)``: an async generator of ``0 .. n-1``;
- ``ticker(n, pause)``: the same, one value every ``pause`` seconds (a stream kept open);
- ``collect(x)``: called once per item of a streaming call (``stream_in``);
- ``hang(seconds)``: a ``def`` callback that blocks its worker thread for ``seconds``;
- ``nap(name, seconds)``: an async callback that sleeps; prints "NAP <name>" when it starts;
- ``tick()``: the target of ``PERIOD`` requests (this node's ``min_period_interval`` is
  50 ms).

Prints "READY" once connected, "GONE <name>" when a node whose name starts with "doomed-"
leaves, "HANG <n>" when the n-th ``hang`` starts.
"""

from __future__ import annotations

import itertools
import threading

import anyio
from _common import parser, say

from daffi import Global
from daffi.decorators import callback

_hangs = itertools.count(1)
_hang_lock = threading.Lock()


@callback
async def echo(x):
    return x


@callback
async def count(n):
    for i in range(n):
        yield i


@callback
async def ticker(n, pause):
    for i in range(n):
        yield i
        await anyio.sleep(pause)


@callback
async def collect(x):
    return None


@callback
def hang(seconds):
    with _hang_lock:
        number = next(_hangs)
    say("HANG", number)
    threading.Event().wait(seconds)
    return "woke up"


@callback
async def nap(name, seconds):
    say("NAP", name)
    await anyio.sleep(seconds)


@callback
async def tick():
    return None


def on_node_disconnect(g, name):
    if name.startswith("doomed-"):
        say("GONE", name)


if __name__ == "__main__":
    args = parser(__doc__).parse_args()
    g = Global(
        process_name="chaos-server",
        backend=args.backend,
        unix_sock_path=args.sock_dir,
        min_period_interval=0.05,
        on_node_disconnect=on_node_disconnect,
    )
    say("READY")
    g.join()
