"""Await work that runs on another thread's event loop, from any asyncio or trio loop."""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import sniffio
from anyio.from_thread import BlockingPortal
from anyio.lowlevel import RunVar

__all__ = [
    "Portal",
    "loop_call_soon",
    "loop_waker",
    "run_in_portal",
    "running_library",
    "spawn_in_running_loop",
    "wait_future",
]

T = TypeVar("T")


def loop_call_soon() -> Callable[[Callable[[], object]], object]:
    """For the running loop: a function that schedules a callback on it from any thread."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        import asyncio

        return asyncio.get_running_loop().call_soon_threadsafe
    if library == "trio":
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    token = anyio.lowlevel.current_token()

    def call_soon(func: Callable[[], object]) -> object:
        return anyio.from_thread.run_sync(func, token=token)

    return call_soon


def running_library() -> str | None:
    """The library of the event loop running in this thread (``"asyncio"`` or ``"trio"``),
    or None outside one. sniffio says which library, and the loop must really run: a
    context variable set by hand (as some test suites do) is not a loop."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None
    if library == "asyncio":
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        return library
    if library == "trio":
        import trio

        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            return None
    return library


#: asyncio keeps only weak references to its tasks: the tasks spawned below are kept here
_spawned: set[Any] = set()


def spawn_in_running_loop(func: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Start ``func()`` as a task of the running loop, called from synchronous code in it.

    The task belongs to no task group of the application: on asyncio it is a plain task
    (cancelled by ``asyncio.run`` when the main coroutine returns), on trio a system task
    (cancelled when the main task ends; the run waits for it). ``func`` must not raise
    anything but the loop's cancellation.
    """
    library = sniffio.current_async_library()
    if library == "trio":
        import trio

        trio.lowlevel.spawn_system_task(func)
        return
    import asyncio

    task = asyncio.get_running_loop().create_task(func())
    _spawned.add(task)
    task.add_done_callback(_spawned.discard)


class _FrameSink(Protocol):
    def send_frames_threadsafe(self, frames: list[bytes | bytearray]) -> None: ...


class LoopWaker:
    """The bridge between one event loop and the threads around it, in bursts.

    - Other threads' callbacks for the loop queue here (:meth:`soon`); the first of a batch
      schedules one drain on the loop, which runs every callback queued by then. A burst of
      answers for callers waiting on that loop (64 calls in flight) costs one wake-up of it,
      not one each.
    - Frames that the loop's tasks send to another thread's connection in one turn of the
      loop go out in one write at the end of the turn (:meth:`send_this_turn`).
    """

    def __init__(self, call_soon: Callable[[Callable[[], object]], object]) -> None:
        self._call_soon = call_soon
        self._lock = threading.Lock()
        self._ready: list[Callable[[], object]] = []
        self._scheduled = False
        # Loop side: frames this loop's tasks send this turn, per outlet (send_this_turn).
        self._outgoing: dict[_FrameSink, list[tuple[bytes | bytearray, Callable[[], object]]]] = {}

    def soon(self, func: Callable[[], object]) -> None:
        """Run ``func()`` on the loop soon (any thread).

        Raises:
            RuntimeError: the loop is gone (asyncio: closed; trio: the run finished).
        """
        with self._lock:
            self._ready.append(func)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._call_soon(self._drain)
        except BaseException:
            with self._lock:
                self._scheduled = False
            raise

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for func in ready:
            func()

    def send_this_turn(
        self, outlet: _FrameSink, frame: bytes | bytearray, on_fail: Callable[[], object]
    ) -> None:
        """Send ``frame`` on ``outlet`` with the others sent by this loop's tasks in the same
        turn of the loop: one write for a burst of calls (on this loop's thread only).

        Frames keep their order. If the outlet is closed when they go, each one's
        ``on_fail()`` runs on this loop.
        """
        batch = self._outgoing.get(outlet)
        if batch is None:
            batch = self._outgoing[outlet] = []
            if len(self._outgoing) == 1:
                self.soon(self._send_batches)
        batch.append((frame, on_fail))

    def _send_batches(self) -> None:
        outgoing, self._outgoing = self._outgoing, {}
        for outlet, batch in outgoing.items():
            try:
                outlet.send_frames_threadsafe([frame for frame, _ in batch])
            except anyio.BrokenResourceError:
                for _, on_fail in batch:
                    on_fail()


_wakers: RunVar[LoopWaker] = RunVar("daffi_loop_waker")


def loop_waker() -> LoopWaker:
    """The :class:`LoopWaker` of the running loop (one per loop)."""
    try:
        return _wakers.get()
    except LookupError:
        waker = LoopWaker(loop_call_soon())
        _wakers.set(waker)
        return waker


async def wait_future(fut: concurrent.futures.Future[T], *, cancel_on_abort: bool = True) -> T:
    """Wait for ``fut`` without blocking the current loop.

    Args:
        fut: the future, completed by another thread (or this one).
        cancel_on_abort: cancelling the wait cancels ``fut`` too.
    """
    library = sniffio.current_async_library()
    if library == "asyncio":
        import asyncio

        if cancel_on_abort:
            return await asyncio.wrap_future(fut)
        try:
            return await asyncio.shield(asyncio.wrap_future(fut))
        except asyncio.CancelledError:
            # Shielded: if the future is cancelled, the work was (not the waiting task).
            if fut.cancelled():
                raise concurrent.futures.CancelledError from None
            raise
    if library == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        fut.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            if cancel_on_abort:
                fut.cancel()
            raise
        return fut.result()
    # Another anyio backend: park a worker thread on the future.
    try:
        return await anyio.to_thread.run_sync(fut.result, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        if cancel_on_abort:
            fut.cancel()
        raise


async def run_in_portal(portal: BlockingPortal, func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``func(*args)`` on ``portal``'s loop and await the result from the current loop."""
    if sniffio.current_async_library() == "trio":
        # trio refuses to hand work to another thread's loop from any thread running trio,
        # even another run: a worker thread hands it over.
        future = await anyio.to_thread.run_sync(portal.start_task_soon, func, *args)
    else:
        future = portal.start_task_soon(func, *args)
    return await wait_future(future)


class Portal(BlockingPortal):
    """A ``BlockingPortal`` that threads running trio can use too.

    trio refuses to hand work to another thread's loop from any thread that runs trio (even
    another ``trio.run``): from such a thread (a trio app whose Global runs in a thread of
    its own) the hand-over goes through a helper thread. Everything else is anyio's.
    """

    _loop_thread: int | None = None

    async def __aenter__(self) -> Portal:
        self._loop_thread = threading.get_ident()
        await super().__aenter__()
        return self

    def on_loop_thread(self) -> bool:
        """Whether the calling thread runs the portal's loop (where waiting would deadlock)."""
        return threading.get_ident() == self._loop_thread

    def start_task_soon(self, func: Any, *args: Any, name: object = None) -> Any:  # type: ignore[override]
        base = super().start_task_soon
        # (not from the portal's own loop: anyio raises there, where waiting would deadlock)
        if threading.get_ident() != self._loop_thread and running_library() == "trio":
            return _handoff_pool().submit(base, func, *args, name=name).result()
        return base(func, *args, name=name)


_handoff: concurrent.futures.ThreadPoolExecutor | None = None
_handoff_lock = threading.Lock()


def _handoff_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _handoff
    with _handoff_lock:
        if _handoff is None:
            _handoff = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="daffi-handoff"
            )
        return _handoff
