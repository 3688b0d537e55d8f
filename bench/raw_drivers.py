"""The raw drivers that `bench.stores` measures tenantry's stores against.

Each baseline keeps the same messages in an equivalent layout, written and read the way an
application without tenantry would do it with the same driver, and with the same threading,
pool size and durability as the tenantry backend it stands next to:

- `append` is one durable append of one message, in as many round trips as tenantry's `add`
  takes (one): SQLite one autocommit INSERT on a single writer thread (WAL,
  synchronous=NORMAL), PostgreSQL one autocommit INSERT from a pool of the same size, Redis one
  MULTI/EXEC pipeline of RPUSH + LTRIM;
- `append_batched` writes many messages in chunks of BATCH (one transaction or pipeline each):
  the driver's ceiling, which single-message appends cannot reach by construction;
- `read` gives the newest `limit` messages of a scope, oldest first, decoded from JSON where
  the layout stores JSON (what an application needs before it can use them).

No baseline validates ids or messages, keeps an index of users or sessions, counts messages
or takes turn locks: that is the work tenantry adds, and the ratio measures its price.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from tenantry import Message

T = TypeVar("T")
BATCH = 1000
"""Messages per transaction (or pipeline) of the batched variants."""

Row = tuple[str, str, Message]
"""(user_id, session_id, message)."""


def to_json(message: Message) -> str:
    """The message as the compact JSON an application would store."""
    return json.dumps(message.to_dict(), ensure_ascii=False, separators=(",", ":"))


class RawStore(Protocol):
    """What every baseline offers; see the module docstring."""

    async def append(self, user_id: str, session_id: str, message: Message) -> None: ...

    async def append_batched(self, rows: Sequence[Row]) -> None: ...

    async def read(self, user_id: str, session_id: str, limit: int) -> list[Any]: ...

    async def close(self) -> None: ...


class RawMemory:
    """No driver: a dict of deques keyed by scope, behind an async function."""

    def __init__(self) -> None:
        self._scopes: defaultdict[tuple[str, str], deque[Message]] = defaultdict(deque)

    async def append(self, user_id: str, session_id: str, message: Message) -> None:
        self._scopes[user_id, session_id].append(message)

    async def append_batched(self, rows: Sequence[Row]) -> None:
        for user_id, session_id, message in rows:
            self._scopes[user_id, session_id].append(message)

    async def read(self, user_id: str, session_id: str, limit: int) -> list[Any]:
        return list(self._scopes[user_id, session_id])[-limit:]

    async def close(self) -> None:
        self._scopes.clear()


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_messages (
    seq INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    tool_calls TEXT,
    tool_call_id TEXT,
    name TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS raw_messages_by_scope ON raw_messages (user_id, session_id, seq);
"""
_SQLITE_INSERT = (
    "INSERT INTO raw_messages (user_id, session_id, id, role, content, tool_calls,"
    " tool_call_id, name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_READ = (
    "SELECT id, role, content, tool_calls, tool_call_id, name, created_at FROM raw_messages"
    " WHERE user_id = ? AND session_id = ? ORDER BY seq DESC LIMIT ?"
)


def _sqlite_row(user_id: str, session_id: str, message: Message) -> tuple[Any, ...]:
    calls = json.dumps([c.to_dict() for c in message.tool_calls]) if message.tool_calls else None
    return (
        user_id,
        session_id,
        message.id,
        message.role,
        message.content,
        calls,
        message.tool_call_id,
        message.name,
        message.created_at,
    )


class RawSQLite:
    """sqlite3, the driver tenantry's SQLiteStore uses, with the same threads: one writer
    thread with its connection, `readers` reader threads with one connection each; WAL and
    synchronous=NORMAL as tenantry's defaults."""

    def __init__(self, path: str, readers: int = 2) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="raw-sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="raw-sqlite-reader")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SQLITE_SCHEMA)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    async def _on(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    async def append(self, user_id: str, session_id: str, message: Message) -> None:
        row = _sqlite_row(user_id, session_id, message)
        await self._on(self._writer, lambda: self._conn().execute(_SQLITE_INSERT, row))

    async def append_batched(self, rows: Sequence[Row]) -> None:
        def write(chunk: Sequence[Row]) -> None:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_SQLITE_INSERT, [_sqlite_row(*row) for row in chunk])
            conn.execute("COMMIT")

        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            await self._on(self._writer, lambda chunk=chunk: write(chunk))

    async def read(self, user_id: str, session_id: str, limit: int) -> list[Any]:
        def query() -> list[Any]:
            rows = self._conn().execute(_SQLITE_READ, (user_id, session_id, limit)).fetchall()
            rows.reverse()
            return rows

        return await self._on(self._readers, query)

    async def close(self) -> None:
        def shutdown() -> None:
            self._writer.shutdown(wait=True)
            self._readers.shutdown(wait=True)
            for conn in self._conns:
                conn.close()

        await asyncio.to_thread(shutdown)


