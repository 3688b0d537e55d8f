"""`SQLiteStore`: the embedded default. One file, WAL mode, no server.

Why the standard library's `sqlite3` on our own threads rather than aiosqlite: aiosqlite hops
to its thread once per statement, and a transaction spread over several awaits can interleave
with another coroutine's statements on the same connection. Here each store operation is one
function that runs as one transaction on one of our threads or on the event loop's own:
`SQLiteFile` (sqlite_file.py, a base of the store) holds the threads, the connections and
those transactions.

A turn's window is usually not read at all: `sqlite_windows` keeps the newest messages of
recently used scopes in memory, given only while the scope's row (read anyway, for the
state) shows that nothing wrote to its messages since, in any process.

Durability: with the default `synchronous=NORMAL`, a committed turn survives a crash of the
process; after a power loss the last transactions may be lost. Pass `synchronous="FULL"` (or
`?synchronous=FULL` in the URL) to survive that too, at a cost per write.

Turn locks are per process: several processes may share one file safely (SQLite serialises
their writes), but only PostgreSQL or Redis serialise turns of one scope across processes.

A session's summary is a column of its scope row, so it goes with the session; the users'
memories are `SQLiteMemories`' (sqlite_memories.py) and their usage `SQLiteUsage`'
(sqlite_usage.py), bases of the store too, on the same transactions.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import AbstractAsyncContextManager
from datetime import date
from typing import Any, TypeVar

from tenantry._checks import check_int
from tenantry.storage.base import PRUNE_BATCH, Clock, Snapshot, TurnWrite
from tenantry.storage.codec import decode_state
from tenantry.storage.idempotency import IdempotencyRecord
from tenantry.storage.locks import LocalScopeLocks
from tenantry.storage.loopwrite import is_busy
from tenantry.storage.memories import DEFAULT_MAX_MEMORIES
from tenantry.storage.sqlite_file import SQLiteFile, Synchronous
from tenantry.storage.sqlite_memories import (
    SQLiteMemories,
    delete_all_memories,
    delete_user_memories,
)
from tenantry.storage.sqlite_sql import (
    COLUMNS,
    DELETE_EXPIRED,
    FIND_WINDOW,
    FIND_WINDOW_AND_BUDGETED,
    IDENTITY,
    INSERT_MESSAGE,
    RECORD,
    SCHEMA_VERSION,
    UPSERT_SCOPE,
    claim_key,
    from_row,
    to_row,
)
from tenantry.storage.sqlite_usage import (
    SQLiteUsage,
    count_usage,
    delete_all_usage,
    read_admission,
)
from tenantry.storage.sqlite_windows import (
    DEFAULT_WINDOW_CACHE,
    Identity,
    Window,
    WindowCache,
    new_version,
)
from tenantry.storage.usage import DEFAULT_USAGE_RETENTION_DAYS, UNREAD_ADMISSION, usage_day
from tenantry.tenancy import Scope
from tenantry.types import Admission, Memory, Message

T = TypeVar("T")
LOOP_READ_ROWS = 200
"""Reads of at most this many messages (and single-row reads) run on the event loop's thread."""


