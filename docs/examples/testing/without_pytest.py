"""daffi.testing without pytest: a cluster in an async program, then one for blocking code.

Run:    python without_pytest.py
"""

import anyio

from daffi.decorators import alias, fetcher
from daffi.testing import cluster, open_cluster


def add(a: int, b: int) -> int:
    """The callback under test (offered below under the name "add")."""
    return a + b


@alias("add")
@fetcher
async def add_remote(a: int, b: int) -> int: ...


@alias("add")
@fetcher
def add_blocking(a: int, b: int) -> int: ...


async def main() -> None:
    async with open_cluster() as c:  # in this event loop: asyncio here, trio works too
        await c.node("worker", callbacks={"add": add})
        print("async:", await add_remote(1, 2))


anyio.run(main)

with cluster() as c:  # in a background thread: for code without an event loop
    c.node("worker", callbacks={"add": add})
    print("blocking:", add_blocking(3, 4))
