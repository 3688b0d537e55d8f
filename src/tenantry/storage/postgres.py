"""`PostgresStore`: many stateless replicas share one PostgreSQL database.

Driver: psycopg 3 (async) with psycopg_pool, rather than asyncpg, because it is typed through
and through (mypy strict without stubs) and its client-side binding cursor sends several
statements in one message: a whole turn — tenant setting, upsert, insert, trim — is one round
trip and one implicit transaction, with no BEGIN/COMMIT round trips and no server-side
prepared statements (so it also works behind PgBouncer in transaction mode). psycopg quotes
every value itself (ClientCursor); no value is ever pasted into SQL text by tenantry.
asyncpg decodes rows faster, but a turn's cost here is round trips and locks, not decoding.

Design (tables and queries in `postgres_sql`):

- Connections (`postgres_pool`): the pool belongs to the store, is created on first use
  together with the schema, and is closed by `close()`; a lost server closes the pool, so
  calls fail fast with `StoreUnavailable` and the store recovers by itself once it is back.
- A turn (`add_many`) is one transaction: upsert the scope row (which row-locks the scope, so
  concurrent appends to one scope queue), insert the messages in order, trim to max_messages,
  set the state. Reads of one scope are one statement, so messages and state are consistent.
  Clearing a scope locks its row first, so an append in flight either finishes before the
  clear (and is cleared) or starts a fresh scope after it; nothing is orphaned.
- Row-level security, on by default (`rls=False` turns it off): every single-tenant transaction
  switches to the NOLOGIN `tenant_role` and sets `tenantry.user_id`, so even a query that
  forgets its WHERE clause sees only that tenant's rows. Superusers and table owners bypass
  row-level security, which is why the switch of role is needed. Only list_users,
  prune_inactive and clear_all run as the connecting role, which must own the schema.
- Memories (`postgres_memories`, `PostgresMemories`, a base of the store): one table of
  memories with a GIN index of user-prefixed terms, so a search reads that user's postings
  only; one row per user that serialises the user's memory writes.
- Usage (`postgres_usage`, `PostgresUsage`, a base of the store): a row per user per UTC
  day that `append_turn` adds the turn's usage to in the turn's transaction; budget
  overrides; the shared rate limit's buckets. A session's summary is a
  column of its scope row.
- Turn lock: a session-level advisory lock, taken with `pg_try_advisory_lock` on the
  dedicated lock connection, after the in-process lock (see `locks`). One connection holds
  every lock of the process, so waiting and holding cost no pool connection and a turn can
  always get one to write. If the process dies, its session ends and PostgreSQL frees its
  locks at once. A turn's append checks, in its own transaction, that the lock connection
  still holds the lock; if that connection broke, the turn is refused (`ScopeLockLost`).

Durability: a turn is acknowledged after PostgreSQL committed it, so it is as durable as the
server's settings make a commit (with the defaults, it survives a crash of the server).
"""

from __future__ import annotations

import hashlib
import time
from contextlib import AbstractAsyncContextManager
from datetime import date
from typing import Any

from tenantry.errors import InvalidStoreURL, MissingDependency, StoreError, StoreUnavailable
from tenantry.storage.base import PRUNE_BATCH, Clock, Snapshot, TurnWrite
from tenantry.storage.codec import decode_message, decode_state, encode_message
from tenantry.storage.idempotency import IdempotencyRecord, reused
from tenantry.storage.locks import lost
from tenantry.storage.memories import DEFAULT_MAX_MEMORIES
from tenantry.storage.postgres_memories import MemoryQueries, PostgresMemories
from tenantry.storage.postgres_usage import (
    PostgresUsage,
    UsageQueries,
    admission_params,
    admission_row,
    usage_params,
)
from tenantry.storage.usage import DEFAULT_USAGE_RETENTION_DAYS, usage_day
from tenantry.tenancy import Scope
from tenantry.types import Admission, Message

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import PoolClosed, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("psycopg", "postgres") from exc

# After the driver: these modules run psycopg too.
from tenantry.storage.postgres_pool import Connection, PostgresConnections, server_lost
from tenantry.storage.postgres_queries import Queries
from tenantry.storage.postgres_sql import (
    KEY_TAKEN_SQLSTATE,
    LOCK_LOST_SQLSTATE,
    SCHEMA_VERSION,
    check_identifier,
)

LockProof = tuple[int, int]
"""(backend pid of the lock connection, advisory-lock key)."""