class SQLiteStore(SQLiteFile, SQLiteUsage, SQLiteMemories):
    """Conversations in one SQLite file (`":memory:"` for a throwaway database).

    `window_cache`: how many scopes' newest messages (their history windows) this store
    keeps in memory, so that a turn of a busy scope does not read them again (0: none; see
    `sqlite_windows`)."""

    def __init__(
        self,
        path: str | os.PathLike[str] = "tenantry.db",
        *,
        max_messages: int | None = None,
        max_memories: int | None = DEFAULT_MAX_MEMORIES,
        usage_retention_days: int = DEFAULT_USAGE_RETENTION_DAYS,
        clock: Clock = time.time,
        readers: int = 2,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        window_cache: int = DEFAULT_WINDOW_CACHE,
    ) -> None:
        super().__init__(
            max_messages=max_messages,
            max_memories=max_memories,
            usage_retention_days=usage_retention_days,
            clock=clock,
        )
        check_int("window_cache", window_cache, minimum=0)
        self._open_file(
            os.fspath(path), readers=readers, synchronous=synchronous, busy_timeout=busy_timeout
        )
        self._locks = LocalScopeLocks()
        self._windows = WindowCache(window_cache) if window_cache > 0 else None

    # --- primitives ---------------------------------------------------------------------------

    async def _append(self, scope: Scope, write: TurnWrite) -> None:
        batch, state, now, usage = write.messages, write.state, write.now, write.usage
        cap = self._max_messages
        key = (scope.user_id, scope.session_id)
        windows = self._windows
        tracked = windows is not None and windows.holds(key)  # its window is to be extended
        version = new_version()

        def append(conn: sqlite3.Connection) -> tuple[Identity | None, Identity]:
            if write.idempotency is not None:  # first: a reused key writes nothing
                claim_key(conn, scope.user_id, write.idempotency, now)
            before = conn.execute(IDENTITY, key).fetchone() if tracked else None
            # One statement marks the scope active, counts the new messages, sets the state
            # and the version; the trim runs only when the count went over the cap.
            scope_id, count, updated_at = conn.execute(
                UPSERT_SCOPE, (*key, state, len(batch), now, version)
            ).fetchone()
            if len(batch) == 1:
                conn.execute(INSERT_MESSAGE, to_row(scope_id, batch[0]))
            elif batch:
                conn.executemany(INSERT_MESSAGE, [to_row(scope_id, m) for m in batch])
            if cap is not None and count > cap:
                conn.execute(
                    "DELETE FROM messages WHERE seq IN "
                    "(SELECT seq FROM messages WHERE scope_id = ? ORDER BY seq LIMIT ?)",
                    (scope_id, count - cap),
                )
                conn.execute(
                    "UPDATE scopes SET message_count = ? WHERE scope_id = ?", (cap, scope_id)
                )
                count = cap
            if usage is not None:
                count_usage(conn, scope.user_id, usage_day(now), usage)
            return before, (scope_id, version, count, updated_at)

        before, after = await self._write_small(append)
        if windows is not None and before is not None:  # committed: extend what it found
            windows.extend(key, before, after, batch)

    @staticmethod
    def _newest(
        conn: sqlite3.Connection, scope_id: int, limit: int | None, offset: int = 0
    ) -> list[Message]:
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM messages WHERE scope_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
            (scope_id, -1 if limit is None else limit, offset),
        ).fetchall()
        rows.reverse()
        return [from_row(row) for row in rows]

    def _window(
        self, conn: sqlite3.Connection, scope: Scope, limit: int | None
    ) -> tuple[list[Message], str | None]:
        """Give the scope's newest `limit` messages and its state, the messages from the
        window cache when the scope's row shows they did not change since they were read."""
        key = (scope.user_id, scope.session_id)
        row = conn.execute(FIND_WINDOW, key).fetchone()
        if row is None:
            return [], None
        scope_id, state = row[0], row[1]
        if limit == 0:
            return [], state
        windows = self._windows
        if windows is None or limit is None or limit > LOOP_READ_ROWS:
            return self._newest(conn, scope_id, limit), state
        identity = _identity(row)
        cached = windows.get(key, identity, limit)
        if cached is not None:
            return cached, state
        messages = self._newest(conn, scope_id, limit)
        windows.put(key, Window(identity, tuple(messages), limit))
        return messages, state

    @staticmethod
    def _find(conn: sqlite3.Connection, scope: Scope) -> tuple[int, str | None] | None:
        row: tuple[int, str | None] | None = conn.execute(
            "SELECT scope_id, state FROM scopes WHERE user_id = ? AND session_id = ?",
            (scope.user_id, scope.session_id),
        ).fetchone()
        return row

    async def _get_record(self, user_id: str, key: str) -> IdempotencyRecord | None:
        def read(conn: sqlite3.Connection) -> IdempotencyRecord | None:
            row = conn.execute(RECORD, (user_id, key)).fetchone()
            return None if row is None else IdempotencyRecord(*row)

        return await self._query(read)

    async def _read(self, scope: Scope, limit: int | None, offset: int) -> list[Message]:
        def read(conn: sqlite3.Connection) -> list[Message]:
            found = self._find(conn, scope)
            return [] if found is None else self._newest(conn, found[0], limit, offset)

        if limit is not None and limit + offset <= LOOP_READ_ROWS:
            return await self._query_small(read)
        return await self._query(read)

    async def _snapshot(self, scope: Scope, limit: int | None) -> Snapshot:
        def read(conn: sqlite3.Connection) -> tuple[list[Message], str | None]:
            return self._window(conn, scope, limit)

        small = limit is not None and limit <= LOOP_READ_ROWS
        messages, state = await (self._query_small(read) if small else self._query(read))
        return Snapshot(messages, decode_state(state))

    async def _snapshot_and_search(
        self, scope: Scope, limit: int | None, terms: list[str], wanted: int
    ) -> tuple[Snapshot, list[Memory]]:
        """One read transaction on one reader thread: the history, the state and the
        memories of one moment, for one thread hop."""

        def read(conn: sqlite3.Connection) -> tuple[list[Message], str | None, list[Memory]]:
            messages, state = self._window(conn, scope, limit)
            memories = self._search_rows(conn, scope.user_id, terms, wanted) if terms else []
            return messages, state, memories

        messages, state, memories = await self._query(read)
        return Snapshot(messages, decode_state(state)), memories

    async def _snapshot_and_admission(
        self, scope: Scope, limit: int | None, day: date, budgeted_only: bool
    ) -> tuple[Snapshot, Admission]:
        """One read transaction: the history, the state and the user's usage and budget of
        one moment (at most a month of day rows and one budget row beside the window, so a
        small window is read on the loop's thread, as `_snapshot` does); for the usual turn
        (`budgeted_only`, no override, its window cached) one statement instead
        (`_cached_turn_read`)."""

        def read(conn: sqlite3.Connection) -> tuple[list[Message], str | None, Admission]:
            messages, state = self._window(conn, scope, limit)
            admission = read_admission(conn, scope.user_id, day, budgeted_only=budgeted_only)
            return messages, state, admission

        small = limit is not None and limit <= LOOP_READ_ROWS
        if small and budgeted_only and limit and self._windows is not None and not self._in_memory:
            cached = await self._run(lambda: self._cached_turn_read(scope, limit))
            if cached is not None:  # the usual turn: its window cached, no budget override
                return Snapshot(cached[0], decode_state(cached[1])), UNREAD_ADMISSION
        messages, state, admission = await (self._query_small(read) if small else self._query(read))
        return Snapshot(messages, decode_state(state)), admission

    async def _cached_turn_read(
        self, scope: Scope, limit: int
    ) -> tuple[list[Message], str | None] | None:
        """The read of a turn whose user has no budget override and whose window is cached,
        as one statement on the loop's thread: the scope's window (from the cache) and state,
        or None when the user has an override (its usage is read with the window, in one
        transaction) or the window is not cached as of the scope's row, or the loop's
        connection cannot read now (then the full read follows)."""
        assert self._windows is not None
        key = (scope.user_id, scope.session_id)
        try:
            row = self._loop_connection().execute(FIND_WINDOW_AND_BUDGETED, key).fetchone()
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                return None
            raise
        if row[5]:  # the user has a budget override
            return None
        if row[0] is None:  # no such scope
            return [], None
        cached = self._windows.get(key, _identity(row), limit)
        return None if cached is None else (cached, row[1])

    async def _size(self, scope: Scope) -> int:
        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT message_count FROM scopes WHERE user_id = ? AND session_id = ?",
                (scope.user_id, scope.session_id),
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._query_small(count)

    async def _get_state(self, scope: Scope) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            found = self._find(conn, scope)
            return None if found is None else found[1]

        return await self._query_small(read)

    async def _clear_scope(self, scope: Scope) -> None:
        def clear(conn: sqlite3.Connection) -> None:
            found = self._find(conn, scope)
            if found is not None:
                _delete_scopes(conn, [found[0]])
            conn.execute(
                "DELETE FROM idempotency WHERE user_id = ? AND session_id = ?",
                (scope.user_id, scope.session_id),
            )

        await self._write(clear)
        if self._windows is not None:
            self._windows.forget((scope.user_id, scope.session_id))

    async def _clear_user(self, user_id: str) -> None:
        def clear(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM messages WHERE scope_id IN "
                "(SELECT scope_id FROM scopes WHERE user_id = ?)",
                (user_id,),
            )
            conn.execute("DELETE FROM scopes WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM idempotency WHERE user_id = ?", (user_id,))
            delete_user_memories(conn, user_id)

        await self._write(clear)
        if self._windows is not None:
            self._windows.forget_user(user_id)

    async def _clear_all(self) -> None:
        def clear(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM messages")
            conn.execute("DELETE FROM scopes")
            conn.execute("DELETE FROM idempotency")
            delete_all_memories(conn)
            delete_all_usage(conn)

        await self._write(clear)
        if self._windows is not None:
            self._windows.clear()

    async def _get_summary(self, scope: Scope) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT summary FROM scopes WHERE user_id = ? AND session_id = ?",
                (scope.user_id, scope.session_id),
            ).fetchone()
            return None if row is None else row[0]

        return await self._query_small(read)

    async def _set_summary(self, scope: Scope, summary: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE scopes SET summary = ? WHERE user_id = ? AND session_id = ?",
                (summary, scope.user_id, scope.session_id),
            )
        )

    async def _list_users(self) -> list[str]:
        def users(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT DISTINCT user_id FROM scopes ORDER BY user_id")
            return [row[0] for row in rows]

        return await self._query(users)

    async def _list_sessions(self, user_id: str) -> list[str]:
        def sessions(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT session_id FROM scopes WHERE user_id = ? ORDER BY session_id", (user_id,)
            )
            return [row[0] for row in rows]

        return await self._query(sessions)

    async def _prune(self, cutoff: float) -> int:
        def prune_batch(conn: sqlite3.Connection) -> int:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT scope_id FROM scopes WHERE updated_at < ? LIMIT ?",
                    (cutoff, PRUNE_BATCH),
                )
            ]
            _delete_scopes(conn, ids)
            return len(ids)

        def expire_batch(conn: sqlite3.Connection) -> int:
            return conn.execute(DELETE_EXPIRED, (self._clock(), PRUNE_BATCH)).rowcount

        pruned = await self._in_batches(lambda: self._write(prune_batch))
        if pruned and self._windows is not None:
            self._windows.clear()  # pruned scopes are inactive ones: few windows to read again
        await self._in_batches(lambda: self._write(expire_batch))
        return pruned

    def _lock(self, scope: Scope, timeout: float) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(scope, timeout)

    async def ping(self) -> None:
        await self._query(lambda conn: conn.execute("SELECT 1").fetchone())


def _identity(row: tuple[Any, ...]) -> Identity:
    """The identity of a scope's row read by FIND_WINDOW (or FIND_WINDOW_AND_BUDGETED): what a
    cached window must have been read with to be given."""
    return row[0], row[2], row[3], row[4]


def _delete_scopes(conn: sqlite3.Connection, scope_ids: list[int]) -> None:
    if not scope_ids:
        return
    marks = ",".join("?" * len(scope_ids))
    conn.execute(f"DELETE FROM messages WHERE scope_id IN ({marks})", scope_ids)
    conn.execute(f"DELETE FROM scopes WHERE scope_id IN ({marks})", scope_ids)


__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
