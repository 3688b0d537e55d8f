"""`PostgresConnections`: the connections of one `PostgresStore`, and the transactions it
runs on them.

- The pool belongs to the store, is created on first use, and is closed with the store. The
  first use also creates the schema (`postgres_sql.install_schema`) on a dedicated
  connection, which then stays open to hold the process's turn locks (the lock connection).
- A connection found lost (the server restarted or went away) closes the whole pool. While
  the server is away each call then fails at once (StoreUnavailable, HTTP 503) instead of
  waiting `pool_timeout`; the first call after it answers again opens a new pool, so the
  store recovers by itself as soon as the server is back.
- Row-level security: `tenant(user_id, sql)` runs statements as one transaction switched to
  the NOLOGIN tenant role with `tenantry.user_id` set, in one round trip, so even a query
  that forgets its WHERE clause sees only that tenant's rows. `transaction(None)` runs as
  the connecting role, for the few operations that span tenants.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from tenantry.errors import StoreClosed
from tenantry.storage.postgres_sql import install_schema

Connection = psycopg.AsyncConnection[Any]

BECOME_TENANT = (
    "SELECT set_config('role', %(tenant_role)s, true),"
    " set_config('tenantry.user_id', %(tenant)s, true)"
)
"""Switch the transaction to the tenant role, confined to the tenant in `tenantry.user_id`."""


class PostgresConnections:
    """The pool and the lock connection of one store (all on the store's home loop)."""

    def __init__(
        self,
        url: str,
        *,
        schema: str,
        where: str,
        pool_size: int,
        pool_timeout: float,
        connect_timeout: float,
        tenant_role: str | None,
    ) -> None:
        self.url = url
        self.schema = schema
        self.where = where
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self.connect_timeout = connect_timeout
        self.tenant_role = tenant_role
        """The role of row-level security; None when it is off."""
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._lock_conn: Connection | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False

    async def connect(self) -> Connection:
        """Give a new autocommit connection of its own (not from the pool)."""
        return await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout))
        )

    async def _ready(self) -> AsyncConnectionPool[Connection]:
        """Give the pool, creating the schema, the lock connection and the pool on first use,
        and a new pool once the server answers again after a connection to it was lost."""
        if self._closed:
            raise StoreClosed("PostgresStore is closed; open a new store")
        if self._pool is not None and not self._pool.closed:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                conn = await self.connect()
                try:
                    await install_schema(
                        conn, self.schema, tenant_role=self.tenant_role, where=self.where
                    )
                except BaseException:
                    await conn.close()
                    raise
                self._lock_conn = conn
                self._pool = await self._open_pool()
            elif self._pool.closed:
                # Closed by `connection` when the server was lost. While it is still away
                # this fails at once (StoreUnavailable), instead of waiting pool_timeout.
                probe = await self.connect()
                await probe.close()
                self._pool = await self._open_pool()
        return self._pool

    async def _open_pool(self) -> AsyncConnectionPool[Connection]:
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            timeout=self.pool_timeout,
            kwargs={"autocommit": True, "cursor_factory": psycopg.AsyncClientCursor},
            open=False,
            name=f"tenantry-{self.schema}",
        )
        await pool.open(wait=False)
        return pool

    @asynccontextmanager
    async def connection(self, wait: float | None = None) -> AsyncIterator[Connection]:
        """Give a connection of the pool (waiting up to `wait` seconds, default pool_timeout).

        A connection found lost closes its whole pool: after a restart of the server every
        connection of the pool is dead, and psycopg_pool would replace them with a back-off
        that can leave it empty for minutes after the server is back, while requests wait
        pool_timeout each. Closed, the pool fails its waiting requests at once, and the next
        request opens a new pool if the server answers (see `_ready`)."""
        pool = await self._ready()
        try:
            conn = await pool.getconn(wait)
        except PoolClosed:
            # Closed after a lost connection while this waited; nothing ran yet, so wait on
            # the new pool instead (or fail at once if the server is still away).
            pool = await self._ready()
            conn = await pool.getconn(wait)
        try:
            async with conn:
                yield conn
        except psycopg.Error as exc:
            if server_lost(exc):
                await pool.close(timeout=1.0)
            raise
        finally:
            await pool.putconn(conn)

    async def tenant(self, user_id: str, sql: str, params: dict[str, Any]) -> list[Any]:
        """Run `sql` (one or more statements) as one transaction confined to `user_id`'s rows,
        in one round trip; give the rows of the last statement."""
        if self.tenant_role is not None:
            sql = f"{BECOME_TENANT}; {sql}"
            params = {**params, "tenant_role": self.tenant_role, "tenant": user_id}
        async with self.connection() as conn:
            cur = conn.cursor()
            await cur.execute(sql, params, prepare=False)
            while cur.nextset():
                pass
            return await cur.fetchall() if cur.description else []

    async def tenant_sets(self, user_id: str, sql: str, params: dict[str, Any]) -> list[list[Any]]:
        """`tenant`, giving the rows of every statement of `sql` that returns rows, in order."""
        skip = 0
        if self.tenant_role is not None:
            sql = f"{BECOME_TENANT}; {sql}"
            params = {**params, "tenant_role": self.tenant_role, "tenant": user_id}
            skip = 1
        async with self.connection() as conn:
            cur = conn.cursor()
            await cur.execute(sql, params, prepare=False)
            sets = []
            while True:
                if cur.description:
                    sets.append(await cur.fetchall())
                if not cur.nextset():
                    return sets[skip:]

    @asynccontextmanager
    async def transaction(self, user_id: str | None) -> AsyncIterator[Connection]:
        """An explicit transaction: confined to `user_id`, or as the connecting role (for
        operations that span tenants) when None."""
        async with self.connection() as conn, conn.transaction():
            if user_id is not None and self.tenant_role is not None:
                params = {"tenant_role": self.tenant_role, "tenant": user_id}
                await conn.execute(BECOME_TENANT, params)
            yield conn

    # --- the lock connection ------------------------------------------------------------------

    async def lock_connection(self) -> Connection:
        """Give the connection that holds this process's advisory locks."""
        await self._ready()
        conn = self._lock_conn
        if conn is not None and not conn.closed:
            return conn
        assert self._opening is not None
        async with self._opening:
            if self._lock_conn is None or self._lock_conn.closed:
                self._lock_conn = await self.connect()
            return self._lock_conn

    def current_lock_connection(self) -> Connection | None:
        """Give the lock connection if it is open (never opens one)."""
        conn = self._lock_conn
        return None if conn is None or conn.closed else conn

    async def drop_lock_connection(self, conn: Connection) -> None:
        """Close `conn`, which held locks: ending its session frees them all."""
        if self._lock_conn is conn:
            self._lock_conn = None
        await conn.close()

    async def close(self) -> None:
        self._closed = True
        pool, conn = self._pool, self._lock_conn
        self._pool = self._lock_conn = None
        if pool is not None:
            await pool.close()
        if conn is not None:
            await conn.close()


def server_lost(exc: psycopg.Error) -> bool:
    """Tell whether `exc` means the server cannot be reached: the connection broke, could
    not be made, or the server is shutting down or starting up."""
    if isinstance(exc, PoolTimeout | PoolClosed):
        return False
    state = exc.sqlstate or ""
    return isinstance(exc, psycopg.InterfaceError) or (
        isinstance(exc, psycopg.OperationalError) and (not state or state.startswith(("08", "57P")))
    )


__all__ = ["BECOME_TENANT", "Connection", "PostgresConnections", "server_lost"]
