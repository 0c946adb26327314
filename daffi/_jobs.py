"""What the executor of ``def`` callbacks runs (:class:`Job`) and how a run ended
(:class:`Outcome`); the executor itself is :mod:`daffi._executor`."""

from __future__ import annotations

import time
from typing import Any, Protocol

__all__ = ["Job", "Outcome"]


class _Executor(Protocol):
    """The executor a job was given to (:class:`daffi._executor.Executor`)."""

    def _chain_of(self, job: Job) -> str: ...


class Job:
    """One run of a ``def`` callback: what it is for, until when, whether it still counts.

    Args:
        key: ``(caller, call id)`` for a call (so a ``Cancel`` finds it), None otherwise.
        name: the callback's name, for log lines.
        timeout: the call's remaining time when it arrived (None: no deadline).
        chain: the chain the call belongs to ('' if none, see :func:`current_chain`).
    """

    __slots__ = ("cancelled", "chain", "deadline", "executor", "key", "lent", "name")

    def __init__(
        self,
        key: tuple[str, int] | None,
        name: str,
        timeout: float | None = None,
        chain: str = "",
    ) -> None:
        self.key = key
        self.name = name
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.chain = chain
        self.cancelled = False
        self.lent = False  # runs on a slot its chain holds
        self.executor: _Executor | None = None

    @property
    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def describe(self) -> str:
        return self.name if self.key is None else f"{self.name!r} for {self.key[0]!r}"


class Outcome:
    """How a job ended: ``ran`` (and then ``value`` or ``error``), or why it did not count.

    ``status`` is ``"ok"``, ``"error"``, ``"busy"`` (no free slot and no waiting),
    ``"cancelled"``, ``"late"`` (its deadline passed, before or while it ran) or
    ``"closed"`` (the executor stopped).
    """

    __slots__ = ("error", "status", "value")

    def __init__(self, status: str, value: Any = None, error: BaseException | None = None):
        self.status = status
        self.value = value
        self.error = error

    @property
    def counts(self) -> bool:
        """Whether the run finished in time and is still wanted (its reply goes out)."""
        return self.status in ("ok", "error")
