"""What SQLiteStore promises of memories beyond the contract: a search whose work does not
grow with other users' memories, and files of schema version 1 upgraded in place."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tenantry import Message, SQLiteStore, Summary
from tenantry.storage.sqlite import SCHEMA_VERSION
from tenantry.storage.sqlite_memories import FIELDS, _terms
from tenantry.types import new_id

WORDS = ["tea", "green", "coffee", "berlin", "cat", "name", "music", "garden", "train", "blue"]


def _fact(n: int) -> str:
    return f"The user likes {WORDS[n % 10]} and {WORDS[(n * 7 + 3) % 10]}, fact {n}"


async def _bulk(store: SQLiteStore, users: range, each: int) -> None:
    """Give every user `each` memories, straight into the tables (as the store writes them),
    then merge the index's segments into one, as FTS5's automerge does over time."""

    def load(conn: sqlite3.Connection) -> None:
        for u in users:
            user = f"other-{u}"
            for n in range(each):
                (seq,) = conn.execute(
                    f"INSERT INTO memories (stamp, embedding, {FIELDS}) "
                    "VALUES (?, NULL, ?, ?, ?, 0, 0, 1, NULL, NULL) RETURNING seq",
                    (n + 1, new_id(), user, _fact(n)),
                ).fetchone()
                conn.execute(
                    "INSERT INTO memory_terms (rowid, terms) VALUES (?, ?)",
                    (seq, _terms(user, _fact(n))),
                )
        conn.execute("INSERT INTO memory_terms (memory_terms) VALUES ('optimize')")

    await store._write(load)


async def _steps(store: SQLiteStore, call: Callable[[], Awaitable[Any]]) -> int:
    """Give how many virtual-machine steps SQLite ran for `call` (an in-memory store runs
    every statement on its writer connection)."""
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    assert store._write_conn is not None
    store._write_conn.set_progress_handler(step, 1)
    try:
        await call()
    finally:
        store._write_conn.set_progress_handler(None, 1)
    return steps


async def test_the_work_of_a_search_does_not_grow_with_other_users_memories() -> None:
    """Counted in SQLite's VM steps, with the index in one segment both times: a posting
    list holds one user's memories, so 400 times more memories of others cost nothing more
    (a search also probes each segment of the index, whose number FTS5 keeps logarithmic)."""
    async with SQLiteStore(":memory:", max_memories=None) as store:
        for n in range(50):
            await store.add_memory(_fact(n), user_id="me")
        await _bulk(store, range(10), 50)

        async def search() -> None:
            found = await store.search_memories("green tea garden", user_id="me", limit=5)
            assert len(found) == 5
            assert {m.user_id for m in found} == {"me"}

        few = await _steps(store, search)
        await _bulk(store, range(10, 4010), 50)  # 200,000 memories of others, same words
        many = await _steps(store, search)
        add = await _steps(store, lambda: store.add_memory("one more", user_id="me"))
    print(f"search steps with 500 others' memories: {few}, with 200,500: {many}; add: {add}")
    assert many <= few * 1.1
    assert add < 500


def _version_1_file(path: Path) -> None:
    """Write a file as tenantry's schema version 1 left it, holding one message."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(
        """
        CREATE TABLE tenantry_schema (version INTEGER NOT NULL);
        INSERT INTO tenantry_schema (version) VALUES (1);
        CREATE TABLE scopes (
            scope_id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, session_id TEXT NOT NULL,
            state TEXT, message_count INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
            UNIQUE (user_id, session_id)
        );
        CREATE INDEX scopes_by_activity ON scopes (updated_at);
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY, scope_id INTEGER NOT NULL, id TEXT NOT NULL,
            role TEXT NOT NULL, content TEXT NOT NULL, tool_calls TEXT, tool_call_id TEXT,
            name TEXT, created_at REAL NOT NULL
        );
        CREATE INDEX messages_by_scope ON messages (scope_id, seq);
        INSERT INTO scopes (user_id, session_id, state, message_count, updated_at)
            VALUES ('u', 'default', '{"k":1}', 1, 1700000000);
        INSERT INTO messages (scope_id, id, role, content, created_at)
            VALUES (1, 'm-1', 'user', 'written by version 1', 1700000000);
        """
    )
    conn.close()


async def test_a_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _version_1_file(path)
    stores = [SQLiteStore(path) for _ in range(3)]  # several processes open it at once
    try:
        sizes = await asyncio.gather(*(store.size("u") for store in stores))
        assert sizes == [1, 1, 1]
        store = stores[0]
        assert [m.content for m in await store.get_messages("u")] == ["written by version 1"]
        assert await store.get_state("u") == {"k": 1}
        await store.set_summary(Summary("old talk", "m-1", 1.0), user_id="u")
        assert await store.get_summary("u") == Summary("old talk", "m-1", 1.0)
        memory = await store.add_memory("The user's name is Alice", user_id="u")
        assert await store.search_memories("name", user_id="u") == [memory]
        await store.add(Message.assistant("written by version 2"), user_id="u")
    finally:
        for store in stores:
            await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(version) FROM tenantry_schema").fetchone() == (SCHEMA_VERSION,)
    conn.close()
    async with SQLiteStore(path) as reopened:
        assert await reopened.size("u") == 2
        assert await reopened.get_summary("u") == Summary("old talk", "m-1", 1.0)
