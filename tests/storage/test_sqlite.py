"""What only the SQLite backend promises: a WAL file, schema versioning, clear open errors."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from tenantry import Message, SQLiteStore, SyncStore
from tenantry.errors import StoreError
from tenantry.storage.sqlite import SCHEMA_VERSION


async def test_the_file_is_in_wal_mode_with_a_schema_version(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "t.db") as store:
        await store.add(Message.user("x"), user_id="u")
    conn = sqlite3.connect(tmp_path / "t.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM tenantry_schema").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


async def test_a_newer_schema_is_refused_with_advice(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "t.db") as store:
        await store.ping()
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("UPDATE tenantry_schema SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    store = SQLiteStore(tmp_path / "t.db")
    with pytest.raises(StoreError, match="upgrade tenantry"):
        await store.size("u")
    await store.close()


async def test_an_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing-dir" / "t.db")
    with pytest.raises(StoreError, match="cannot open SQLite database"):
        await store.add(Message.user("x"), user_id="u")
    await store.close()


async def test_reads_go_on_while_a_long_write_holds_the_writer(tmp_path: Path) -> None:
    """WAL + reader threads: a reader is not queued behind the writer thread."""
    async with SQLiteStore(tmp_path / "t.db") as store:
        await store.add(Message.user("hello"), user_id="reader")
        released = False

        def slow_write(conn: sqlite3.Connection) -> None:
            deadline = time.monotonic() + 5
            while not released and time.monotonic() < deadline:
                time.sleep(0.001)

        writing = asyncio.create_task(store._write(slow_write))
        await asyncio.sleep(0)
        got = await asyncio.wait_for(store.get_messages("reader"), timeout=2)
        assert [m.content for m in got] == ["hello"]
        released = True
        await writing


class _LockedOut(sqlite3.Connection):
    """A connection that finds the file locked (as when another process holds it
    exclusively), counting its tries."""

    tries = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("SELECT"):
            _LockedOut.tries += 1
            raise sqlite3.OperationalError("database is locked")
        return super().execute(sql, *args)


async def test_small_reads_run_on_the_loop_thread_and_a_locked_one_goes_to_a_reader(
    tmp_path: Path,
) -> None:
    """A history window is read on the event loop's thread (no hop), on a connection that
    never waits for a lock; a read it cannot start goes to a reader thread, which may wait."""
    path = tmp_path / "t.db"
    async with SQLiteStore(path) as store:
        await store.add(Message.user("hello"), user_id="u")
        assert [m.content for m in (await store.snapshot("u", limit=5)).messages] == ["hello"]
        loop_conn = store._loop_conns.conn
        assert loop_conn.execute("PRAGMA busy_timeout").fetchone() == (0,)
        # the same connection commits the loop's turn writes (storage/loopwrite.py)
        assert loop_conn.execute("PRAGMA query_only").fetchone() == (0,)
        store._loop_conns.conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, factory=_LockedOut
        )
        try:
            got = await store.snapshot("u", limit=5)
            assert await store.size("u") == 1
        finally:
            store._loop_conns.conn.close()
            store._loop_conns.conn = loop_conn
        assert [m.content for m in got.messages] == ["hello"]
        assert _LockedOut.tries == 2  # the snapshot and the size were tried on the loop first


async def test_in_memory_sqlite_works_without_reader_threads() -> None:
    async with SQLiteStore(":memory:") as store:
        await store.add_many([Message.user("a"), Message.assistant("b")], user_id="u")
        assert await store.size("u") == 2
        assert (await store.snapshot("u", limit=1)).messages[0].content == "b"


async def test_a_file_locked_by_another_process_is_reported_as_unavailable(
    tmp_path: Path,
) -> None:
    from tenantry.errors import StoreUnavailable

    path = tmp_path / "t.db"
    async with SQLiteStore(path) as first:
        await first.ping()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        async with SQLiteStore(path, busy_timeout=0.05) as store:
            with pytest.raises(StoreUnavailable, match="retry later"):
                await store.add(Message.user("x"), user_id="u")
    finally:
        other.execute("ROLLBACK")
        other.close()


# --- group commit: writes queued while the writer is busy share one COMMIT --------------------

_TRANSACTION_STATEMENTS = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT job",
    "RELEASE job",
    "ROLLBACK TO job",
}


class _BusyWriter:
    """Holds the writer thread until released, so the writes queued meanwhile form a group."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.started = threading.Event()
        self.release = threading.Event()
        self.task: asyncio.Task[None] | None = None

    def _block(self, conn: sqlite3.Connection) -> None:
        self.started.set()
        self.release.wait(10)

    async def __aenter__(self) -> _BusyWriter:
        self.task = asyncio.create_task(self.store._write(self._block))
        assert await asyncio.to_thread(self.started.wait, 10)
        return self

    async def queued(self, *writes: Awaitable[object]) -> list[asyncio.Task[object]]:
        """Start the writes and give their tasks once every one of them is queued."""
        before = len(self.store._group._jobs)
        tasks = [asyncio.ensure_future(write) for write in writes]
        await asyncio.sleep(0)  # one step each: each task queues its function, then waits
        assert len(self.store._group._jobs) == before + len(writes)
        return tasks

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self.task is not None
        await self.task


