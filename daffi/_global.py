"""``Global``: starts the controller and/or node of this process and is the face users call.

Three ways to run (see docs/design.md):

* constructed outside an event loop: starts at once in a background daemon thread that runs
  the async core; blocking methods call through a ``BlockingPortal``; stopped at exit.
* ``async with Global(...) as g`` (asyncio or trio): runs in the caller's loop and task group.
* constructed inside a running loop and never entered (daffi 2 style async apps): runs in
  a task of that loop, on its library, started when the constructor's caller first yields.

``Global`` is the facade over three pieces: its settings (``_settings.py``), its runtime (the
loop, the thread or caller's loop it runs in, the bridge to it: ``_runtime.py``, with the
controller and node it runs in ``_components.py``), and what the execution modifiers mean
(``_execution.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from daffi._accepting import DEFAULT_FRAME_TIMEOUT, DEFAULT_MAX_CONNECTIONS
from daffi._connection import DEFAULT_MAX_FRAME_SIZE
from daffi._context import current_global, current_var
from daffi._crossloop import running_library
from daffi._environment import apply_log_level
from daffi._execution import Execution
from daffi._mirror import NodeInfo
from daffi._protocol import DEFAULT_MAX_CALLBACKS, DEFAULT_MAX_REGISTRATION_SIZE, CallbackInfo
from daffi._remote_call import RemoteCalls
from daffi._results import ScheduledTasks
from daffi._router import DEFAULT_MAX_CALLS_IN_FLIGHT
from daffi._runtime import Runtime
from daffi._schedule_host import SYSTEM_LIST_SCHEDULES
from daffi._settings import Hook, Settings
from daffi._transfer import Transfer
from daffi.execution_modifiers import MIN_PERIOD_INTERVAL
from daffi.metrics import MetricsHook
from daffi.registry._store import CallbackRegistry

if TYPE_CHECKING:
    from daffi._nats_address import NatsSettings
    from daffi._tls import TlsConfig
    from daffi.transports import Address

__all__ = ["Global", "get_g"]

logger = logging.getLogger("daffi.global")


class Global:
    """The daffi runtime of this process: a controller, a node, or both.

    Where no ``address``, ``host``, ``port`` or ``unix_sock_path`` is given, the
    ``DAFFI_ADDRESS`` environment variable is the address; ``DAFFI_AUTH_TOKEN`` is the
    ``auth_token`` when none is given; ``DAFFI_LOG_LEVEL`` sets the level of the ``daffi``
    logger. Arguments always win over the environment (see docs/configuration.md).

    Args:
        process_name: this process's unique name (default: generated from the script, the
            host, the process id and 4 random hex digits, e.g. ``worker-web1-12345-3fa2``;
            new for every Global).
        init_controller: run the controller in this process.
        init_node: run a node (offer callbacks, call fetchers) in this process.
        host: TCP host to listen on (controller) or connect to (node).
        port: TCP port; a controller without one picks a free port (see :attr:`port`).
        unix_sock_path: directory of the Unix socket (default: a private per-user directory
            under the temp dir); used when no ``host`` is given. Without ``host``, ``port``,
            ``unix_sock_path`` and ``address``, the ``DAFFI_ADDRESS`` environment variable
            (same form as ``address``) is used if it is set, else this default socket.
        ssl_certificate: TLS certificate file (PEM). On a controller, with ``ssl_key``, it
            serves TLS; on a node, it is the client certificate for mutual TLS. Half
            configured TLS raises ``InitializationError``, never runs in plaintext.
        ssl_key: the private key of ``ssl_certificate`` (PEM).
        on_init: ``hook(g, process_name)`` once when started (sync or async).
        on_node_connect: ``hook(g, process_name)`` for every node that joins, this one
            included (sync or async).
        on_node_disconnect: ``hook(g, process_name)`` for every node that leaves, this one
            included (sync or async).
        address: ``"scheme://..."`` for any registered transport, instead of host/port/unix;
            ``"tls://host:port"`` is TCP with TLS, the controller's certificate checked
            against ``ssl_ca`` or the system's CA store. Default: the ``DAFFI_ADDRESS``
            environment variable when no host/port/unix_sock_path is given either.
        ssl_ca: CA certificates (a PEM file or a directory). On a node, TLS is used and the
            controller's certificate must be signed by them (and name its host); on a
            controller, nodes must present a client certificate they signed (mutual TLS).
        auth_token: a shared secret every process of the system is given (default: the
            ``DAFFI_AUTH_TOKEN`` environment variable). Each handshake proves both ends know
            it, by challenge and response; it never travels. A node without it, or with
            another, is refused with ``AuthenticationError``. With a token (or mutual TLS) a
            node's name is bound to its session: while it reconnects, nobody else may take it.
        ssl_bind_names: on a controller with mutual TLS, admit a node only under a name its
            client certificate carries (a DNS subject alternative name, else the common name).
        allow_transfer: run functions other processes send with ``transfer_and_call``
            (default False: such calls are refused with ``GlobalContextError``, unread).
            Needs ``pip install 'daffi[pickle]'``; enable it only if every process that can
            connect is trusted: it runs whatever they send.
        allow_pickle: send and accept pickled arguments and results (values msgpack cannot
            carry) with peers that allow them too (default False: nothing received is
            unpickled). Needs ``pip install 'daffi[pickle]'``; unpickling runs code chosen
            by the sender, so enable it only between processes that trust each other.
        backend: event loop of the background thread, ``"asyncio"`` (default) or ``"trio"``.
        connect_timeout: seconds a node waits for its controller before the constructor
            raises ``InitializationError``; ``None`` waits forever.
        registry: the callbacks this node offers (default: the process-wide registry).
        workers: how many sync callbacks may run at once (worker threads).
        max_frame_size: largest frame accepted from a peer, in bytes.
        heartbeat_interval: seconds between pings; a peer silent for 3 intervals is dead.
        max_concurrent_calls: incoming calls running at once beyond which new ones are
            refused with ``GlobalContextError`` at the caller.
        max_connections: a controller's open connections beyond which it stops accepting
            until one closes (default 10,000).
        frame_timeout: seconds a controller gives a peer's frame from its first byte to its
            last before closing that connection (default 60).
        max_callbacks: the most callbacks a controller lets one process offer (default
            10,000); beyond it, the registration is refused and that process is told why.
        max_registration_size: the largest registration, in bytes, a controller takes from
            one process (default 1 MiB); a larger one is refused likewise.
        max_calls_in_flight: the most calls one process may have waiting for their results
            through a controller (default 100,000); beyond it, a call fails at once with
            ``GlobalContextError``.
        min_period_interval: the shortest ``PERIOD(interval=...)`` this node runs, in
            seconds (default 1 ms); a schedule asking for less is refused.
        state_dir: the directory where this node keeps its state: the durable schedules
            it runs (``PERIOD(durable=True)``), in ``schedules.sqlite3``. Default:
            ``$XDG_STATE_HOME/daffi/<process_name>`` (``~/.local/state/daffi/<name>``),
            made (private to the user) with the first durable schedule. A node whose
            ``process_name`` is generated has none unless given one, and refuses durable
            schedules. A node started again with the same state directory resumes them.
        metrics: ``hook(record)`` for every run of one of this node's callbacks, with a
            :class:`~daffi.metrics.CallRecord` (callback, caller, outcome, duration); e.g.
            a :class:`~daffi.metrics.CallbackStats`. See :mod:`daffi.metrics`.

    Raises:
        InitializationError: an argument (or a combination) cannot work, or an environment
            variable it reads (``DAFFI_ADDRESS``, ``DAFFI_LOG_LEVEL``) has a value that
            cannot; the message names the argument or the variable.
    """

    def __init__(
        self,
        process_name: str | None = None,
        init_controller: bool = False,
        init_node: bool = True,
        host: str | None = None,
        port: int | str | None = None,
        unix_sock_path: str | os.PathLike[str] | None = None,
        ssl_certificate: str | os.PathLike[str] | None = None,
        ssl_key: str | os.PathLike[str] | None = None,
        on_init: Hook | None = None,
        on_node_connect: Hook | None = None,
        on_node_disconnect: Hook | None = None,
        *,
        address: str | None = None,
        backend: str = "asyncio",
        connect_timeout: float | None = 30.0,
        registry: CallbackRegistry | None = None,
        workers: int = 40,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        heartbeat_interval: float = 5.0,
        max_concurrent_calls: int = 10_000,
        min_period_interval: float = MIN_PERIOD_INTERVAL,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
        max_callbacks: int = DEFAULT_MAX_CALLBACKS,
        max_registration_size: int = DEFAULT_MAX_REGISTRATION_SIZE,
        max_calls_in_flight: int = DEFAULT_MAX_CALLS_IN_FLIGHT,
        ssl_ca: str | os.PathLike[str] | None = None,
        auth_token: str | bytes | None = None,
        ssl_bind_names: bool = False,
        allow_transfer: bool = False,
        allow_pickle: bool = False,
        state_dir: str | os.PathLike[str] | None = None,
        metrics: MetricsHook | None = None,
    ) -> None:
        settings = Settings.check(
            process_name=process_name,
            init_controller=init_controller,
            init_node=init_node,
            host=host,
            port=port,
            unix_sock_path=unix_sock_path,
            ssl_certificate=ssl_certificate,
            ssl_key=ssl_key,
            ssl_ca=ssl_ca,
            auth_token=auth_token,
            ssl_bind_names=ssl_bind_names,
            allow_transfer=allow_transfer,
            allow_pickle=allow_pickle,
            state_dir=state_dir,
            on_init=on_init,
            on_node_connect=on_node_connect,
            on_node_disconnect=on_node_disconnect,
            address=address,
            backend=backend,
            connect_timeout=connect_timeout,
            registry=registry,
            workers=workers,
            max_frame_size=max_frame_size,
            heartbeat_interval=heartbeat_interval,
            max_concurrent_calls=max_concurrent_calls,
            min_period_interval=min_period_interval,
            max_connections=max_connections,
            frame_timeout=frame_timeout,
            max_callbacks=max_callbacks,
            max_registration_size=max_registration_size,
            max_calls_in_flight=max_calls_in_flight,
            metrics=metrics,
        )
        apply_log_level(settings.log_level)
        self.process_name: str = settings.process_name
        self.init_controller: bool = settings.init_controller
        self.init_node: bool = settings.init_node
        self.address: Address = settings.address
        self.host: str | None = self.address.host
        self.port: int | None = self.address.port
        self.on_init: Hook | None = settings.on_init
        self.on_node_connect: Hook | None = settings.on_node_connect
        self.on_node_disconnect: Hook | None = settings.on_node_disconnect
        self.backend: str = settings.backend
        self.connect_timeout: float | None = settings.connect_timeout
        self.registry: CallbackRegistry = settings.registry
        self.workers: int = settings.workers
        self.max_frame_size: int = settings.max_frame_size
        self.heartbeat_interval: float = settings.heartbeat_interval
        self.max_concurrent_calls: int = settings.max_concurrent_calls
        self.min_period_interval: float = settings.min_period_interval
        self.max_connections: int = settings.max_connections
        self.frame_timeout: float = settings.frame_timeout
        self.max_callbacks: int = settings.max_callbacks
        self.max_registration_size: int = settings.max_registration_size
        self.max_calls_in_flight: int = settings.max_calls_in_flight
        self.tls: TlsConfig | None = settings.tls
        self.nats: NatsSettings | None = settings.nats  # a nats:// address: NATS mode
        self.auth_secret: bytes | None = settings.auth_secret
        self.ssl_bind_names: bool = settings.ssl_bind_names
        self.allow_transfer: bool = settings.allow_transfer
        self.allow_pickle: bool = settings.allow_pickle
        self.state_dir: str | None = settings.state_dir
        self.metrics: MetricsHook | None = settings.metrics

        scheduled = ScheduledTasks()
        self._runtime = Runtime(self, schedule_reports=scheduled)
        self._execution = Execution(self._runtime, scheduled)
        self._calls = RemoteCalls(self._execution, lambda: self._runtime.node)

        library = running_library()
        if library is None:
            self._runtime.start_in_thread()
        else:
            self._runtime.start_in_running_loop(library)

    # ------------------------------------------------------------------ running and stopping

    async def __aenter__(self) -> Global:
        await self._runtime.enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._runtime.exit(exc)

    def __enter__(self) -> Global:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is None:
            self._runtime.raise_crash()

    def stop(self) -> None:
        """Stop this Global: say goodbye to peers, cancel everything it runs, close sockets.

        From the thread of daffi's own event loop (``async with`` apps) this only requests
        the stop; leaving the ``async with`` block (or :meth:`stop_async`) completes it.
        """
        self._runtime.stop()

    async def stop_async(self) -> None:
        """Stop this Global and wait until it has stopped (any loop, any thread)."""
        await self._runtime.stop_async()

    def join(self) -> None:
        """Block until this Global is stopped (by :meth:`stop` in another thread, or a hook).

        Raises:
            GlobalContextError: daffi stopped because of an internal error (its
                ``__cause__``), not because it was asked to.
        """
        self._runtime.join()

    async def join_async(self) -> None:
        """Wait until this Global is stopped (raises like :meth:`join`)."""
        await self._runtime.join_async()

    # ------------------------------------------------------------------ schedules

    def get_scheduled_tasks(self, remote_process: str) -> list[dict[str, Any]]:
        """The schedules running on ``remote_process``: uuid, func_name, kind, next_run
        (UTC epoch), runs, requester, and the interval or at_time list."""
        result: list[dict[str, Any]] = self._runtime.blocking(
            "get_scheduled_tasks",
            "get_scheduled_tasks_async",
            self._execution.schedules.system_call,
            remote_process,
            SYSTEM_LIST_SCHEDULES,
        )
        return result

    async def get_scheduled_tasks_async(self, remote_process: str) -> list[dict[str, Any]]:
        """Async twin of :meth:`get_scheduled_tasks`."""
        result: list[dict[str, Any]] = await self._runtime.run_on_loop(
            self._execution.schedules.system_call, remote_process, SYSTEM_LIST_SCHEDULES
        )
        return result

    def cancel_scheduled_task_by_uuid(self, remote_process: str, uuid: str) -> bool:
        """Cancel schedule ``uuid`` on ``remote_process``; returns whether it was active
        (False: it has ended). An unknown uuid raises ``RemoteCallError`` (a ``LookupError``)."""
        cancelled: bool = self._runtime.blocking(
            "cancel_scheduled_task_by_uuid",
            "cancel_scheduled_task_by_uuid_async",
            self._execution.schedules.cancel_schedule,
            remote_process,
            uuid,
        )
        return cancelled

    async def cancel_scheduled_task_by_uuid_async(self, remote_process: str, uuid: str) -> bool:
        """Async twin of :meth:`cancel_scheduled_task_by_uuid`."""
        cancelled: bool = await self._runtime.run_on_loop(
            self._execution.schedules.cancel_schedule, remote_process, uuid
        )
        return cancelled

    # ------------------------------------------------------------------ code transfer

    def transfer_and_call(
        self, remote_process: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Run ``func(*args, **kwargs)`` on process ``remote_process``; block for its result.

        ``func`` (a ``def`` or ``async def`` function, a lambda, a closure) travels pickled
        by value with cloudpickle, with its arguments (``pip install 'daffi[pickle]'``).
        ``remote_process`` runs it only if it was created with ``allow_transfer=True``: a
        ``def`` function in one of its ``workers``, an ``async def`` one on its loop. The
        result comes back like a callback's: msgpack, or pickled if both processes allow
        pickle.

        Args:
            remote_process: the process that runs ``func`` (this one included).
            func: the function to run there.
            *args: its positional arguments.
            **kwargs: its keyword arguments.

        Returns:
            What ``func`` returned.

        Raises:
            UnableToFindCandidate: ``remote_process`` is not connected.
            GlobalContextError: ``remote_process`` does not run transferred functions (it was
                created without ``allow_transfer=True``), or cloudpickle is not installed.
            ArgumentsError: ``func`` is not callable, is a generator function, or does not
                take these arguments.
            PayloadEncodeError: ``func`` or its arguments do not pickle, or its result cannot
                be sent back.
            RemoteCallError: ``func`` raised (also an instance of a built-in exception's type,
                as for callbacks).
        """
        transfer = Transfer.pack(func, args, kwargs)  # pickled in this thread
        return self._runtime.blocking(
            "transfer_and_call",
            "transfer_and_call_async",
            transfer.send,
            self._runtime,
            remote_process,
        )

    async def transfer_and_call_async(
        self, remote_process: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Async twin of :meth:`transfer_and_call`, with the same arguments, result and
        exceptions; the remote run ends with the caller's cancel scope (its deadline travels
        with the call)."""
        transfer = Transfer.pack(func, args, kwargs)
        return await self._runtime.run_on_loop(transfer.send, self._runtime, remote_process)

    # ------------------------------------------------------------------ waiting

    def wait_process(self, process_name: str, timeout: float | None = None) -> None:
        """Block until ``process_name`` is connected (this process counts).

        Raises:
            TimeoutError: not connected within ``timeout`` seconds.
        """
        self._runtime.blocking(
            "wait_process", "wait_process_async", self._wait_process, process_name, timeout
        )

    async def wait_process_async(self, process_name: str, timeout: float | None = None) -> None:
        """Wait until ``process_name`` is connected (this process counts)."""
        await self._runtime.run_on_loop(self._wait_process, process_name, timeout)

    def wait_function(self, func_name: str, timeout: float | None = None) -> None:
        """Block until another process offers callback ``func_name``.

        Raises:
            TimeoutError: nobody offers it within ``timeout`` seconds.
        """
        self._runtime.blocking(
            "wait_function", "wait_function_async", self._wait_function, func_name, timeout
        )

    async def wait_function_async(self, func_name: str, timeout: float | None = None) -> None:
        """Wait until another process offers callback ``func_name``."""
        await self._runtime.run_on_loop(self._wait_function, func_name, timeout)

    async def _wait_process(self, process_name: str, timeout: float | None) -> None:
        await self._runtime.require_node().wait_process(process_name, timeout)

    async def _wait_function(self, func_name: str, timeout: float | None) -> None:
        await self._runtime.require_node().wait_function(func_name, timeout)

    # ------------------------------------------------------------------ introspection

    @property
    def is_controller(self) -> bool:
        return self.init_controller

    @property
    def call(self) -> RemoteCalls:
        """Calls by name, with no fetcher declared (daffi 2's ``g.call``): ``g.call.add(1, 2)
        & FG``, ``(g.call.add & FG)(1, 2)``, ``await g.call.add(1, 2).fg_async()``."""
        return self._calls

    @property
    def registered_callbacks(self) -> dict[str, dict[str, CallbackInfo]]:
        """``{process_name: {callback_name: info}}`` for every other connected process."""
        node = self._runtime.node
        if node is None:
            controller = self._runtime.controller
            if controller is None:
                return {}
            return {name: dict(peer.callbacks) for name, peer in controller.peers.items()}
        return {name: dict(callbacks) for name, callbacks in node.peers.items()}

    @property
    def nodes(self) -> dict[str, NodeInfo]:
        """``{process_name: NodeInfo}`` for every other connected process: its address as the
        controller sees it, since when it is connected, the callbacks it offers."""
        node, controller = self._runtime.node, self._runtime.controller
        if node is not None:
            return node.directory.nodes()
        peers = {} if controller is None else controller.peers
        return {n: NodeInfo.of(n, p.callbacks, p.address, p.since) for n, p in peers.items()}

    @contextlib.contextmanager
    def as_current(self) -> Any:
        """Make fetchers called in this ``with`` block (this thread/task) use this Global."""
        token = current_var.set(self)
        try:
            yield self
        finally:
            current_var.reset(token)

    def __repr__(self) -> str:
        parts = [repr(self.process_name), str(self.address)]
        if self.init_controller:
            parts.append("controller")
        if self.init_node:
            parts.append("node")
        runtime = self._runtime
        state = "stopped" if runtime.stopped else "running" if runtime.started else "not started"
        return f"<Global {' '.join(parts)} {state}>"


def get_g() -> Global:
    """The Global of the calling context: inside a callback, the one running it; inside
    ``async with Global(...)`` or ``with g.as_current():``, that one; elsewhere the most
    recently started Global of this process that still runs.

    Raises:
        GlobalContextError: no Global runs in this process (the message says which stopped).
    """
    return cast("Global", current_global())