class RawPostgres:
    """psycopg 3 with psycopg_pool, autocommit, the driver's default (server-side binding,
    statements prepared after a few uses); a pool of `pool_size` connections, as tenantry's."""

    def __init__(self, url: str, schema: str, pool_size: int = 10) -> None:
        from psycopg_pool import AsyncConnectionPool

        self._schema = schema
        self._table = f'"{schema}".raw_messages'
        self._pool = AsyncConnectionPool(
            url,
            min_size=pool_size,
            max_size=pool_size,
            kwargs={"autocommit": True},
            open=False,
            name="raw-postgres",
        )
        self._insert = f"INSERT INTO {self._table} (user_id, session_id, body) VALUES (%s, %s, %s)"
        self._read = (
            f"SELECT body FROM {self._table} WHERE user_id = %s AND session_id = %s"
            " ORDER BY id DESC LIMIT %s"
        )

    async def open(self) -> None:
        await self._pool.open(wait=True)
        async with self._pool.connection() as conn:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} (id bigint GENERATED ALWAYS AS"
                " IDENTITY PRIMARY KEY, user_id text NOT NULL, session_id text NOT NULL,"
                " body text NOT NULL)"
            )
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS raw_messages_by_scope ON {self._table}"
                " (user_id, session_id, id)"
            )

    async def append(self, user_id: str, session_id: str, message: Message) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(self._insert, (user_id, session_id, to_json(message)))

    async def append_batched(self, rows: Sequence[Row]) -> None:
        async with self._pool.connection() as conn:
            for start in range(0, len(rows), BATCH):
                params = [(u, s, to_json(m)) for u, s, m in rows[start : start + BATCH]]
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.executemany(self._insert, params)

    async def read(self, user_id: str, session_id: str, limit: int) -> list[Any]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._read, (user_id, session_id, limit))
            rows = await cur.fetchall()
        return [json.loads(body) for (body,) in reversed(rows)]

    async def close(self) -> None:
        await self._pool.close()


class RawRedis:
    """redis-py asyncio with a blocking pool of `pool_size` connections, as tenantry's; each
    scope a list, appended and trimmed to `cap` in one MULTI/EXEC pipeline."""

    def __init__(self, url: str, prefix: str, cap: int, pool_size: int = 20) -> None:
        from redis.asyncio import BlockingConnectionPool, Redis

        self._prefix = prefix
        self._cap = cap
        pool = BlockingConnectionPool.from_url(url, max_connections=pool_size)
        self._client = Redis(connection_pool=pool)

    def _key(self, user_id: str, session_id: str) -> str:
        return f"{self._prefix}:{user_id}:{session_id}"

    async def append(self, user_id: str, session_id: str, message: Message) -> None:
        key = self._key(user_id, session_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, to_json(message))
            pipe.ltrim(key, -self._cap, -1)
            await pipe.execute()

    async def append_batched(self, rows: Sequence[Row]) -> None:
        for start in range(0, len(rows), BATCH):
            async with self._client.pipeline(transaction=False) as pipe:
                for user_id, session_id, message in rows[start : start + BATCH]:
                    key = self._key(user_id, session_id)
                    pipe.rpush(key, to_json(message))
                    pipe.ltrim(key, -self._cap, -1)
                await pipe.execute()

    async def read(self, user_id: str, session_id: str, limit: int) -> list[Any]:
        rows = await self._client.lrange(self._key(user_id, session_id), -limit, -1)
        return [json.loads(row) for row in rows]

    async def close(self) -> None:
        await self._client.aclose(close_connection_pool=True)


__all__ = [
    "BATCH",
    "RawMemory",
    "RawPostgres",
    "RawRedis",
    "RawSQLite",
    "RawStore",
    "Row",
    "to_json",
]
