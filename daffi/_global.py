"""``Global``: starts the controller and/or node of this process and is the face users call.

Three ways to run (see docs/design.md):

* constructed outside an event loop: starts at once in a background daemon thread that runs
  the async core; blocking methods call through a ``BlockingPortal``; stopped at exit.
* ``async with Global(...) as g`` (asyncio or trio): runs in the caller's loop and task group.
* constructed inside a running loop and never entered: starts in a background thread at
  first use (daffi 2 style async apps).
"""

from __future__ import annotations

import atexit
import builtins
import concurrent.futures
import contextlib
import inspect
import logging
import os
import socket
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.abc
import msgspec
import sniffio
from anyio.from_thread import BlockingPortal

from daffi import _context
from daffi._calls import UploadGroup
from daffi._connection import DEFAULT_MAX_FRAME_SIZE, Connection
from daffi._controller import Controller
from daffi._crossloop import loop_call_soon, run_in_portal
from daffi._dispatch import SYSTEM_CANCEL_SCHEDULE, SYSTEM_LIST_SCHEDULES
from daffi._local_link import LocalConnection
from daffi._node import Node
from daffi._protocol import CallbackInfo, ScheduleSpec
from daffi._results import AsyncResult, ScheduledTask
from daffi._streams import CREDIT_BATCH, AsyncDownloadProxy, Download, SyncDownload, take_batch
from daffi.exceptions import (
    DaffiError,
    GlobalContextError,
    InitializationError,
    TimeoutError,
    UnableToFindCandidate,
)
from daffi.execution_modifiers import BG, BROADCAST, FG, PERIOD, ExecModifier
from daffi.registry._store import CallbackRegistry, default_registry
from daffi.transports import PLAIN_SOCKET, Address, get_transport

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["Global"]

logger = logging.getLogger("daffi.global")

T = TypeVar("T")
Hook = Callable[..., Any]
Arguments = tuple[tuple[Any, ...], dict[str, Any]]

#: seconds the goodbye to peers may take when a Global stops (however it stops)
GOODBYE_TIMEOUT = 1.0


