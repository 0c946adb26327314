"""In-process daffi clusters for tests: callbacks and fetchers called without sockets.

A cluster is a controller on a fresh ``memory://`` address, a *client* node that offers
nothing (the one to call through), and the nodes a test adds, each with the callbacks it
offers. Every process of the cluster runs in the test's own event loop (``open_cluster()``,
asyncio or trio) or, for plain ``def`` tests, in one background thread (``cluster()``).
Leaving the block stops them all: nodes first (newest first), then the client, then the
controller.

Inside the block the client is the Global that fetchers call through, unless another one is
made current with ``with g.as_current():``. A callback that calls fetchers itself calls
through the client too: in a real deployment it would call through its own process's
Global, so here (unlike there) it can also reach callbacks of its own node.

The pytest fixtures ``daffi_cluster`` and ``daffi_sync_cluster`` (``daffi.pytest_plugin``)
wrap these two functions. :class:`RecordedRuns` is a metrics hook that keeps what ran, for
assertions about which callbacks ran, for whom and how they ended.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

import anyio
import anyio.abc
from anyio.from_thread import BlockingPortal, start_blocking_portal

from daffi._context import current_var, remember
from daffi._global import Global
from daffi.metrics import CallRecord
from daffi.registry._callback import callback as _callback_decorator
from daffi.registry._markers import alias_of
from daffi.registry._store import CallbackRegistry, default_registry

__all__ = ["Callbacks", "Cluster", "RecordedRuns", "SyncCluster", "cluster", "open_cluster"]

#: What a node offers: ``{remote_name: function}``, or functions offered under their names
#: (their ``@alias``, for ``@callback`` objects the name they were registered under).
Callbacks = Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]]

# Chosen by the cluster; a test cannot override them for one Global.
_RESERVED = frozenset(
    {"process_name", "init_controller", "init_node", "address", "host", "port", "unix_sock_path"}
)

_CONTROLLER = "controller"
_CLIENT = "client"


class Cluster:
    """A controller, a client node and the nodes a test adds, all in one event loop.

    Made by ``open_cluster()``; not constructed directly.

    Attributes:
        address: the cluster's ``memory://`` address (unique to this cluster).
        controller: the standalone controller (no node).
        client: a node that offers nothing; the Global fetchers call through in the block.
        nodes: the nodes added with ``node()``, by name, client excluded.
    """

    controller: Global
    client: Global

    def __init__(self, address: str, task_group: anyio.abc.TaskGroup, options: dict[str, Any]):
        self.address = address
        self.nodes: dict[str, Global] = {}
        self._task_group = task_group
        self._options = options
        #: Globals in the order they started, and the event that stops each one's task
        self._running: list[tuple[Global, anyio.Event, anyio.Event]] = []
        self._crashes: list[BaseException] = []

    async def node(
        self,
        name: str,
        callbacks: Callbacks | None = None,
        *,
        registry: CallbackRegistry | None = None,
        **options: Any,
    ) -> Global:
        """Start a node named ``name`` offering ``callbacks`` and wait until it is known.

        With neither ``callbacks`` nor ``registry``, the node offers the process-wide
        registry: every function decorated with ``@callback`` (and every ``Callback``
        instance) of the modules imported so far.

        Args:
            name: the node's process name, unique in the cluster.
            callbacks: ``{remote_name: function}``, or functions offered under their own
                names; they go to a registry of the node's own (``node.registry``).
            registry: a ``CallbackRegistry`` to offer instead.
            **options: more keyword arguments of ``daffi.Global`` (``workers``,
                ``allow_pickle``, ``on_node_connect``...), over those given to
                ``open_cluster()``.

        Returns:
            The running node. When this returns, the client and every other node of the
            cluster see it and its callbacks, and it sees them.

        Raises:
            TypeError: both ``callbacks`` and ``registry`` are given, or ``options`` names
                an argument the cluster sets (``process_name``, ``address``...).
            InitializationError: a callback cannot be registered (two under one name, a
                lambda, ...), or the controller refused the node (its name is taken).
        """
        if callbacks is not None and registry is not None:
            raise TypeError("give a node either callbacks= or registry=, not both")
        if registry is None:
            registry = default_registry if callbacks is None else _registry_of(callbacks)
        g = await self._start(name, registry=registry, **options)
        others = [self.client, *self.nodes.values()]
        self.nodes[name] = g
        for other in others:
            await other.wait_process_async(name)
            await g.wait_process_async(other.process_name)
        for callback_name in registry.names():
            await self.client.wait_function_async(callback_name)
        return g

    async def stop_node(self, name: str) -> None:
        """Stop node ``name`` (as its process would stop) and wait until the client has
        seen it leave; its name can then be used again.

        Raises:
            KeyError: the cluster has no running node of that name.
        """
        g = self.nodes.get(name)
        entry = next((item for item in self._running if item[0] is g), None)
        if g is None or entry is None:
            raise KeyError(f"the cluster has no running node named {name!r}")
        self._running.remove(entry)
        _, stop, done = entry
        stop.set()
        await done.wait()
        client = self.client._runtime.require_node()
        await client.wait_until(lambda: name not in client.peers)

    async def _start(self, name: str, *, init_node: bool = True, **options: Any) -> Global:
        _check_options(options, _RESERVED)
        settings = {**self._options, **options}
        stop = anyio.Event()
        done = anyio.Event()
        g: Global = await self._task_group.start(self._run, name, init_node, settings, stop, done)
        self._running.append((g, stop, done))
        if hasattr(self, "client"):
            # Fetchers called where no Global is current (worker threads of `def`
            # callbacks, other tasks) use the newest running Global: keep that the client.
            remember(self.client)
        return g

    async def _run(
        self,
        name: str,
        init_node: bool,
        settings: dict[str, Any],
        stop: anyio.Event,
        done: anyio.Event,
        *,
        task_status: anyio.abc.TaskStatus[Global],
    ) -> None:
        """Run a Global until ``stop`` is set (or it is stopped); keep what crashed it."""
        # This task's context is a copy of the caller's, where the client may be current:
        # the Global's own tasks start from here, and must not have it pinned.
        current_var.set(None)
        started = False
        crash: Exception | None = None
        g: Global | None = None
        try:
            # Made and entered in this task, with no await between: the Global runs in
            # this task's task group, not in a task of its own (see Runtime.enter).
            g = Global(
                name,
                init_controller=not init_node,
                init_node=init_node,
                address=self.address,
                **settings,
            )
            async with g:
                started = True
                task_status.started(g)
                async with anyio.create_task_group() as tg:

                    async def stop_when_asked() -> None:
                        await stop.wait()
                        await g.stop_async()

                    tg.start_soon(stop_when_asked)
                    try:
                        await g.join_async()
                    except Exception as exc:  # it stopped because of an error
                        crash = exc
                    tg.cancel_scope.cancel()
        except BaseException as exc:
            if not started or g is None:
                raise  # the caller of node() gets it
            if g._runtime.crash is not None:
                # A crash cancels the `async with` body, and that cancellation can come out
                # of the block; it is not a cancellation of the cluster (anyio cancels
                # again at the next checkpoint if the cluster itself was cancelled).
                crash = crash or g._runtime.stopped_error()
            elif isinstance(exc, Exception):
                crash = crash or exc
            else:
                raise
        finally:
            if crash is not None:
                self._crashes.append(crash)
            if g is not None and self.nodes.get(name) is g:
                del self.nodes[name]
            done.set()

    async def _stop_all(self) -> None:
        """Stop every Global, newest first, each after the one started after it has gone."""
        while self._running:
            _, stop, done = self._running.pop()
            stop.set()
            await done.wait()

    def _raise_crash(self) -> None:
        if self._crashes:
            raise self._crashes[0]


def _check_options(options: Mapping[str, Any], reserved: frozenset[str]) -> None:
    taken = sorted(reserved & options.keys())
    if taken:
        raise TypeError(
            f"the cluster sets {', '.join(taken)} itself; pass only other options of Global"
        )


def _registry_of(callbacks: Callbacks) -> CallbackRegistry:
    registry = CallbackRegistry()
    if isinstance(callbacks, Mapping):
        for name, fn in callbacks.items():
            registry.add(_function_of(fn), name)
    else:
        for fn in callbacks:
            registry.add(_function_of(fn), _name_of(fn))
    return registry


def _function_of(fn: Callable[..., Any]) -> Callable[..., Any]:
    # A @callback object calls its function; registering the function keeps its kind
    # (async, generator) and annotations exactly as @callback registered them.
    if isinstance(fn, _callback_decorator):
        wrapped: Callable[..., Any] = fn.wrapped
        return wrapped
    return fn


def _name_of(fn: Callable[..., Any]) -> str | None:
    if isinstance(fn, _callback_decorator):
        return fn.alias
    return alias_of(fn)  # None: the registry takes the function's __name__


@contextlib.asynccontextmanager
async def open_cluster(**options: Any) -> AsyncIterator[Cluster]:
    """Run a cluster in the current event loop (asyncio or trio) for the ``async with`` block.

    Args:
        **options: keyword arguments of ``daffi.Global`` given to every process of
            the cluster (``auth_token``, ``max_frame_size``, ``heartbeat_interval``...);
            ``Cluster.node()`` can override them per node.

    Yields:
        The ``Cluster``, with its controller and client running and the client current.

    Raises:
        TypeError: ``options`` names an argument the cluster sets (``address``...).
        GlobalContextError: a process of the cluster stopped because of an error during
            the block (raised at the end of the block, unless the block raised itself).

    Examples:
        ```python
        async with open_cluster() as cluster:
            await cluster.node("worker", callbacks={"add": add})
            assert await add_fetcher(1, 2) == 3  # called through cluster.client
        ```
    """
    _check_options(options, _RESERVED | {"registry"})
    address = f"memory://daffi-testing-{uuid.uuid4().hex}"
    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:
        the_cluster = Cluster(address, tg, options)
        try:
            the_cluster.controller = await the_cluster._start(_CONTROLLER, init_node=False)
            the_cluster.client = await the_cluster._start(_CLIENT, registry=CallbackRegistry())
            token = current_var.set(the_cluster.client)
            try:
                yield the_cluster
            finally:
                current_var.reset(token)
        except BaseException as exc:
            # Raised again below, unwrapped: through the task group it would come out in
            # an exception group on trio.
            failure = exc
        finally:
            with anyio.CancelScope(shield=True):
                await the_cluster._stop_all()
    if failure is not None:
        raise failure
    the_cluster._raise_crash()


class SyncCluster:
    """A ``Cluster`` running in a background thread, for code without an event loop.

    Made by ``cluster()``; not constructed directly. Fetchers called in the block go
    through the client: ``def`` fetchers block, ``async def`` ones can be awaited from a
    loop of the test's own (``anyio.run``, ``asyncio.run``, ``trio.run``).

    Attributes:
        address: the cluster's ``memory://`` address (unique to this cluster).
        controller: the standalone controller (no node).
        client: a node that offers nothing; the Global fetchers call through in the block.
    """

    def __init__(self, inner: Cluster, portal: BlockingPortal) -> None:
        self._inner = inner
        self._portal = portal
        self.address = inner.address
        self.controller = inner.controller
        self.client = inner.client

    @property
    def nodes(self) -> dict[str, Global]:
        """The nodes added with ``node()``, by name, client excluded."""
        return dict(self._inner.nodes)

    def node(
        self,
        name: str,
        callbacks: Callbacks | None = None,
        *,
        registry: CallbackRegistry | None = None,
        **options: Any,
    ) -> Global:
        """Start a node and block until every process of the cluster knows it; the
        arguments, result and errors are those of ``Cluster.node()``."""

        async def start() -> Global:
            return await self._inner.node(name, callbacks, registry=registry, **options)

        return self._portal.call(start)

    def stop_node(self, name: str) -> None:
        """Stop node ``name`` and block until the client has seen it leave (see
        ``Cluster.stop_node()``)."""
        self._portal.call(self._inner.stop_node, name)


@contextlib.contextmanager
def cluster(*, backend: str = "asyncio", **options: Any) -> Iterator[SyncCluster]:
    """Run a cluster in a background thread for the ``with`` block (for ``def`` tests).

    Every process of the cluster runs on one event loop in one thread, as a Global made
    outside an event loop runs in a thread of its own.

    Args:
        backend: the loop of that thread, ``"asyncio"`` or ``"trio"``.
        **options: keyword arguments of ``daffi.Global`` given to every process of
            the cluster, as for ``open_cluster()``.

    Yields:
        The ``SyncCluster``, with its controller and client running.

    Raises:
        TypeError: ``options`` names an argument the cluster sets (``address``...).
        GlobalContextError: a process of the cluster stopped because of an error during
            the block (raised at the end of the block, unless the block raised itself).

    Examples:
        ```python
        with cluster() as c:
            c.node("worker", callbacks={"add": add})
            assert add_fetcher(1, 2) == 3  # called through c.client
        ```
    """
    with (
        start_blocking_portal(backend) as portal,
        portal.wrap_async_context_manager(open_cluster(**options)) as inner,
    ):
        yield SyncCluster(inner, portal)


class RecordedRuns:
    """A metrics hook that keeps every :class:`~daffi.metrics.CallRecord`, for tests.

    Give it to the Globals under test (``c.node("worker", callbacks, metrics=runs)``, or
    ``Global(..., metrics=runs)``), then assert on what ran. Thread-safe: hooks run in worker
    threads and on event loops. A ``def`` callback's record is made in its worker thread,
    possibly just after its caller got the reply: wait for the records you expect with
    :meth:`wait_for` (sync tests) or :meth:`wait_for_async`.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._records: list[CallRecord] = []

    def __call__(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._lock.notify_all()

    def of(self, callback: str) -> list[CallRecord]:
        """The records of ``callback`` so far, in the order they were made."""
        with self._lock:
            return [record for record in self._records if record.callback == callback]

    def all(self) -> list[CallRecord]:
        """Every record so far."""
        with self._lock:
            return list(self._records)

    def wait_for(self, callback: str, count: int, timeout: float = 5.0) -> list[CallRecord]:
        """Block until ``callback`` has ``count`` records (or more); they are returned.

        Raises:
            TimeoutError: fewer within ``timeout`` seconds (the message lists them).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(found := self._of(callback)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(self._short(callback, count, found, timeout))
                self._lock.wait(left)
            return found

    async def wait_for_async(
        self, callback: str, count: int, timeout: float = 5.0
    ) -> list[CallRecord]:
        """Wait until ``callback`` has ``count`` records (or more); they are returned.

        Raises:
            TimeoutError: fewer within ``timeout`` seconds (the message lists them).
        """
        with anyio.move_on_after(timeout):
            while len(self.of(callback)) < count:  # noqa: ASYNC110 (records come from threads)
                await anyio.sleep(0.005)
        found = self.of(callback)
        if len(found) < count:
            raise TimeoutError(self._short(callback, count, found, timeout))
        return found

    def _of(self, callback: str) -> list[CallRecord]:
        return [record for record in self._records if record.callback == callback]

    @staticmethod
    def _short(callback: str, count: int, found: list[CallRecord], timeout: float) -> str:
        return (
            f"expected {count} runs of {callback!r} within {timeout} s, got {len(found)}: {found!r}"
        )
