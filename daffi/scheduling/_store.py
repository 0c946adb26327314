"""Durable schedules: the SQLite file in which a node keeps the schedules it resumes after a
restart (``PERIOD(durable=True)``).

One file, ``schedules.sqlite3``, in the node's state directory (``Global(state_dir=...)``),
one row per durable schedule: what to run (the callback's name, the request's arguments as
they arrived, the schedule's spec, all opaque bytes here) and how far it got (runs, skipped
times, the last time it fired, the last error).

* **Atomic.** The journal is SQLite's write-ahead log with ``synchronous=NORMAL``: each
  transaction is all or nothing, and a process killed at any moment (SIGKILL) leaves a file
  that opens with every committed transaction. (A power cut may lose the last commits, never
  the file.)
* **Off the event loop.** :class:`Journal` does every read and write in a worker thread, one
  at a time, and batches: what is written while a transaction is under way goes into the
  next one (group commit), so 10,000 schedules firing together make a few transactions.
* **Never fatal.** A store that is corrupt, locked by another process or unwritable raises
  :class:`StoreError`, which says which and where; the node logs it and goes on.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import anyio.abc
import anyio.to_thread

__all__ = [
    "STORE_FILE",
    "Journal",
    "Progress",
    "Remove",
    "ScheduleStore",
    "StoreError",
    "StoredSchedule",
]

logger = logging.getLogger("daffi.scheduling")

#: the store's file name in a node's state directory
STORE_FILE = "schedules.sqlite3"
#: the layout of the file (``PRAGMA user_version``); a newer one is refused, not overwritten
SCHEMA_VERSION = 1
#: seconds a write waits for another process's lock on the file before it is reported
LOCK_TIMEOUT = 0.5
#: the journal makes at most one transaction per this many seconds: the writes of thousands
#: of schedules a second share transactions (and thread hops) instead of costing one each;
#: a fire is committed 10 ms ahead of its time (the scheduler's CLAIM_AHEAD), so this fits
BATCH_GAP = 0.002

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    uuid TEXT PRIMARY KEY,
    func_name TEXT NOT NULL,
    requester TEXT NOT NULL,
    spec BLOB NOT NULL,
    arguments BLOB NOT NULL,
    origin REAL,
    created REAL NOT NULL,
    runs INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    last_fire REAL,
    last_error TEXT,
    error_info BLOB
)
"""
_COLUMNS = (
    "uuid, func_name, requester, spec, arguments, origin, created, runs, skipped, last_fire, "
    "last_error, error_info"
)


class StoreError(Exception):
    """The schedule store cannot be opened, read or written; the message says why and where."""


@dataclass
class StoredSchedule:
    """One durable schedule as the store keeps it.

    Attributes:
        spec: the schedule's request (a msgpack ``ScheduleSpec``; opaque here).
        arguments: the call's arguments as they arrived (msgpack; opaque here).
        origin: where an ``interval`` grid starts (POSIX time), so that it resumes on the
            same grid; None for other kinds.
        error_info: the last error as the wire carries it (msgpack; opaque here).
    """

    uuid: str
    func_name: str
    requester: str
    spec: bytes
    arguments: bytes
    origin: float | None
    created: float
    runs: int = 0
    skipped: int = 0
    last_fire: float | None = None
    last_error: str | None = None
    error_info: bytes | None = None


@dataclass(frozen=True)
class Progress:
    """How far schedule ``uuid`` got (a write replaces the row's counters)."""

    uuid: str
    runs: int
    skipped: int
    last_fire: float | None
    last_error: str | None
    error_info: bytes | None


@dataclass(frozen=True)
class Remove:
    """Schedule ``uuid`` ended or was cancelled: its row goes."""

    uuid: str


Write = StoredSchedule | Progress | Remove