def _new_uuid() -> str:
    import uuid  # only schedules need it (uuid imports platform: start-up time)

    return uuid.uuid4().hex


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _ThreadStarted:
    """A task status that wakes the thread that started the background loop."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def started(self, value: object = None) -> None:
        self.event.set()


class Global:
    """The daffi runtime of this process: a controller, a node, or both.

    Args:
        process_name: this process's unique name (default: a random short hex string).
        init_controller: run the controller in this process.
        init_node: run a node (offer callbacks, call fetchers) in this process.
        host: TCP host to listen on (controller) or connect to (node).
        port: TCP port; a controller without one picks a free port (see :attr:`port`).
        unix_sock_path: directory of the Unix socket (default: a private per-user directory
            under the temp dir); used when no ``host`` is given.
        ssl_certificate: TLS certificate file (TLS is not supported yet: giving it raises
            ``InitializationError`` rather than running in plaintext).
        ssl_key: TLS key file (see ``ssl_certificate``).
        on_init: ``hook(g, process_name)`` once when started (sync or async).
        on_node_connect: ``hook(g, process_name)`` for every node that joins, this one
            included (sync or async).
        on_node_disconnect: ``hook(g, process_name)`` for every node that leaves, this one
            included (sync or async).
        address: ``"scheme://..."`` for any registered transport, instead of host/port/unix.
        backend: event loop of the background thread, ``"asyncio"`` (default) or ``"trio"``.
        connect_timeout: seconds a node waits for its controller before the constructor
            raises ``InitializationError``; ``None`` waits forever.
        registry: the callbacks this node offers (default: the process-wide registry).
        workers: how many sync callbacks may run at once (worker threads).
        max_frame_size: largest frame accepted from a peer, in bytes.
        heartbeat_interval: seconds between pings; a peer silent for 3 intervals is dead.
        max_concurrent_calls: incoming calls running at once beyond which new ones are
            refused with ``GlobalContextError`` at the caller.
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
    ) -> None:
        if not init_controller and not init_node:
            raise InitializationError(
                "No components were found in current process. Provide at least one required "
                "argument `init_controller=True` or `init_node=True`."
            )
        if process_name is None:
            process_name = hex(int.from_bytes(os.urandom(4), "big"))
        self.process_name = str(process_name)
        if not self.process_name:
            raise InitializationError("process_name must not be empty")
        self.init_controller = bool(init_controller)
        self.init_node = bool(init_node)
        if ssl_certificate is not None or ssl_key is not None:
            raise InitializationError(
                "TLS (ssl_certificate/ssl_key) is not supported by this version of daffi yet; "
                "refusing to fall back to plaintext"
            )
        if backend not in ("asyncio", "trio"):
            raise InitializationError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        if workers < 1:
            raise InitializationError(f"workers must be at least 1, not {workers!r}")
        for hook_name, hook in (
            ("on_init", on_init),
            ("on_node_connect", on_node_connect),
            ("on_node_disconnect", on_node_disconnect),
        ):
            if hook is not None and not callable(hook):
                raise InitializationError(f"{hook_name} must be callable, not {hook!r}")
        self.address = self._resolve_address(address, host, port, unix_sock_path)
        self.host = self.address.host
        self.port: int | None = self.address.port
        self.on_init = on_init
        self.on_node_connect = on_node_connect
        self.on_node_disconnect = on_node_disconnect
        self.backend = backend
        self.connect_timeout = connect_timeout
        self.registry = registry if registry is not None else default_registry
        self.workers = workers
        self.max_frame_size = max_frame_size
        self.heartbeat_interval = heartbeat_interval
        self.max_concurrent_calls = max_concurrent_calls

        self._controller: Controller | None = None
        self._node: Node | None = None
        self._portal: BlockingPortal | None = None
        self._loop_thread: int | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: anyio.Event | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._done = threading.Event()
        #: the error that stopped the core, if one did (see _run_core)
        self._crash: BaseException | None = None
        self._start_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._in_loop: tuple[BlockingPortal, anyio.abc.TaskGroup] | None = None
        self._context_token: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._scheduled: weakref.WeakValueDictionary[str, ScheduledTask] = (
            weakref.WeakValueDictionary()
        )

        try:
            sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            self._start_in_thread()

    # ------------------------------------------------------------------ configuration

    def _resolve_address(
        self,
        address: str | None,
        host: str | None,
        port: int | str | None,
        unix_sock_path: str | os.PathLike[str] | None,
    ) -> Address:
        if address is not None:
            if host is not None or port is not None or unix_sock_path is not None:
                raise InitializationError(
                    "Provide either 'address' or host/port/unix_sock_path, not both"
                )
            try:
                return Address.parse(address)
            except ValueError as exc:
                raise InitializationError(str(exc)) from None
        if host is not None and unix_sock_path is not None:
            raise InitializationError(
                "Provide either 'unix_sock_path' argument or combination of 'host' and 'port' "
                "to connect via unix socket or via tcp respectively"
            )
        if host is not None:
            return Address("tcp", host=str(host), port=self._validate_port(port))
        if port is not None:
            raise InitializationError("port was given without host; pass host='127.0.0.1' too")
        if os.name == "nt":
            raise InitializationError(
                "Windows platform doesn't support unix sockets. Provide host and port to use TCP"
            )
        directory = os.fspath(unix_sock_path) if unix_sock_path is not None else None
        if directory is None:
            from daffi.transports.unix import default_unix_socket_dir

            directory = default_unix_socket_dir()
        return Address("unix", path=os.path.join(directory, "daffi.sock"))

    def _validate_port(self, port: int | str | None) -> int:
        if port is None:
            if self.init_controller:
                return 0
            raise InitializationError(
                "a node needs the controller's port: pass port=... (only a controller may omit "
                "it to pick a free one)"
            )
        try:
            value = int(port)
        except (TypeError, ValueError):
            raise InitializationError(f"port must be an integer, not {port!r}") from None
        if not 0 <= value <= 65535 or (value == 0 and not self.init_controller):
            raise InitializationError(f"port {port!r} is out of range (1..65535)")
        return value

    # ------------------------------------------------------------------ the async core

    async def _run_core(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Run the controller and/or node until stopped, then say goodbye and unwind.

        Once started, the core is shielded from cancellations of the scopes around it: it
        ends when :meth:`stop` (or leaving ``async with``, which always happens, whatever
        ends the block) sets the stop event, so ``Bye`` is sent on every exit. An error in
        one of its tasks ends it too; it is kept in ``_crash`` and raised by later calls
        (as their cause) and by :meth:`join`.
        """
        self._stop_event = anyio.Event()
        try:
            with anyio.CancelScope() as core_scope:
                async with anyio.create_task_group() as tg:
                    self._task_group = tg
                    try:
                        await self._start_components(tg)
                        self._unsubscribe = self.registry.subscribe(self._registry_changed)
                        _context.remember(self)
                        core_scope.shield = True
                        self._started = True
                        task_status.started()
                        if self.on_init is not None:
                            tg.start_soon(self._run_hook, self.on_init, self.process_name)
                        await self._stop_event.wait()
                    finally:
                        # Not after a crash of one of its tasks (the stop event is not set
                        # then): peers must tell a crash from a clean leave.
                        if self._stop_event.is_set() or not self._started:
                            await self._say_goodbye()
                        tg.cancel_scope.cancel()
        except BaseException as exc:
            if self._started and not isinstance(exc, anyio.get_cancelled_exc_class()):
                self._crashed(_unwrap(exc))
            raise
        finally:
            self._stopped = True
            self._stop_event.set()  # wakes join_async() on this loop, whatever ended the core
            _context.forget(self)
            if self._unsubscribe is not None:
                self._unsubscribe()
            self._task_group = None

    async def _say_goodbye(self) -> None:
        """Send ``Bye`` to the peers: shielded (it runs while being cancelled) and bounded."""
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + GOODBYE_TIMEOUT
            if self._node is not None:
                await self._node.goodbye()
            if self._controller is not None:
                await self._controller.goodbye()

    def _crashed(self, error: BaseException) -> None:
        """Keep the error that ended the core (the first one) and log it."""
        if self._crash is not None:
            return
        self._crash = error
        logger.critical(
            "daffi %r stopped because of an error; later calls raise GlobalContextError "
            "(caused by it) and join() raises it",
            self.process_name,
            exc_info=error,
        )

    def _stopped_error(self) -> GlobalContextError:
        """The error raised by a call made after this Global stopped (caused by the crash
        that stopped it, if one did)."""
        crash = self._crash
        if crash is None:
            return GlobalContextError(
                "Global can no longer accept remote calls because it was stopped"
            )
        error = GlobalContextError(
            f"Global {self.process_name!r} stopped because of an error: {crash!r}"
        )
        error.__cause__ = crash
        return error

    async def _start_components(self, tg: anyio.abc.TaskGroup) -> None:
        if self.init_controller:
            self._controller = Controller(
                self.process_name,
                [self.address],
                on_node_event=None if self.init_node else self._node_event,
                max_frame_size=self.max_frame_size,
                heartbeat_interval=self.heartbeat_interval,
            )
            try:
                bound = await tg.start(self._controller.serve)
            except OSError as exc:
                raise InitializationError(
                    f"controller {self.process_name!r} cannot listen on {self.address}: {exc}"
                ) from exc
            self.address = bound[0]
            self.port = self.address.port
        if not self.init_node:
            return
        self._node = Node(
            self.process_name,
            self.registry,
            self._local_connector(tg) if self._controller else self._remote_connector(),
            controller_label=str(self.address),
            on_node_event=self._node_event,
            workers=self.workers,
            max_frame_size=self.max_frame_size,
            heartbeat_interval=self.heartbeat_interval,
            max_concurrent_calls=self.max_concurrent_calls,
            open_channel=None if self._controller else self._channel_opener(),
        )
        self._node.dispatch.on_schedule_error = self._schedule_failed
        await tg.start(self._node.run)
        try:
            with anyio.fail_after(self.connect_timeout):
                await self._node.wait_connected()
        except builtins.TimeoutError as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise InitializationError(
                f"node {self.process_name!r} could not reach a controller at {self.address} "
                f"within {self.connect_timeout} s (connect_timeout); is the controller running?"
            ) from None

    def _local_connector(self, tg: anyio.abc.TaskGroup) -> Callable[[], Awaitable[Any]]:
        controller = self._controller
        assert controller is not None

        async def connect() -> LocalConnection:
            ours, theirs = LocalConnection.pair()
            tg.start_soon(controller.handle_connection, theirs)
            return ours

        return connect

    def _remote_connector(self) -> Callable[[], Awaitable[Connection]]:
        transport = get_transport(self.address.scheme)
        address = self.address
        max_frame_size = self.max_frame_size
        # Decided once per transport: may its connections bypass the stream?
        plain_socket = PLAIN_SOCKET in transport.capabilities

        async def connect() -> Connection:
            stream = await transport.connect(address)
            return Connection(
                stream,
                max_frame_size=max_frame_size,
                peer="the controller",
                plain_socket=plain_socket,
            )

        return connect

    def _channel_opener(self) -> Callable[[float], socket.socket | None] | None:
        """Opens the blocking sockets of call and work channels; None (sync calls go through
        the loop) unless the transport declares PLAIN_SOCKET: a channel writes daffi's
        frames to its socket unchanged."""
        transport = get_transport(self.address.scheme)
        if PLAIN_SOCKET not in transport.capabilities:
            return None
        address = self.address

        def open_channel(timeout: float) -> socket.socket | None:
            return transport.connect_blocking(address, timeout)

        return open_channel

    def _registry_changed(self) -> None:
        node, portal = self._node, self._portal
        if node is None or portal is None or self._stopped:
            return
        if threading.get_ident() == self._loop_thread:
            if self._task_group is not None:
                self._task_group.start_soon(node.advertise)
        else:
            with contextlib.suppress(RuntimeError):
                portal.start_task_soon(node.advertise)

    async def _node_event(self, name: str, joined: bool) -> None:
        hook = self.on_node_connect if joined else self.on_node_disconnect
        if hook is not None and self._task_group is not None:
            self._task_group.start_soon(self._run_hook, hook, name)

    async def _run_hook(self, hook: Hook, name: str) -> None:
        try:
            if inspect.iscoroutinefunction(hook):
                await hook(self, name)
            else:
                # In a worker thread, so the hook may call blocking Global methods.
                result = await anyio.to_thread.run_sync(hook, self, name, abandon_on_cancel=True)
                if inspect.isawaitable(result):
                    await result
        except Exception:
            logger.exception("hook %r failed for process %r", hook, name)

    # ------------------------------------------------------------------ starting

    def _start_in_thread(self) -> None:
        with self._start_lock:
            if self._started or self._thread is not None:
                return
            if self._stopped:
                raise GlobalContextError("this Global was stopped; create a new one")
            ready = threading.Event()
            failure: list[BaseException] = []

            async def main() -> None:
                async with BlockingPortal() as portal:
                    self._portal = portal
                    self._loop_thread = threading.get_ident()
                    try:
                        await self._run_core(task_status=_ThreadStarted(ready))
                    finally:
                        await portal.stop(cancel_remaining=True)

            def target() -> None:
                try:
                    anyio.run(main, backend=self.backend)
                except BaseException as exc:
                    error = _unwrap(exc)
                    if ready.is_set():
                        # The constructor has returned: later calls and join() raise it.
                        self._crashed(error)
                    else:
                        failure.append(error)  # raised by the constructor
                finally:
                    _context.forget(self)
                    self._stopped = True
                    self._done.set()
                    ready.set()

            self._thread = threading.Thread(
                target=target, name=f"daffi-{self.process_name}", daemon=True
            )
            self._thread.start()
            ready.wait()
            if failure:
                self._thread.join()
                raise failure[0]
            atexit.register(self._stop_at_exit)

    async def _ensure_started(self) -> None:
        if not self._started and not self._stopped:
            await anyio.to_thread.run_sync(self._start_in_thread)
        if self._stopped:
            raise self._stopped_error()

    async def __aenter__(self) -> Global:
        if self._started or self._thread is not None:
            return self  # already running in its background thread
        portal = BlockingPortal()
        await portal.__aenter__()
        self._portal = portal
        self._loop_thread = threading.get_ident()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._in_loop = (portal, tg)
        try:
            await tg.start(self._run_core)
        except BaseException as exc:
            # Unwind daffi's task groups without feeding them the error (they would wrap it
            # in exception groups), then raise the error itself.
            with contextlib.suppress(BaseException):
                await self._leave_loop()
            raise _unwrap(exc) from None
        self._context_token = _context.current_var.set(self)
        return self

    async def _leave_loop(self) -> None:
        """Unwind what ``__aenter__`` entered, innermost first.

        Plain try/finally rather than an ``AsyncExitStack``: when two exits raise the same
        cancellation exception, the exit stack links it to itself as its own ``__context__``,
        and asyncio then loops forever walking that chain.
        """
        in_loop, self._in_loop = self._in_loop, None
        if in_loop is None:
            return
        portal, tg = in_loop
        try:
            await tg.__aexit__(None, None, None)
        finally:
            try:
                # The portal's task group encloses the core's: stop it (cancelling calls in
                # flight from other threads) only after the core has said goodbye.
                await portal.stop(cancel_remaining=True)
            finally:
                try:
                    await portal.__aexit__(None, None, None)
                finally:
                    self._stopped = True
                    self._done.set()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._in_loop is None:
            await self.stop_async()
            return
        if self._context_token is not None:
            _context.current_var.reset(self._context_token)
            self._context_token = None
        if self._stop_event is not None:
            self._stop_event.set()
        # The body's exception is not fed to daffi's task groups: they would wrap it in
        # exception groups; it propagates unchanged once daffi has stopped.
        try:
            await self._leave_loop()
        except BaseException as error:
            if self._crash is None or isinstance(error, anyio.get_cancelled_exc_class()):
                raise
            if exc is None:
                raise self._stopped_error() from self._crash
            # The body's own exception propagates; the crash was logged.
        if exc is None and self._crash is not None:
            raise self._stopped_error() from self._crash

    def __enter__(self) -> Global:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is None and self._crash is not None:
            raise self._stopped_error() from self._crash

    # ------------------------------------------------------------------ stopping

    def stop(self) -> None:
        """Stop this Global: say goodbye to peers, cancel everything it runs, close sockets.

        From the thread of daffi's own event loop (``async with`` apps) this only requests
        the stop; leaving the ``async with`` block (or :meth:`stop_async`) completes it.
        """
        if self._stopped or self._stop_event is None:
            self._stopped = True
            return
        if threading.get_ident() == self._loop_thread:
            self._stop_event.set()
            return
        portal = self._portal
        if portal is not None:
            with contextlib.suppress(RuntimeError):
                portal.call(self._stop_event.set)
        if self._thread is not None:
            self._thread.join(timeout=5)
            atexit.unregister(self._stop_at_exit)
        else:
            self._done.wait(timeout=5)

    async def stop_async(self) -> None:
        """Stop this Global and wait until it has stopped (any loop, any thread)."""
        if self._stopped or self._stop_event is None:
            self._stopped = True
            return
        if threading.get_ident() == self._loop_thread:
            self._stop_event.set()
            if self._in_loop is not None:
                return  # leaving `async with` completes the stop
            return
        await anyio.to_thread.run_sync(self.stop)

    def _stop_at_exit(self) -> None:
        try:
            self.stop()
        except Exception:  # at exit nothing is left to report to
            logger.debug("error while stopping at exit", exc_info=True)

    def join(self) -> None:
        """Block until this Global is stopped (by :meth:`stop` in another thread, or a hook).

        Raises:
            GlobalContextError: daffi stopped because of an internal error (its
                ``__cause__``), not because it was asked to.
        """
        self._check_blocking("join", "join_async")
        self._done.wait()
        self._raise_crash()

    async def join_async(self) -> None:
        """Wait until this Global is stopped (raises like :meth:`join`)."""
        if not self._started and not self._stopped:
            await self._ensure_started()
        if threading.get_ident() == self._loop_thread and self._stop_event is not None:
            await self._stop_event.wait()
        else:
            await anyio.to_thread.run_sync(self._done.wait, abandon_on_cancel=True)
        self._raise_crash()

    def _raise_crash(self) -> None:
        if self._crash is not None:
            raise self._stopped_error() from self._crash

    # ------------------------------------------------------------------ sync/async bridge

    def _check_blocking(self, method: str, twin: str) -> None:
        if self._loop_thread is not None and threading.get_ident() == self._loop_thread:
            raise GlobalContextError(
                f"{method}() blocks, and it was called from the thread that runs daffi's event "
                f"loop, where it would deadlock; use `await g.{twin}(...)` instead"
            )

    def _blocking(self, method: str, twin: str, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        self._check_blocking(method, twin)
        if not self._started and not self._stopped:
            self._start_in_thread()
        portal = self._portal
        if self._stopped or portal is None:
            raise self._stopped_error()
        try:
            return portal.call(func, *args)
        except RuntimeError as exc:
            if "portal is not running" in str(exc) or "event loop" in str(exc):
                error = self._stopped_error()
                raise error from error.__cause__
            raise

    async def _await(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        await self._ensure_started()
        if threading.get_ident() == self._loop_thread:
            return await func(*args)
        portal = self._portal
        assert portal is not None
        return await run_in_portal(portal, func, *args)

    def _require_node(self) -> Node:
        if self._node is None:
            raise GlobalContextError(
                "Support for invoking remote calls is not enabled in this process: it runs only "
                "the controller (init_node=False)"
            )
        return self._node

    # ------------------------------------------------------------------ calls

    def _on_loop_thread(self) -> bool:
        return self._loop_thread is not None and threading.get_ident() == self._loop_thread

    def _spawn(self, func: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``func(*args)`` on daffi's loop in the background; its future, from any thread.

        The future stays cancellable while the task runs: cancelling it cancels the task
        (and so the remote call it makes).
        """
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        async def fill() -> None:
            with anyio.CancelScope() as scope:
                if fut.cancelled():
                    return
                call_soon = loop_call_soon()

                def on_done(done: concurrent.futures.Future[T]) -> None:
                    if done.cancelled():
                        call_soon(scope.cancel)

                fut.add_done_callback(on_done)
                try:
                    result = await func(*args)
                except BaseException as exc:
                    if not fut.done():
                        fut.set_exception(
                            exc if isinstance(exc, Exception) else self._stopped_error()
                        )
                    if not isinstance(exc, Exception):
                        raise
                    return
                if not fut.done():
                    fut.set_result(result)

        if self._on_loop_thread():
            if self._task_group is None:
                raise self._stopped_error()
            self._task_group.start_soon(fill)
        else:
            portal = self._portal
            if portal is None or self._stopped:
                raise self._stopped_error()
            portal.start_task_soon(fill)
        return fut

    async def _run_modifier(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: ExecModifier,
        structure: Callable[[Any], Any] | None,
    ) -> Any:
        node = self._require_node()
        if isinstance(modifier, FG):
            payload, info = node.prepare_info(name, args, kwargs, modifier.receiver)
            if info.is_generator:
                return await node.open_download(
                    name,
                    payload,
                    receiver=modifier.receiver,
                    timeout=modifier.timeout,
                    structure=structure,
                )
            return await node.roundtrip(
                name,
                payload,
                receiver=modifier.receiver,
                timeout=modifier.timeout,
                structure=structure,
            )
        if isinstance(modifier, BROADCAST):
            targets = node.broadcast_targets(name)
            payload, info = node.prepare_info(name, args, kwargs, targets[0])
            if modifier.eta:
                await anyio.sleep(modifier.eta)
            return await node.broadcast(
                name,
                payload,
                targets,
                timeout=modifier.timeout,
                structure=structure,
                stream=info.is_generator,
            )
        if isinstance(modifier, PERIOD):
            return await self._schedule(node, name, args, kwargs, modifier)
        raise GlobalContextError(f"unexpected execution modifier {modifier!r}")

    def _start_background(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: BG | BROADCAST,
        structure: Callable[[Any], Any] | None,
    ) -> AsyncResult | None:
        node = self._require_node()
        if isinstance(modifier, BG):
            targets = [modifier.receiver] if modifier.receiver is not None else [None]
            payload, info = node.prepare_info(name, args, kwargs, modifier.receiver)
        else:
            targets = list(node.broadcast_targets(name))
            payload, info = node.prepare_info(name, args, kwargs, targets[0])
        if not modifier.return_result:
            self._spawn(self._send_later, node, name, payload, targets, modifier.eta)
            return None
        assert isinstance(modifier, BG)
        if (
            not self._on_loop_thread()
            and modifier.timeout is None
            and not modifier.eta
            and not info.is_generator
        ):
            # From any other thread: the call goes out from it and the receive loop resolves
            # the future; no task on daffi's loop (the same meaning as _call_later's).
            future = node.call_in_background(
                name, payload, receiver=modifier.receiver, structure=structure
            )
            if future is not None:
                return AsyncResult(future, self, name)
        fut = self._spawn(
            self._call_later, node, name, payload, modifier, structure, info.is_generator
        )
        return AsyncResult(fut, self, name)

    async def _send_later(
        self, node: Node, name: str, payload: Any, targets: list[str | None], eta: float | None
    ) -> None:
        if eta:
            await anyio.sleep(eta)
        for target in targets:
            try:
                await node.send_nowait(name, payload, target)
            except Exception as exc:  # fire-and-forget: nobody to tell but the log
                logger.warning("fire-and-forget call %r to %s failed: %s", name, target, exc)

    async def _call_later(
        self,
        node: Node,
        name: str,
        payload: Any,
        modifier: BG,
        structure: Callable[[Any], Any] | None,
        stream: bool,
    ) -> Any:
        if modifier.eta:
            await anyio.sleep(modifier.eta)
        if stream:  # a generator callback: the result is the list of its values
            download = await node.open_download(
                name,
                payload,
                receiver=modifier.receiver,
                timeout=modifier.timeout,
                structure=structure,
            )
            return await download.collect()
        return await node.roundtrip(
            name,
            payload,
            receiver=modifier.receiver,
            timeout=modifier.timeout,
            structure=structure,
        )

    async def _schedule(
        self,
        node: Node,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: PERIOD,
    ) -> ScheduledTask:
        payload = node.prepare(name, args, kwargs, modifier.receiver)
        spec = ScheduleSpec(_new_uuid(), modifier.kind, modifier.interval, modifier.at_time or ())
        ack = await node.roundtrip(name, payload, receiver=modifier.receiver, schedule=spec)
        task = ScheduledTask(str(ack["uuid"]), str(ack["func_name"]), str(ack["receiver"]), self)
        self._scheduled[task.uuid] = task
        return task

    def _schedule_failed(self, schedule_uuid: str, error: DaffiError) -> None:
        task = self._scheduled.get(schedule_uuid)
        if task is not None:
            task.last_error = error

    async def _system_call(self, receiver: str, name: str, *args: Any) -> Any:
        node = self._require_node()
        if receiver == node.name:
            return await node.dispatch.local_system_call(name, args)
        if receiver not in node.peers:
            raise UnableToFindCandidate(f"process {receiver!r} is not connected")
        payload = msgspec.Raw(node.codec.encode_args(args, {}))
        return await node.roundtrip(name, payload, receiver=receiver)

    async def _cancel_schedule(self, receiver: str, schedule_uuid: str) -> bool:
        return bool(await self._system_call(receiver, SYSTEM_CANCEL_SCHEDULE, schedule_uuid))

    def _execute(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: ExecModifier,
        structure: Callable[[Any], Any] | None,
    ) -> Any:
        if isinstance(modifier, BG) or (
            isinstance(modifier, BROADCAST) and not modifier.return_result
        ):
            if not self._started and not self._stopped:
                self._start_in_thread()
            if self._stopped:
                raise self._stopped_error()
            return self._start_background(name, args, kwargs, modifier, structure)
        if self._on_loop_thread():
            raise GlobalContextError(
                f"fetcher {name!r} is a `def` fetcher and blocks, but it was called from the "
                "thread that runs daffi's event loop; declare it `async def` and await it, or "
                "call it from a worker thread (anyio.to_thread.run_sync)"
            )
        node = self._node
        if node is not None and self._started and not self._stopped:
            # Fast paths: the calling thread sends and waits itself, no portal crossing.
            if isinstance(modifier, FG):
                handled, value = node.call_from_thread(
                    name,
                    args,
                    kwargs,
                    receiver=modifier.receiver,
                    timeout=modifier.timeout,
                    structure=structure,
                )
                if handled:
                    return value
            elif isinstance(modifier, BROADCAST) and not modifier.eta:
                handled, value = node.broadcast_from_thread(
                    name, args, kwargs, timeout=modifier.timeout, structure=structure
                )
                if handled:
                    return value
        result = self._blocking(
            "fetcher", "fetcher", self._run_modifier, name, args, kwargs, modifier, structure
        )
        if isinstance(result, Download):
            assert self._portal is not None
            return SyncDownload(result, self._portal)
        return result

    async def _execute_async(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        modifier: ExecModifier,
        structure: Callable[[Any], Any] | None,
    ) -> Any:
        node = self._node
        if type(modifier) is FG and node is not None and self._on_loop_thread():
            # The common case, kept short: an FG call from daffi's own loop.
            payload, info = node.prepare_info(name, args, kwargs, modifier.receiver)
            if not info.is_generator and not self._stopped:
                return await node.roundtrip(
                    name,
                    payload,
                    receiver=modifier.receiver,
                    timeout=modifier.timeout,
                    structure=structure,
                )
        elif type(modifier) is FG:
            # Awaited on another loop (a daffi-2-style app whose Global runs in a thread of
            # its own): the call goes out from this thread, and only its answer crosses.
            await self._ensure_started()
            node = self._node
            if node is not None:
                payload, info = node.prepare_info(name, args, kwargs, modifier.receiver)
                if not info.is_generator:
                    sent, value = await node.call_from_other_loop(
                        name,
                        payload,
                        receiver=modifier.receiver,
                        timeout=modifier.timeout,
                        structure=structure,
                    )
                    if sent:
                        return value
        if isinstance(modifier, BG) or (
            isinstance(modifier, BROADCAST) and not modifier.return_result
        ):
            await self._ensure_started()
            return self._start_background(name, args, kwargs, modifier, structure)
        result = await self._await(self._run_modifier, name, args, kwargs, modifier, structure)
        if isinstance(result, Download) and not self._on_loop_thread():
            assert self._portal is not None
            return AsyncDownloadProxy(result, self._portal)
        return result

    # ------------------------------------------------------------------ streaming fetchers

    async def _open_uploads(self, name: str, modifier: ExecModifier) -> UploadGroup:
        node = self._require_node()
        if isinstance(modifier, BROADCAST):
            receivers: list[str | None] = list(node.broadcast_targets(name))
        elif isinstance(modifier, FG | BG):
            receivers = [modifier.receiver]
        else:
            raise GlobalContextError(
                f"a generator fetcher streams its items; {type(modifier).__name__} cannot "
                "stream (use FG, BG or BROADCAST)"
            )
        return await node.open_uploads(
            name, receivers, timeout=modifier.timeout, broadcast=isinstance(modifier, BROADCAST)
        )

    def _stream_in(self, name: str, items: Iterator[Arguments], modifier: ExecModifier) -> Any:
        """Send a sync generator fetcher's items (driven in the calling thread)."""
        if isinstance(modifier, BG):
            if not self._started and not self._stopped:
                self._start_in_thread()
            fut = self._spawn(self._stream_in_background, name, items, modifier)
            return AsyncResult(fut, self, name)
        if self._on_loop_thread():
            raise GlobalContextError(
                f"fetcher {name!r} is a `def` generator and blocks, but it was called from the "
                "thread that runs daffi's event loop; make it `async def` or use BG"
            )
        group: UploadGroup = self._blocking(
            "fetcher", "fetcher", self._open_uploads, name, modifier
        )
        portal = self._portal
        assert portal is not None
        try:
            while True:
                batch, exhausted, error = take_batch(items, CREDIT_BATCH)
                if batch:
                    portal.call(group.push, batch)
                if error is not None:
                    raise error
                if exhausted:
                    break
            return portal.call(group.finish)
        except BaseException:
            with contextlib.suppress(Exception):
                portal.call(group.abort)
            raise

    async def _stream_in_background(
        self, name: str, items: Iterator[Arguments], modifier: ExecModifier
    ) -> Any:
        group = await self._open_uploads(name, modifier)
        try:
            while True:
                batch, exhausted, error = await anyio.to_thread.run_sync(
                    take_batch, items, CREDIT_BATCH, abandon_on_cancel=True
                )
                if batch:
                    await group.push(batch)
                if error is not None:
                    raise error
                if exhausted:
                    return await group.finish()
        except BaseException:
            await group.abort()
            raise

    async def _stream_in_async(
        self, name: str, items: AsyncIterator[Arguments], modifier: ExecModifier
    ) -> Any:
        """Send an async generator fetcher's items (driven in the caller's loop)."""
        await self._ensure_started()
        on_loop = self._on_loop_thread()
        if isinstance(modifier, BG):
            if not on_loop:
                raise GlobalContextError(
                    "BG with an `async def` generator fetcher needs the fetcher to run in "
                    "daffi's own loop: use `async with Global(...)`, FG, or a `def` generator"
                )
            fut = self._spawn(self._drive_async, name, items, modifier)
            return AsyncResult(fut, self, name)
        if on_loop:
            return await self._drive_async(name, items, modifier)
        portal = self._portal
        assert portal is not None
        group = await run_in_portal(portal, self._open_uploads, name, modifier)
        try:
            async for item in items:
                await run_in_portal(portal, group.push, [item])
            return await run_in_portal(portal, group.finish)
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await run_in_portal(portal, group.abort)
            raise

    async def _drive_async(
        self, name: str, items: AsyncIterator[Arguments], modifier: ExecModifier
    ) -> Any:
        group = await self._open_uploads(name, modifier)
        try:
            async for item in items:
                await group.push([item])
            return await group.finish()
        except BaseException:
            await group.abort()
            raise

    # ------------------------------------------------------------------ schedules

    def get_scheduled_tasks(self, remote_process: str) -> list[dict[str, Any]]:
        """The schedules running on ``remote_process``: uuid, func_name, kind, next_run
        (UTC epoch), runs, requester, and the interval or at_time list."""
        result: list[dict[str, Any]] = self._blocking(
            "get_scheduled_tasks",
            "get_scheduled_tasks_async",
            self._system_call,
            remote_process,
            SYSTEM_LIST_SCHEDULES,
        )
        return result

    async def get_scheduled_tasks_async(self, remote_process: str) -> list[dict[str, Any]]:
        """Async twin of :meth:`get_scheduled_tasks`."""
        result: list[dict[str, Any]] = await self._await(
            self._system_call, remote_process, SYSTEM_LIST_SCHEDULES
        )
        return result

    def cancel_scheduled_task_by_uuid(self, remote_process: str, uuid: str) -> bool:
        """Cancel schedule ``uuid`` on ``remote_process``; returns whether it was active."""
        cancelled: bool = self._blocking(
            "cancel_scheduled_task_by_uuid",
            "cancel_scheduled_task_by_uuid_async",
            self._cancel_schedule,
            remote_process,
            uuid,
        )
        return cancelled

    async def cancel_scheduled_task_by_uuid_async(self, remote_process: str, uuid: str) -> bool:
        """Async twin of :meth:`cancel_scheduled_task_by_uuid`."""
        cancelled: bool = await self._await(self._cancel_schedule, remote_process, uuid)
        return cancelled

    # ------------------------------------------------------------------ waiting

    def wait_process(self, process_name: str, timeout: float | None = None) -> None:
        """Block until ``process_name`` is connected (this process counts).

        Raises:
            TimeoutError: not connected within ``timeout`` seconds.
        """
        self._blocking(
            "wait_process", "wait_process_async", self._wait_process, process_name, timeout
        )

    async def wait_process_async(self, process_name: str, timeout: float | None = None) -> None:
        """Wait until ``process_name`` is connected (this process counts)."""
        await self._await(self._wait_process, process_name, timeout)

    def wait_function(self, func_name: str, timeout: float | None = None) -> None:
        """Block until another process offers callback ``func_name``.

        Raises:
            TimeoutError: nobody offers it within ``timeout`` seconds.
        """
        self._blocking(
            "wait_function", "wait_function_async", self._wait_function, func_name, timeout
        )

    async def wait_function_async(self, func_name: str, timeout: float | None = None) -> None:
        """Wait until another process offers callback ``func_name``."""
        await self._await(self._wait_function, func_name, timeout)

    async def _wait_process(self, process_name: str, timeout: float | None) -> None:
        node = self._require_node()
        logger.info("Waiting node: %r", process_name)

        def present() -> bool:
            return process_name in node.peers or (process_name == node.name and node.is_connected)

        await self._wait(node, present, timeout, f"process {process_name!r} to connect")
        logger.info("Node found: %r", process_name)

    async def _wait_function(self, func_name: str, timeout: float | None) -> None:
        node = self._require_node()
        logger.info("Waiting remote callback: %r", func_name)
        await self._wait(
            node, lambda: node.offers(func_name), timeout, f"a process offering {func_name!r}"
        )
        logger.info("Function found: %r", func_name)

    async def _wait(
        self, node: Node, condition: Callable[[], bool], timeout: float | None, what: str
    ) -> None:
        try:
            with anyio.fail_after(timeout):
                await node.wait_until(condition)
        except builtins.TimeoutError as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise TimeoutError(f"gave up waiting for {what} after {timeout} s") from None

    # ------------------------------------------------------------------ introspection

    @property
    def is_controller(self) -> bool:
        return self.init_controller

    @property
    def registered_callbacks(self) -> dict[str, dict[str, CallbackInfo]]:
        """``{process_name: {callback_name: info}}`` for every other connected process."""
        node = self._node
        if node is None:
            if self._controller is None:
                return {}
            return {name: dict(peer.callbacks) for name, peer in self._controller.peers.items()}
        return {name: dict(callbacks) for name, callbacks in node.peers.items()}

    @contextlib.contextmanager
    def as_current(self) -> Any:
        """Make fetchers called in this ``with`` block (this thread/task) use this Global."""
        token = _context.current_var.set(self)
        try:
            yield self
        finally:
            _context.current_var.reset(token)

    def __repr__(self) -> str:
        parts = [repr(self.process_name), str(self.address)]
        if self.init_controller:
            parts.append("controller")
        if self.init_node:
            parts.append("node")
        state = "stopped" if self._stopped else "running" if self._started else "not started"
        return f"<Global {' '.join(parts)} {state}>"
