"""pytest plugin: the ``daffi_cluster`` and ``daffi_sync_cluster`` fixtures.

Installed with daffi (a ``pytest11`` entry point), or enabled with ``-p daffi.pytest_plugin``.
Until a test asks for one of its fixtures it does nothing: ``daffi.testing`` is imported
by the fixtures themselves.

* ``daffi_cluster``: a ``daffi.testing.Cluster`` in the test's event loop, for
  ``async def`` tests run by anyio's pytest plugin (``@pytest.mark.anyio``), on the backend
  of the ``anyio_backend`` fixture.
* ``daffi_sync_cluster``: a ``daffi.testing.SyncCluster`` in a background thread, for
  ``def`` tests.

Both stop the cluster when the test ends.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from daffi.testing import Cluster, SyncCluster

__all__ = ["daffi_cluster", "daffi_sync_cluster"]


@pytest.fixture
async def daffi_cluster(
    anyio_backend: object, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    """An in-process daffi cluster in the test's event loop (``daffi.testing.open_cluster()``).

    Its client is the Global fetchers call through in the test. For ``async def`` tests
    marked ``@pytest.mark.anyio``; ``def`` tests use ``daffi_sync_cluster``.
    """
    if not inspect.iscoroutinefunction(request.function):
        pytest.fail(
            "the daffi_cluster fixture runs in the event loop of an `async def` test (marked "
            "@pytest.mark.anyio); in a `def` test use daffi_sync_cluster instead",
            pytrace=False,
        )
    from daffi.testing import open_cluster

    async with open_cluster() as cluster:
        yield cluster


@pytest.fixture
def daffi_sync_cluster() -> Iterator[SyncCluster]:
    """An in-process daffi cluster in a background thread (see ``daffi.testing.cluster()``),
    for ``def`` tests; its client is the Global fetchers call through."""
    from daffi.testing import cluster

    with cluster() as running:
        yield running
