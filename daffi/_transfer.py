"""Code transfer: ``Global.transfer_and_call`` runs a function on another process.

**Caller** (:class:`Transfer`). The function and its arguments are pickled by value with
cloudpickle (lambdas, closures, ``def`` and ``async def`` functions alike) in the calling
thread, and travel as the one argument, a ``bytes``, of the system call
:data:`SYSTEM_TRANSFER` pinned to the remote process: the call's payload is plain msgpack, so
the pickle rule (``allow_pickle``) does not apply to it, only ``allow_transfer`` does. The
call is an ordinary call otherwise (its deadline is the caller's remaining time, cancelling
the caller cancels it); its result comes back with the normal codec, pickled only if both
ends allow pickle (see :mod:`daffi._pickling`).

**Callee** (:func:`run_transferred`, the dispatcher's answer to that system call). A node
created without ``allow_transfer=True`` refuses it with ``GlobalContextError`` before it
reads the payload: nothing is unpickled. Otherwise a ``def`` function runs through the
node's :class:`~daffi._executor.Executor` like any ``def`` callback (a slot, the deadline
from arrival, cancel, chains) and an ``async def`` one in the call's task; an exception it
raises reaches the caller as a ``RemoteCallError``, like a callback's.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from daffi._callee_payloads import Payloads
from daffi._codec import PayloadCodec, PayloadEncodeError
from daffi._executor import Executor, Job
from daffi._pickling import dumps, loads
from daffi._protocol import SYSTEM_PREFIX, Call, CallbackInfo
from daffi.exceptions import (
    ArgumentsError,
    GlobalContextError,
    ProtocolError,
    UnableToFindCandidate,
)

__all__ = ["SYSTEM_TRANSFER", "Transfer", "run_transferred"]

logger = logging.getLogger("daffi.node")

#: the system call that carries a transferred function
SYSTEM_TRANSFER = SYSTEM_PREFIX + "transfer_and_call"


class _CallerNode(Protocol):
    """What the caller's side needs of its node."""

    @property
    def name(self) -> str: ...

    @property
    def peers(self) -> Mapping[str, Mapping[str, CallbackInfo]]: ...

    @property
    def codec(self) -> PayloadCodec: ...

    def check_size(self, payload: bytes, what: str) -> None: ...

    async def roundtrip(self, name: str, payload: msgspec.Raw, *, receiver: str | None) -> Any: ...


class _Runtime(Protocol):
    """Where the caller's node is (``daffi._runtime.Runtime``)."""

    def require_node(self) -> _CallerNode: ...


def _describe(func: Callable[..., Any]) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return repr(name) if isinstance(name, str) else repr(func)


@dataclass(frozen=True)
class Transfer:
    """A function and its arguments, pickled, ready to run on another process.

    Attributes:
        label: the function's name, for messages.
        pickled: cloudpickle's bytes of ``(func, args, kwargs)``.
    """

    label: str
    pickled: bytes

    @classmethod
    def pack(
        cls, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Transfer:
        """Check ``func`` and its arguments, and pickle them (in the calling thread).

        Raises:
            ArgumentsError: ``func`` is not a function a process can run and return from
                (not callable, a generator function), or the arguments do not bind it.
            PayloadEncodeError: they do not pickle.
            GlobalContextError: cloudpickle is not installed.
        """
        if not callable(func):
            raise ArgumentsError(f"transfer_and_call needs a function, not {func!r}")
        label = _describe(func)
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise ArgumentsError(
                f"cannot transfer {label}: it is a generator function; transfer_and_call "
                "runs a def or async def function and returns its result"
            )
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            signature = None  # some builtins have none: the remote call says what is wrong
        if signature is not None:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise ArgumentsError(
                    f"cannot transfer {label}: it expects {signature}: {exc}"
                ) from None
        try:
            pickled = dumps((func, args, kwargs))
        except GlobalContextError:
            raise
        except Exception as exc:
            raise PayloadEncodeError(
                f"cannot transfer {label}: pickling it with its arguments failed: {exc!r}"
            ) from exc
        return cls(label, pickled)

    async def send(self, runtime: _Runtime, remote_process: str) -> Any:
        """Run the function on ``remote_process`` and return its result (on daffi's loop).

        Raises:
            UnableToFindCandidate: ``remote_process`` is not connected.
            PayloadEncodeError: the function and its arguments do not fit in a frame.
            GlobalContextError: ``remote_process`` does not run transferred functions.
            RemoteCallError: the function raised there.
        """
        node = runtime.require_node()
        if remote_process != node.name and remote_process not in node.peers:
            raise UnableToFindCandidate(
                f"cannot transfer {self.label}: process {remote_process!r} is not connected"
            )
        payload = node.codec.encode_args((self.pickled,), {})
        node.check_size(payload, f"the transferred function {self.label} with its arguments")
        logger.debug("transferring %s to %r", self.label, remote_process)
        return await node.roundtrip(SYSTEM_TRANSFER, msgspec.Raw(payload), receiver=remote_process)


class _CalleeNode(Protocol):
    """What the callee's side needs of the dispatcher that answers the call."""

    @property
    def name(self) -> str: ...

    @property
    def allow_transfer(self) -> bool: ...

    @property
    def executor(self) -> Executor: ...

    @property
    def payloads(self) -> Payloads: ...


async def run_transferred(host: _CalleeNode, msg: Call) -> Any:
    """Run the function ``msg`` carries, if ``host`` runs transferred functions at all.

    Raises:
        GlobalContextError: ``host`` was created without ``allow_transfer=True`` (the payload
            is not read, nothing is unpickled).
        ProtocolError: the payload is not a transferred function.
        ArgumentsError: the function is a generator function.
        Whatever the function raised.
    """
    if not host.allow_transfer:
        logger.warning(
            "node %r refused a function transferred by %r (allow_transfer is off); not unpickled",
            host.name,
            msg.src,
        )
        raise GlobalContextError(
            f"process {host.name!r} does not run transferred functions: it was created "
            "without allow_transfer=True. Create it with Global(..., allow_transfer=True) to "
            "let other processes run code there with transfer_and_call (only if every "
            "process that can connect is trusted: it runs whatever they send)"
        )
    args, _ = host.payloads.arguments(msg, None)
    if len(args) != 1 or not isinstance(args[0], bytes):
        raise ProtocolError(f"{msg.src!r} sent a transfer_and_call without a function")
    transferred = loads(args[0])
    if not (
        isinstance(transferred, tuple)
        and len(transferred) == 3
        and callable(transferred[0])
        and isinstance(transferred[1], tuple)
        and isinstance(transferred[2], dict)
    ):
        raise ProtocolError(f"{msg.src!r} sent a transfer_and_call without a function")
    func, func_args, func_kwargs = transferred
    label = _describe(func)
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise ArgumentsError(f"cannot run {label}: it is a generator function")
    logger.info("node %r runs %s, transferred by %r", host.name, label, msg.src)
    if inspect.iscoroutinefunction(func):
        return await func(*func_args, **func_kwargs)
    # Like a def callback: a slot of the executor, the call's deadline counted from now (its
    # arrival, give or take unpickling), its chain; cancelling this task drops the run.
    job = Job(None, f"transferred {label} for {msg.src!r}", msg.timeout, msg.chain)
    return await host.executor.run_async(job, functools.partial(func, *func_args, **func_kwargs))