class PostgresStore(PostgresUsage[LockProof], PostgresMemories[LockProof]):
    """`PostgresStore("postgresql://user@host/db", schema="tenantry", max_messages=100)`."""

    def __init__(
        self,
        url: str,
        *,
        schema: str = "tenantry",
        max_messages: int | None = None,
        max_memories: int | None = DEFAULT_MAX_MEMORIES,
        usage_retention_days: int = DEFAULT_USAGE_RETENTION_DAYS,
        pool_size: int = 10,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        rls: bool = True,
        tenant_role: str = "tenantry_tenant",
        clock: Clock = time.time,
    ) -> None:
        super().__init__(
            max_messages=max_messages,
            max_memories=max_memories,
            usage_retention_days=usage_retention_days,
            clock=clock,
            pool_size=pool_size,
        )
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise InvalidStoreURL(f"not a PostgreSQL URL: {exc}") from None
        self.schema = schema
        self._q = Queries(check_identifier("schema", schema))
        self._mq = MemoryQueries(check_identifier("schema", schema))
        self._uq = UsageQueries(check_identifier("schema", schema))
        self._rls = rls
        check_identifier("tenant_role", tenant_role)
        self._where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
        self._where += f"/{params.get('dbname', '')}"
        self._db = PostgresConnections(
            url,
            schema=schema,
            where=self._where,
            pool_size=self._pool_size,
            pool_timeout=float(pool_timeout),
            connect_timeout=float(connect_timeout),
            tenant_role=tenant_role if rls else None,
        )

    def tenant_transaction(self, user_id: str) -> AbstractAsyncContextManager[Connection]:
        """Give a psycopg connection inside a transaction confined to one tenant, for your own
        queries on the store's tables: row-level security shows and accepts only that user's
        rows, even for a query with no WHERE clause. Use it on the store's event loop."""
        self._check_open()
        return self._db.transaction(Scope.of(user_id).user_id)

    async def _tenant(self, user_id: str, sql: str, params: dict[str, Any]) -> list[Any]:
        return await self._db.tenant(user_id, sql, params)

    def _translate(self, exc: Exception, scope: Scope | None) -> StoreError | None:
        if not isinstance(exc, psycopg.Error):
            return None
        if isinstance(exc, PoolTimeout):
            return StoreUnavailable(
                f"no PostgreSQL connection to {self._where} was free within "
                f"{self._db.pool_timeout:g}s; raise pool_size or check that the server is up"
            )
        if exc.sqlstate == LOCK_LOST_SQLSTATE and scope is not None:
            return lost(scope)
        if server_lost(exc) or isinstance(exc, PoolClosed):
            return StoreUnavailable(
                f"PostgreSQL at {self._where} is unreachable: {exc}; check that the server "
                "runs and the store URL is right"
            )
        return StoreError(f"PostgreSQL error at {self._where}: {exc}")

    # --- primitives ---------------------------------------------------------------------------

    async def _append(self, scope: Scope, write: TurnWrite) -> None:
        fence = self._fence(scope)
        bodies = [encode_message(m) for m in write.messages]
        cap = self._max_messages
        record = write.idempotency
        params: dict[str, Any] = {
            "u": scope.user_id,
            "s": scope.session_id,
            "state": write.state,
            "now": write.now,
            "cap": cap if cap is not None else 2**31 - 1,
            "bodies": bodies,
            **usage_params(usage_day(write.now), write.usage),
            "key": None if record is None else record.key,
            "key_hash": None if record is None else record.request_hash,
            "key_reply": None if record is None else record.reply,
            "key_expires": None if record is None else record.expires_at,
        }

        statements = [self._q.append]
        if bodies and cap is not None:
            statements.append(self._q.trim)
        if fence is not None:  # first: a turn that lost its lock writes nothing
            statements.insert(0, self._q.check_lock)
            params["holder"], params["lock_key"] = fence

        async def append() -> None:
            try:
                await self._tenant(scope.user_id, "; ".join(statements), params)
            except psycopg.Error as exc:
                if record is not None and exc.sqlstate == KEY_TAKEN_SQLSTATE:
                    raise reused(record.key) from None
                raise

        await self._run(append, scope)

    async def _newest(
        self, scope: Scope, limit: int | None, offset: int
    ) -> tuple[list[Message], str | None]:
        params = {"u": scope.user_id, "s": scope.session_id, "limit": limit, "offset": offset}
        rows = await self._run(lambda: self._tenant(scope.user_id, self._q.newest, params))
        if not rows:
            return [], None
        return [decode_message(body) for _, body in rows if body is not None], rows[0][0]

    async def _read(self, scope: Scope, limit: int | None, offset: int) -> list[Message]:
        return (await self._newest(scope, limit, offset))[0]

    async def _snapshot(self, scope: Scope, limit: int | None) -> Snapshot:
        messages, state = await self._newest(scope, limit, 0)
        return Snapshot(messages, decode_state(state))

    async def _snapshot_and_admission(
        self, scope: Scope, limit: int | None, day: date, budgeted_only: bool
    ) -> tuple[Snapshot, Admission]:
        """The history query and the admission query in one transaction: one round trip."""
        params = {"u": scope.user_id, "s": scope.session_id, "limit": limit, "offset": 0}
        sql = f"{self._q.newest}; {self._uq.admission}"
        both = {**params, **admission_params(day)}
        rows, ((*admission,),) = await self._run(
            lambda: self._db.tenant_sets(scope.user_id, sql, both)
        )
        messages = [decode_message(body) for _, body in rows if body is not None]
        snapshot = Snapshot(messages, decode_state(rows[0][0] if rows else None))
        return snapshot, admission_row(admission)

    async def _one(self, scope: Scope, query: str) -> Any:
        params = {"u": scope.user_id, "s": scope.session_id}
        rows = await self._run(lambda: self._tenant(scope.user_id, query, params))
        return rows[0][0] if rows else None

    async def _get_record(self, user_id: str, key: str) -> IdempotencyRecord | None:
        params = {"u": user_id, "k": key}
        rows = await self._run(lambda: self._tenant(user_id, self._q.record, params))
        return IdempotencyRecord(*rows[0]) if rows else None

    async def _size(self, scope: Scope) -> int:
        return int(await self._one(scope, self._q.size) or 0)

    async def _get_state(self, scope: Scope) -> str | None:
        state: str | None = await self._one(scope, self._q.state)
        return state

    async def _get_summary(self, scope: Scope) -> str | None:
        summary: str | None = await self._one(scope, self._q.summary)
        return summary

    async def _set_summary(self, scope: Scope, summary: str) -> None:
        params = {"u": scope.user_id, "s": scope.session_id, "summary": summary}
        await self._run(lambda: self._tenant(scope.user_id, self._q.set_summary, params))

    async def _clear_scope(self, scope: Scope) -> None:
        params = {"u": scope.user_id, "s": scope.session_id}
        await self._run(lambda: self._tenant(scope.user_id, self._q.clear_scope, params))

    async def _clear_user(self, user_id: str) -> None:
        await self._run(lambda: self._tenant(user_id, self._q.clear_user, {"u": user_id}))

    async def _clear_all(self) -> None:
        async def clear() -> None:
            async with self._db.transaction(None) as conn:
                await conn.execute(self._q.truncate)

        await self._run(clear)

    async def _list_users(self) -> list[str]:
        async def users() -> list[str]:
            async with self._db.transaction(None) as conn:
                cur = await conn.execute(self._q.users)
                return [row[0] for row in await cur.fetchall()]

        return await self._run(users)

    async def _list_sessions(self, user_id: str) -> list[str]:
        rows = await self._run(lambda: self._tenant(user_id, self._q.sessions, {"u": user_id}))
        return [row[0] for row in rows]

    async def _prune(self, cutoff: float) -> int:
        async def prune_batch() -> int:
            async with self._db.transaction(None) as conn:
                params = {"cutoff": cutoff, "batch": PRUNE_BATCH}
                cur = await conn.execute(self._q.delete_idle, params)
                rows = await cur.fetchall()
                if rows:
                    users, ids = [row[0] for row in rows], [row[1] for row in rows]
                    await conn.execute(self._q.delete_messages, {"users": users, "ids": ids})
                return len(rows)

        async def expire_batch() -> int:
            async with self._db.transaction(None) as conn:
                params = {"now": self._clock(), "batch": PRUNE_BATCH}
                return (await conn.execute(self._q.delete_expired, params)).rowcount

        pruned = await self._in_batches(lambda: self._run(prune_batch))
        await self._in_batches(lambda: self._run(expire_batch))
        return pruned

    # --- the turn lock ------------------------------------------------------------------------

    def lock_key(self, scope: Scope) -> int:
        """Give the advisory-lock key of a scope: 64 bits of a hash of schema and ids. Two
        scopes that shared a key would only queue behind each other, never mix."""
        text = "\0".join((self.schema, scope.user_id, scope.session_id)).encode()
        return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)

    async def _try_lock(self, scope: Scope) -> LockProof | None:
        key = self.lock_key(scope)
        conn = await self._db.lock_connection()
        try:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            row = await cur.fetchone()
        except psycopg.Error:
            await self._db.drop_lock_connection(conn)
            raise
        return (conn.info.backend_pid, key) if row is not None and row[0] else None

    async def _unlock(self, proof: LockProof) -> None:
        pid, key = proof
        conn = self._db.current_lock_connection()
        if conn is None or conn.info.backend_pid != pid:
            return  # that session is gone, and its locks with it
        try:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except psycopg.Error:
            # Ending the session is the one sure way to free a lock we failed to release.
            await self._db.drop_lock_connection(conn)

    # --- lifecycle ----------------------------------------------------------------------------

    async def _ping_server(self) -> None:
        async with self._db.connection(self._db.connect_timeout) as conn:
            await conn.execute("SELECT 1")

    async def _disconnect(self) -> None:
        await self._db.close()


__all__ = ["SCHEMA_VERSION", "PostgresStore"]
