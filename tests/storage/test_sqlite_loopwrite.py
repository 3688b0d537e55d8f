"""SQLite turn writes on the event loop's own thread (storage/loopwrite.py): when they run
there, when they go to the writer thread instead, and that nothing about durability or
isolation changes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from tenantry import Message, SQLiteStore
from tenantry.errors import StoreClosed, StoreUnavailable
from tenantry.storage import loopwrite
from tenantry.storage.sqlite import SQLiteStore as _Store

TRANSACTION = {"BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"}


def _trace_writer(store: _Store) -> list[str]:
    seen: list[str] = []
    assert store._write_conn is not None
    store._write_conn.set_trace_callback(lambda s: seen.append(s) if s in TRANSACTION else None)
    return seen


def _committed_rows(path: Path, user: str) -> list[str]:
    """What another connection (another process) reads: only what is committed."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT m.content FROM messages m JOIN scopes s USING (scope_id) "
            "WHERE s.user_id = ? ORDER BY m.seq",
            (user,),
        ).fetchall()
    finally:
        conn.close()
    return [content for (content,) in rows]


async def test_a_turn_with_the_writer_idle_commits_on_the_loop_thread(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with SQLiteStore(path) as store:
        await store.ping()
        on_writer = _trace_writer(store)
        threads: list[str] = []
        original = store._loop_connection

        def connection() -> sqlite3.Connection:
            threads.append(threading.current_thread().name)
            return original()

        store._loop_writes._connection = connection  # type: ignore[union-attr]
        await store.add_many([Message.user("q"), Message.assistant("r")], user_id="u")
        # acknowledged means committed: another connection reads it at once
        assert _committed_rows(path, "u") == ["q", "r"]
        assert on_writer == []  # the writer thread was not involved
        assert threads == [threading.current_thread().name]
        conn = store._loop_conns.conn  # the loop's connection, its small reads' too
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (0,)
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        assert not conn.in_transaction


async def test_a_write_lock_held_elsewhere_sends_the_turn_to_the_writer_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    async with SQLiteStore(path) as store:
        await store.add(Message.user("first"), user_id="u")
        on_writer = _trace_writer(store)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process writes
        pending = asyncio.ensure_future(store.add(Message.user("second"), user_id="u"))
        await asyncio.sleep(0.05)
        assert not pending.done()  # waiting on the writer thread (busy timeout), not failed
        other.execute("ROLLBACK")
        other.close()
        await asyncio.wait_for(pending, 10)
        assert on_writer == ["BEGIN IMMEDIATE", "COMMIT"]
        assert _committed_rows(path, "u") == ["first", "second"]


async def test_a_lock_held_past_the_busy_timeout_is_still_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with SQLiteStore(path, busy_timeout=0.05) as store:
        await store.add(Message.user("first"), user_id="u")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreUnavailable, match="retry later"):
                await store.add(Message.user("second"), user_id="u")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert _committed_rows(path, "u") == ["first"]


async def test_a_failing_turn_write_on_the_loop_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with SQLiteStore(path) as store:
        await store.add(Message.user("first"), user_id="u")

        def half_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO scopes (user_id, session_id, updated_at) VALUES ('g', 's', 0)"
            )
            raise ValueError("fails after writing")

        with pytest.raises(ValueError, match="fails after writing"):
            await store._write_small(half_then_fail)
        assert await store.list_users() == ["u"]
        await store.add(Message.user("second"), user_id="u")  # the connection is usable again
        assert _committed_rows(path, "u") == ["first", "second"]


class _HeldWriter:
    """Keeps the writer thread busy with a write until released."""

    def __init__(self, store: _Store) -> None:
        self.store, self.started, self.release = store, threading.Event(), threading.Event()

    def _block(self, conn: sqlite3.Connection) -> None:
        self.started.set()
        self.release.wait(10)

    async def __aenter__(self) -> asyncio.Future[None]:
        held = asyncio.ensure_future(self.store._write(self._block))
        assert await asyncio.to_thread(self.started.wait, 10)
        return held

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()


