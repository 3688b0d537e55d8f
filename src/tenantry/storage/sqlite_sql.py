"""The SQL of `SQLiteStore`: its schema, its write statements and a message's row.

- `scopes`: one row per (user_id, session_id), holding the session state, the message count
  (so `size` reads one row), the time of the last write (indexed, for pruning), the
  session's summary (so it goes with the session) and the version of its messages (a new
  random value on every write of them, for `sqlite_windows`; schema version 5).
- `messages`: one row per message, numbered by `seq` in the order written and indexed by
  (scope_id, seq), so reading a scope's newest N walks that scope's index entries only.
- `memories` and `memory_terms`: the users' memories (see `sqlite_memories`).
- `usage_days` and `budgets`: the users' usage counters and budget overrides (see
  `sqlite_usage`).
- `idempotency`: one row per (user_id, key), the turn's idempotency record (see
  `idempotency`; schema version 4), indexed by expiry for pruning.
- `tenantry_schema`: the schema version; a file of an older version is upgraded in place on
  first use (version 1 had no summaries and no memories, version 2 no usage, version 3 no
  idempotency records, version 4 no scope versions), a file of a newer one is refused.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tenantry.errors import StoreError
from tenantry.storage.codec import decode_tool_calls, encode_tool_calls
from tenantry.storage.idempotency import IdempotencyRecord, reused
from tenantry.storage.sqlite_usage import USAGE_SCHEMA
from tenantry.types import Message

SCHEMA_VERSION = 5
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS tenantry_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scopes (
    scope_id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state TEXT,
    message_count INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    summary TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, session_id)
);
CREATE INDEX IF NOT EXISTS scopes_by_activity ON scopes (updated_at);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    scope_id INTEGER NOT NULL,
    id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    tool_calls TEXT,
    tool_call_id TEXT,
    name TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_scope ON messages (scope_id, seq);
CREATE TABLE IF NOT EXISTS memories (
    seq INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    id TEXT NOT NULL,
    stamp INTEGER NOT NULL,
    text TEXT NOT NULL,
    embedding BLOB,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL,
    session_id TEXT,
    run_id TEXT,
    UNIQUE (user_id, id)
);
CREATE INDEX IF NOT EXISTS memories_by_stamp ON memories (user_id, stamp);
CREATE VIRTUAL TABLE IF NOT EXISTS memory_terms USING fts5(terms, tokenize = 'ascii');
CREATE TABLE IF NOT EXISTS idempotency (
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    reply TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at);
"""
    + USAGE_SCHEMA
)
UPGRADES: dict[int, tuple[str, str] | None] = {
    1: ("scopes", "summary TEXT"),
    2: None,
    3: None,
    4: ("scopes", "version INTEGER NOT NULL DEFAULT 0"),
}
"""The column (table, definition) that brings a file of version N to N + 1, beside the tables
SCHEMA creates if missing (version 3's usage tables and version 4's `idempotency` are only
that). A row of version 4 has version 0 until its next write."""


