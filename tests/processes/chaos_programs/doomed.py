"""One process holding many nodes, each in a call, to be SIGKILLed at once.

Usage: doomed.py BACKEND SOCK_DIR ROUND [--nodes 50]

Starts ``--nodes`` Globals named "doomed-<ROUND>-<i>" in one event loop; each calls
``nap(name, 60)`` on the server and waits for it. Prints "JOINED <n>" once every node has
joined and its call is sent, then waits to be killed.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import anyio.lowlevel
from _common import parser, say

from daffi import Global
from daffi.decorators import fetcher
from daffi.registry import CallbackRegistry


@fetcher
async def nap(name, seconds): ...


async def main(args) -> None:
    async with AsyncExitStack() as stack:
        nodes = []
        for i in range(args.nodes):
            node = Global(
                f"doomed-{args.round}-{i}",
                registry=CallbackRegistry(),
                unix_sock_path=args.sock_dir,
            )
            nodes.append(await stack.enter_async_context(node))
        await nodes[-1].wait_function_async("nap", timeout=15)

        async def call(node: Global) -> None:
            with node.as_current():
                await nap(node.process_name, 60)

        async with anyio.create_task_group() as tg:
            for node in nodes:
                tg.start_soon(call, node)
            await anyio.lowlevel.checkpoint()
            say("JOINED", len(nodes))
            await anyio.sleep_forever()


if __name__ == "__main__":
    cli = parser(__doc__)
    cli.add_argument("round")
    cli.add_argument("--nodes", type=int, default=50)
    args = cli.parse_args()
    anyio.run(main, args, backend=args.backend)
