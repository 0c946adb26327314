"""The schedule store (one SQLite file per node) and its journal, which writes from the event
loop through a worker thread, batching what arrives while a transaction is under way."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import anyio
import pytest

from daffi import Global
from daffi._settings import default_state_dir
from daffi.exceptions import InitializationError
from daffi.scheduling._store import (
    STORE_FILE,
    Journal,
    Progress,
    Remove,
    ScheduleStore,
    StoredSchedule,
    StoreError,
)


def schedule(uuid: str, created: float = 1.0) -> StoredSchedule:
    return StoredSchedule(uuid, "tick", "req", b"spec", b"args", 10.0, created)


def test_open_makes_a_private_directory_and_the_rows_round_trip(tmp_path: Path) -> None:
    store = ScheduleStore(str(tmp_path / "state" / "node"))
    store.open()
    try:
        assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
        store.apply([schedule("b", created=2.0), schedule("a", created=1.0)])
        store.apply([Progress("a", 3, 1, 42.5, "ValueError: x", b"info"), Remove("b")])
        [row] = store.load()
        assert row == StoredSchedule(
            "a", "tick", "req", b"spec", b"args", 10.0, 1.0, 3, 1, 42.5, "ValueError: x", b"info"
        )
    finally:
        store.close()
    again = ScheduleStore(store.directory)
    again.open()
    try:
        assert [row.uuid for row in again.load()] == ["a"]
    finally:
        again.close()


def test_a_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    store = ScheduleStore(str(tmp_path))
    store.open()
    try:
        store.apply([schedule("a")])
        broken = StoredSchedule("b", "tick", "req", b"", b"", None, None)  # type: ignore[arg-type]
        with pytest.raises(StoreError):
            store.apply([Remove("a"), broken])  # created NOT NULL fails: the remove is undone
        assert [row.uuid for row in store.load()] == ["a"]
    finally:
        store.close()


def test_a_file_that_is_not_a_database_is_reported_as_corrupt_and_kept(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILE
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreError, match="corrupt") as caught:
        ScheduleStore(str(tmp_path)).open()
    assert str(path) in str(caught.value)
    assert path.read_bytes() == b"garbage" * 1000


def test_a_store_of_a_newer_daffi_is_refused_not_overwritten(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="newer daffi"):
        ScheduleStore(str(tmp_path)).open()


def test_a_lock_held_by_another_process_is_named(tmp_path: Path) -> None:
    store = ScheduleStore(str(tmp_path))
    store.open()
    other = sqlite3.connect(tmp_path / STORE_FILE, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked by another process"):
            store.apply([schedule("a")])
        other.execute("ROLLBACK")
        store.apply([schedule("a")])
    finally:
        other.close()
        store.close()


def test_a_directory_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot make the state directory"):
        ScheduleStore(str(tmp_path / "file" / "state")).open()


class CountingStore(ScheduleStore):
    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.transactions: list[int] = []

    def apply(self, writes: object) -> None:
        self.transactions.append(len(writes))  # type: ignore[arg-type]
        super().apply(writes)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_the_journal_batches_writes_made_during_a_transaction(tmp_path: Path) -> None:
    store = CountingStore(str(tmp_path))
    journal = Journal(store)
    with anyio.fail_after(10):
        assert await journal.open() == []
        async with anyio.create_task_group() as tg:
            await tg.start(journal.run)
            async with anyio.create_task_group() as writers:
                for i in range(1000):
                    writers.start_soon(journal.write, schedule(f"s{i}"))
            journal.write_nowait(Remove("s0"))
            await journal.sync()
            tg.cancel_scope.cancel()
    assert sum(store.transactions) == 1001
    assert len(store.transactions) < 20  # group commit, not one transaction per write
    check = ScheduleStore(str(tmp_path))
    check.open()
    try:
        assert len(check.load()) == 999
    finally:
        check.close()


@pytest.mark.anyio
async def test_a_failed_transaction_raises_at_each_waiting_write(tmp_path: Path) -> None:
    journal = Journal(ScheduleStore(str(tmp_path)))
    with anyio.fail_after(10):
        await journal.open()
        other = sqlite3.connect(tmp_path / STORE_FILE, isolation_level=None)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(journal.run)
                other.execute("BEGIN EXCLUSIVE")
                with pytest.raises(StoreError, match="locked"):
                    await journal.write(schedule("a"))
                other.execute("ROLLBACK")
                await journal.write(schedule("a"))
                tg.cancel_scope.cancel()
        finally:
            other.close()
    with pytest.raises(StoreError, match="closed"):
        await journal.write(schedule("b"))


def test_the_default_state_directory_follows_xdg_and_encodes_the_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir("worker") == str(tmp_path / "daffi" / "worker")
    assert default_state_dir("a/b c") == str(tmp_path / "daffi" / "a%2Fb%20c")
    assert default_state_dir("..") == str(tmp_path / "daffi" / "%2E.")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_state_dir("w") == os.path.expanduser("~/.local/state/daffi/w")


def test_global_state_dir_is_absolute_default_or_none_for_a_generated_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    options = {"init_node": False, "init_controller": True, "address": "memory://state-dir"}
    g = Global("named", **options)  # type: ignore[arg-type]
    try:
        assert g.state_dir == str(tmp_path / "daffi" / "named")
    finally:
        g.stop()
    g = Global(**options)  # type: ignore[arg-type]
    try:
        assert g.state_dir is None
    finally:
        g.stop()
    g = Global(state_dir="relative", **options)  # type: ignore[arg-type]
    try:
        assert g.state_dir == str(tmp_path / "relative")
    finally:
        g.stop()
    with pytest.raises(InitializationError, match="state_dir must not be empty"):
        Global(state_dir="", **options)  # type: ignore[arg-type]
    assert not (tmp_path / "daffi").exists()  # nothing is made before a durable schedule
