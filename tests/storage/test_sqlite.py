"""What only the SQLite backend promises: a WAL file, schema versioning, clear open errors."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from tenantry import Message, SQLiteStore
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