def _trace(store: SQLiteStore) -> list[str]:
    statements: list[str] = []
    assert store._write_conn is not None
    store._write_conn.set_trace_callback(statements.append)
    return statements


# With synchronous=FULL every write goes through the writer thread's group commit (with
# NORMAL a turn's write that finds the writer busy waits and then commits on the loop's
# thread: tests/storage/test_sqlite_loopwrite.py).


async def test_a_failing_write_in_a_group_fails_alone(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "t.db", synchronous="FULL") as store:
        await store.add(Message.user("first"), user_id="a")
        statements = _trace(store)

        def half_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO scopes (user_id, session_id, updated_at) VALUES ('ghost', 's', 0)"
            )
            raise ValueError("this write fails after writing")

        async with _BusyWriter(store) as busy:
            tasks = await busy.queued(
                store.add(Message.user("second"), user_id="a"),
                store._write(half_then_fail),
                store.add_many([Message.user("q"), Message.assistant("r")], user_id="b"),
            )
            del statements[:]
        results = await asyncio.gather(*tasks, return_exceptions=True)

        assert results[0] is None
        assert results[2] is None
        assert isinstance(results[1], ValueError)
        assert [m.content for m in await store.get_messages("a")] == ["first", "second"]
        assert [m.content for m in await store.get_messages("b")] == ["q", "r"]
        assert await store.list_users() == ["a", "b"]  # nothing of the failed write
        assert await store.size("a") == 2
        assert [s for s in statements if s in _TRANSACTION_STATEMENTS] == [
            "COMMIT",  # the busy writer's own
            "BEGIN IMMEDIATE",
            *("SAVEPOINT job", "RELEASE job"),
            *("SAVEPOINT job", "ROLLBACK TO job", "RELEASE job"),
            *("SAVEPOINT job", "RELEASE job"),
            "COMMIT",
        ]
        # alone, a write needs no savepoint
        del statements[:]
        await store._write(lambda conn: conn.execute("UPDATE scopes SET updated_at = 1"))
        assert [s for s in statements if s in _TRANSACTION_STATEMENTS] == [
            "BEGIN IMMEDIATE",
            "COMMIT",
        ]


async def test_a_failed_group_commit_fails_every_write_of_the_group(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "t.db", synchronous="FULL") as store:

        def deferred_check(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            conn.execute(
                "CREATE TABLE child (parent_id INTEGER "
                "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
            )

        await store._write(deferred_check)
        assert store._write_conn is not None
        store._write_conn.execute("PRAGMA foreign_keys = ON")  # the writer is idle

        def fails_at_commit(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO child (parent_id) VALUES (42)")  # checked at COMMIT

        async with _BusyWriter(store) as busy:
            tasks = await busy.queued(
                store.add(Message.user("lost"), user_id="a"),
                store._write(fails_at_commit),
                store.set_state({"lost": True}, user_id="b"),
            )
        results = await asyncio.gather(*tasks, return_exceptions=True)

        for result in results:
            assert isinstance(result, StoreError)
            assert "FOREIGN KEY" in str(result)
        assert await store.list_users() == []
        await store.add(Message.user("kept"), user_id="a")  # the writer goes on
        assert [m.content for m in await store.get_messages("a")] == ["kept"]


async def test_a_write_cancelled_before_the_writer_took_it_is_not_stored(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "t.db", synchronous="FULL") as store:
        async with _BusyWriter(store) as busy:
            cancelled, kept = await busy.queued(
                store.add(Message.user("never"), user_id="a"),
                store.add(Message.user("kept"), user_id="b"),
            )
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
        await kept
        assert await store.list_users() == ["b"]


async def test_a_group_answers_writers_on_different_event_loops(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "t.db", synchronous="FULL") as store:
        await store.ping()
        other_loop = SyncStore(store)  # tenantry's background loop
        queued = threading.Event()
        enqueue = store._group._enqueue

        def enqueue_and_tell(job: Any) -> None:
            enqueue(job)
            queued.set()

        async with _BusyWriter(store) as busy:
            store._group._enqueue = enqueue_and_tell  # type: ignore[method-assign]
            from_thread = asyncio.ensure_future(
                asyncio.to_thread(other_loop.add, Message.user("sync"), user_id="s")
            )
            assert await asyncio.to_thread(queued.wait, 10)
            (here,) = await busy.queued(store.add(Message.user("async"), user_id="a"))
            assert len(store._group._jobs) == 2  # one group, two loops
        await asyncio.wait_for(asyncio.gather(from_thread, here), timeout=10)
        assert await store.list_users() == ["a", "s"]
