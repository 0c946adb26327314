"""Clients written as asyncio and trio apps, daffi 2 style and ``async with`` style."""

from __future__ import annotations

import pytest

from .conftest import Launcher, Server, parse_results

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]


@pytest.mark.parametrize("library", ["asyncio", "trio"])
@pytest.mark.parametrize("style", ["lazy", "with"])
def test_async_client(launch: Launcher, callback_server: Server, library: str, style: str) -> None:
    client = launch("async_client.py", library, style, *callback_server.endpoint.argv)
    client.wait_for_line(r"^DONE$", timeout=20)
    assert client.wait_exit(10) == 0, client.describe()
    results = parse_results(client)

    expected = {"add": "3", "add_one": "42", "async_double": "42", "multiply": "42"}
    if style == "with":
        # A blocking `def` fetcher in the loop's own thread would deadlock: refused, and the
        # message points at the async way.
        expected["blocking_in_loop"] = "GlobalContextError True"
        # Leaving the block stopped it.
        expected["after_with"] = "GlobalContextError"
    assert results == expected, client.describe()