class ScheduleStore:
    """The file ``schedules.sqlite3`` in ``directory``. Blocking: call it from a worker
    thread (:class:`Journal` does), one call at a time."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, STORE_FILE)
        self._db: sqlite3.Connection | None = None

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def open(self) -> None:
        """Open the file, making the directory (private to this user) and the file if
        needed, and check it.

        Raises:
            StoreError: it cannot be made or opened, it is not an SQLite database or fails
                its integrity check, another process holds its lock, or a newer daffi made it.
        """
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot make the state directory {self.directory}: {exc.strerror or exc}"
            ) from None
        try:
            db = sqlite3.connect(
                self.path, timeout=LOCK_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(self._why(exc)) from None
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path} cannot use a write-ahead log (mode {mode!r})")
            db.execute("PRAGMA synchronous=NORMAL")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreError(f"{self.path} is corrupt (integrity check: {check})")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer daffi (layout {version}, this one "
                    f"reads {SCHEMA_VERSION})"
                )
            db.execute("BEGIN IMMEDIATE")
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except StoreError:
            db.close()
            raise
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(self._why(exc)) from None
        self._db = db

    def load(self) -> list[StoredSchedule]:
        """Every schedule in the store, oldest first."""
        db = self._require()
        try:
            rows = db.execute(f"SELECT {_COLUMNS} FROM schedules ORDER BY created").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(self._why(exc)) from None
        return [StoredSchedule(*row) for row in rows]

    def apply(self, writes: Sequence[Write]) -> None:
        """Make ``writes``, in order, in one transaction (all or none)."""
        db = self._require()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                progress: list[Progress] = []
                for write in writes:  # in order; runs of progress in one executemany
                    if isinstance(write, Progress):
                        progress.append(write)
                        continue
                    self._progress(db, progress)
                    self._apply_one(db, write)
                self._progress(db, progress)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(self._why(exc)) from None

    @staticmethod
    def _progress(db: sqlite3.Connection, progress: list[Progress]) -> None:
        """Write ``progress`` (and empty the list)."""
        if progress:
            db.executemany(
                "UPDATE schedules SET runs=?, skipped=?, last_fire=?, last_error=?, "
                "error_info=? WHERE uuid=?",
                [
                    (p.runs, p.skipped, p.last_fire, p.last_error, p.error_info, p.uuid)
                    for p in progress
                ],
            )
            progress.clear()

    @staticmethod
    def _apply_one(db: sqlite3.Connection, write: StoredSchedule | Remove) -> None:
        if isinstance(write, Remove):
            db.execute("DELETE FROM schedules WHERE uuid=?", (write.uuid,))
        else:
            db.execute(
                f"INSERT OR REPLACE INTO schedules ({_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    write.uuid,
                    write.func_name,
                    write.requester,
                    write.spec,
                    write.arguments,
                    write.origin,
                    write.created,
                    write.runs,
                    write.skipped,
                    write.last_fire,
                    write.last_error,
                    write.error_info,
                ),
            )

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path} is not open")
        return self._db

    def _why(self, exc: sqlite3.Error) -> str:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return f"{self.path} is locked by another process ({text})"
        if "not a database" in text or "malformed" in text:
            return f"{self.path} is corrupt ({text})"
        if "readonly" in text or "unable to open" in text or "disk" in text:
            return f"{self.path} cannot be written ({text})"
        return f"{self.path}: {text}"


class _Batch:
    """The writes of one transaction, and its outcome once made."""

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.done = anyio.Event()
        self.error: StoreError | None = None


class Journal:
    """Writes to ``store`` from the event loop: each write joins the next transaction, which
    a task of its own makes in a worker thread (:meth:`run`)."""

    def __init__(self, store: ScheduleStore) -> None:
        self.store = store
        self._batch = _Batch()
        self._wake = anyio.Event()
        self._limiter = anyio.CapacityLimiter(1)
        self._failing = False
        self._closed = False
        self._last_failure_log = float("-inf")

    async def open(self) -> list[StoredSchedule]:
        """Open the store and read it (in a worker thread).

        Raises:
            StoreError: it cannot be opened or read.
        """
        await anyio.to_thread.run_sync(self.store.open, limiter=self._limiter)
        try:
            return await anyio.to_thread.run_sync(self.store.load, limiter=self._limiter)
        except BaseException:
            self.store.close()
            raise

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Make the transactions until cancelled, then the last one, and close the store."""
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                started = anyio.current_time()
                await self._flush()
                await anyio.sleep_until(started + BATCH_GAP)
        finally:
            self._closed = True
            with anyio.CancelScope(shield=True):
                await self._flush()
                await anyio.to_thread.run_sync(self.store.close, limiter=self._limiter)

    async def write(self, write: Write) -> None:
        """Make ``write`` and wait until its transaction is committed.

        Raises:
            StoreError: the transaction failed (also logged), or the journal has stopped.
        """
        if self._closed:
            raise StoreError(f"{self.store.path} is closed: the node is stopping")
        batch = self._batch
        batch.writes.append(write)
        self._wake.set()
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error

    async def sync(self) -> None:
        """Wait until the writes made so far are committed (or failed: logged)."""
        batch = self._batch
        if batch.writes and not self._closed:
            self._wake.set()
            await batch.done.wait()

    def write_nowait(self, write: Write) -> None:
        """Make ``write`` in the next transaction, without waiting (a failure is logged;
        after the journal stopped, nothing is written)."""
        self._batch.writes.append(write)
        self._wake.set()

    async def _flush(self) -> None:
        self._wake = anyio.Event()
        batch, self._batch = self._batch, _Batch()
        try:
            if batch.writes:
                await anyio.to_thread.run_sync(
                    self.store.apply, batch.writes, limiter=self._limiter
                )
        except StoreError as exc:
            batch.error = exc
            self._report(exc)
        else:
            if self._failing and batch.writes:
                self._failing = False
                logger.warning("the schedule store %s is written again", self.store.path)
        finally:
            batch.done.set()

    def _report(self, exc: StoreError) -> None:
        # One line every 10 s at most: a store that stays locked fails every write.
        self._failing = True
        now = time.monotonic()
        if now - self._last_failure_log >= 10:
            self._last_failure_log = now
            logger.error(
                "durable schedules: could not save to the schedule store: %s; the schedules "
                "keep running, but a restart resumes them from their last saved state",
                exc,
            )