async def test_a_turn_that_finds_the_writer_busy_waits_then_commits_on_the_loop(
    tmp_path: Path,
) -> None:
    """Joining the busy writer's queue would keep it busy under load (each write arriving
    meanwhile joins too) and its Python would contend with the loop's for the GIL."""
    path = tmp_path / "t.db"
    async with SQLiteStore(path) as store:
        await store.add(Message.user("first"), user_id="u")
        on_writer = _trace_writer(store)
        async with _HeldWriter(store) as held:
            pending = asyncio.ensure_future(store.add(Message.user("second"), user_id="u"))
            await asyncio.sleep(0.05)
            assert not pending.done()  # it waits for the writer ...
            assert len(store._group._jobs) == 0  # ... without joining its queue
        await asyncio.wait_for(asyncio.gather(held, pending), 10)
        assert on_writer == ["BEGIN IMMEDIATE", "COMMIT"]  # the held write's alone
        assert _committed_rows(path, "u") == ["first", "second"]


async def test_a_store_closed_while_a_turn_waits_for_the_writer_refuses_it(
    tmp_path: Path,
) -> None:
    """The close closes the loop's connection: a turn that waited meanwhile must not use it
    (it crashed the interpreter), and is refused as every call after a close is."""
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    await store.add(Message.user("first"), user_id="u")
    async with _HeldWriter(store) as held:
        pending = asyncio.ensure_future(store.add(Message.user("late"), user_id="u"))
        await asyncio.sleep(0.05)
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0.05)
    await asyncio.wait_for(asyncio.gather(held, closing), 10)
    with pytest.raises(StoreClosed):
        await asyncio.wait_for(pending, 10)
    assert _committed_rows(path, "u") == ["first"]


@pytest.mark.parametrize("synchronous", ["FULL", "EXTRA"])
async def test_a_commit_that_waits_for_the_disk_never_runs_on_the_loop(
    tmp_path: Path, synchronous: str
) -> None:
    async with SQLiteStore(tmp_path / "t.db", synchronous=synchronous) as store:  # type: ignore[arg-type]
        await store.ping()
        on_writer = _trace_writer(store)
        await store.add(Message.user("x"), user_id="u")
        assert on_writer == ["BEGIN IMMEDIATE", "COMMIT"]
        assert store._loop_writes is None
        await store.snapshot("u", limit=5)  # the loop's connection only reads then
        assert store._loop_conns.conn.execute("PRAGMA query_only").fetchone() == (1,)


async def test_loop_commits_are_checkpointed_on_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's connection never checkpoints (a checkpoint waits for the disk); every
    CHECKPOINT_EVERY loop commits the writer thread does, while the writes wait, and the
    next write then starts the WAL over: the WAL stays bounded however many turns are
    written."""
    monkeypatch.setattr(loopwrite, "CHECKPOINT_EVERY", 10)
    path = tmp_path / "t.db"
    wal = tmp_path / "t.db-wal"
    async with SQLiteStore(path) as store:
        await store.ping()
        assert store._write_conn is not None
        checkpoints: list[str] = []
        store._write_conn.set_trace_callback(
            lambda s: checkpoints.append(s) if "wal_checkpoint" in s else None
        )
        for i in range(300):
            await store.add(Message.user("x" * 2000), user_id=f"u{i}")
        # one before every 10th loop commit after the first 10 (a write queued behind
        # another on the writer thread would not count: here none is)
        assert 300 // 10 - 3 <= len(checkpoints) <= 300 // 10 - 1
        # 300 turns of 2 KB without a WAL restart leave about 9 MB in it
        assert wal.stat().st_size < 3_000_000
        # and concurrent turns (the writer busy with some, the loop taking others) too
        await asyncio.gather(
            *(store.add(Message.user("y" * 2000), user_id=f"c{i}") for i in range(300))
        )
        assert wal.stat().st_size < 4_000_000
    assert _committed_rows(path, "u299") == ["x" * 2000]
    assert _committed_rows(path, "c299") == ["y" * 2000]
