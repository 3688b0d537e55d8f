"""The SQL of `SQLiteStore`: its schema, its write statements and a message's row.

- `scopes`: one row per (user_id, session_id), holding the session state, the message count
  (so `size` reads one row) and the time of the last write (indexed, for pruning).
- `messages`: one row per message, numbered by `seq` in the order written and indexed by
  (scope_id, seq), so reading a scope's newest N walks that scope's index entries only.
- `tenantry_schema`: the schema version; a file of a newer version is refused.
"""

from __future__ import annotations

from typing import Any

from tenantry.storage.codec import decode_tool_calls, encode_tool_calls
from tenantry.types import Message

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS tenantry_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scopes (
    scope_id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state TEXT,
    message_count INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
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
"""
COLUMNS = "id, role, content, tool_calls, tool_call_id, name, created_at"
Row = tuple[str, str, str, str | None, str | None, str | None, float]
UPSERT_SCOPE = (
    "INSERT INTO scopes (user_id, session_id, state, message_count, updated_at) "
    "VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (user_id, session_id) DO UPDATE SET updated_at = excluded.updated_at, "
    "message_count = message_count + excluded.message_count, "
    "state = coalesce(excluded.state, state) "
    "RETURNING scope_id, message_count"
)
INSERT_MESSAGE = f"INSERT INTO messages (scope_id, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


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
    "COLUMNS",
    "INSERT_MESSAGE",
    "SCHEMA",
    "SCHEMA_VERSION",
    "UPSERT_SCOPE",
    "Row",
    "from_row",
    "to_row",
]