def install_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create what is missing of the schema on `conn` and bring an older version to
    SCHEMA_VERSION in one transaction; refuse a newer one (StoreError naming `path`).
    Processes opening one file at once are serialised by the IMMEDIATE transaction, which
    is taken only when there is something to write; each step can be repeated."""
    conn.executescript(SCHEMA)  # IF NOT EXISTS throughout: writes only what is missing
    if _version(conn, path) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn, path)  # again: another process may have done it meanwhile
        if version is None:
            conn.execute("INSERT INTO tenantry_schema (version) VALUES (?)", (SCHEMA_VERSION,))
        elif version < SCHEMA_VERSION:
            for step in range(version, SCHEMA_VERSION):
                column = UPGRADES[step]
                if column is not None:
                    _add_column(conn, *column)
            conn.execute("UPDATE tenantry_schema SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _add_column(conn: sqlite3.Connection, table: str, definition: str) -> None:
    """Add the column unless the table has it (a file written by this version and then
    marked older, as the upgrade tests do, has it already)."""
    name = definition.split()[0]
    if all(row[1] != name for row in conn.execute(f"PRAGMA table_info({table})")):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")


def _version(conn: sqlite3.Connection, path: str) -> int | None:
    row = conn.execute("SELECT max(version) FROM tenantry_schema").fetchone()
    version: int | None = row[0] if row else None
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this tenantry "
            f"({SCHEMA_VERSION}); upgrade tenantry"
        )
    return version


COLUMNS = "id, role, content, tool_calls, tool_call_id, name, created_at"
Row = tuple[str, str, str, str | None, str | None, str | None, float]
UPSERT_SCOPE = (
    "INSERT INTO scopes (user_id, session_id, state, message_count, updated_at, version) "
    "VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (user_id, session_id) DO UPDATE SET updated_at = excluded.updated_at, "
    "message_count = message_count + excluded.message_count, "
    "state = coalesce(excluded.state, state), version = excluded.version "
    "RETURNING scope_id, message_count, updated_at"
)
FIND_WINDOW = (
    "SELECT scope_id, state, version, message_count, updated_at FROM scopes "
    "WHERE user_id = ? AND session_id = ?"
)
"""A scope's row as a window read needs it: its id, its state and its identity."""
FIND_WINDOW_AND_BUDGETED = (
    "SELECT scope_id, state, version, message_count, updated_at, "
    "EXISTS (SELECT 1 FROM budgets WHERE budgets.user_id = ?1) "
    "FROM (SELECT 1) LEFT JOIN scopes ON scopes.user_id = ?1 AND scopes.session_id = ?2"
)
"""FIND_WINDOW's columns (NULLs for no scope) and whether the user has a budget override, in
one row: one statement, so one snapshot without a transaction of its own."""
IDENTITY = (
    "SELECT scope_id, version, message_count, updated_at FROM scopes "
    "WHERE user_id = ? AND session_id = ?"
)
INSERT_MESSAGE = f"INSERT INTO messages (scope_id, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
CLAIM_KEY = (
    "INSERT INTO idempotency (user_id, key, session_id, request_hash, reply, expires_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, key) DO UPDATE SET "
    "session_id = excluded.session_id, request_hash = excluded.request_hash, "
    "reply = excluded.reply, expires_at = excluded.expires_at "
    "WHERE idempotency.expires_at <= ? RETURNING 1"
)
"""Store a record unless the user holds a live one of its key (then no row comes back)."""
RECORD = (
    "SELECT key, session_id, request_hash, reply, expires_at FROM idempotency "
    "WHERE user_id = ? AND key = ?"
)
DELETE_EXPIRED = (
    "DELETE FROM idempotency WHERE (user_id, key) IN "
    "(SELECT user_id, key FROM idempotency WHERE expires_at <= ? LIMIT ?)"
)


def claim_key(
    conn: sqlite3.Connection, user_id: str, record: IdempotencyRecord, now: float
) -> None:
    """Store `record` in the current transaction, or raise IdempotencyKeyReused."""
    row = (user_id, record.key, record.session_id, record.request_hash, record.reply)
    if conn.execute(CLAIM_KEY, (*row, record.expires_at, now)).fetchone() is None:
        raise reused(record.key)


def to_row(scope_id: int, message: Message) -> tuple[Any, ...]:
    return (
        scope_id,
        message.id,
        message.role,
        message.content,
        encode_tool_calls(message.tool_calls),
        message.tool_call_id,
        message.name,
        message.created_at,
    )


def from_row(row: Row) -> Message:
    """Give the message `to_row` stored (the store's own row: not checked again)."""
    message_id, role, content, calls, tool_call_id, name, created_at = row
    return Message._trusted(
        role,  # type: ignore[arg-type]  # written by to_row from a valid Message
        content,
        decode_tool_calls(calls),
        tool_call_id,
        name,
        message_id,
        created_at,
    )


__all__ = [
    "CLAIM_KEY",
    "COLUMNS",
    "DELETE_EXPIRED",
    "FIND_WINDOW",
    "IDENTITY",
    "INSERT_MESSAGE",
    "RECORD",
    "SCHEMA",
    "SCHEMA_VERSION",
    "UPGRADES",
    "UPSERT_SCOPE",
    "Row",
    "claim_key",
    "from_row",
    "install_schema",
    "to_row",
]
