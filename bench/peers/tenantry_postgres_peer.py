"""tenantry on PostgreSQL, for the tenant-growth benchmark (`bench/tenants.py`): the same
Agent as `tenantry_peer`, on `PostgresStore` (row-level security on, the default), in a schema
of its own per database, dropped at `close`.

Other tenants are bulk-loaded as on SQLite: one real turn, its rows cloned per tenant with the
ids rewritten (each clone's messages get ids of their own), in two INSERT ... SELECT
statements over the tenant ids, then ANALYZE, as autovacuum would after such a load.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg

from bench.peers.tenantry_peer import TenantryPeer
from tenantry.storage.postgres_sql import check_identifier


class TenantryPostgresPeer(TenantryPeer):
    """tenantry's Agent on PostgresStore at `url` (a database the benchmark may write to)."""

    name = "tenantry-postgres"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.settings = {
            **self.settings,
            "storage": "open_store('postgresql://…?schema=…'): PostgresStore, row-level "
            "security on (the default), a schema per database",
        }
        self._url = url
        self._schema = ""

    def store_url(self, path: Path) -> str:
        self._schema = f"tenantry_bench_{uuid.uuid4().hex[:12]}"
        return f"{self._url}{'&' if '?' in self._url else '?'}schema={self._schema}"

    async def add_tenants(self, user_ids: Sequence[str], session_id: str) -> None:
        template, others = user_ids[0], list(user_ids[1:])
        await self.turn(template, session_id, "Hello")
        schema = check_identifier("schema", self._schema)
        params = {"t": template, "s": session_id, "ids": others}
        async with await psycopg.AsyncConnection.connect(self._url) as conn:
            await conn.execute(
                f"INSERT INTO {schema}.scopes"
                " (user_id, session_id, state, message_count, next_pos, updated_at)"
                " SELECT u.id, t.session_id, t.state, t.message_count, t.next_pos, t.updated_at"
                f" FROM {schema}.scopes t, unnest(%(ids)s::text[]) AS u(id)"
                " WHERE t.user_id = %(t)s AND t.session_id = %(s)s",
                params,
            )
            await conn.execute(
                f"INSERT INTO {schema}.messages (scope_id, pos, user_id, body)"
                " SELECT sc.scope_id, m.pos, sc.user_id,"
                " replace(m.body, m.body::json->>'id', left(md5(sc.user_id || m.pos), 22))"
                f" FROM {schema}.scopes t JOIN {schema}.messages m ON m.scope_id = t.scope_id"
                f" CROSS JOIN unnest(%(ids)s::text[]) AS u(id)"
                f" JOIN {schema}.scopes sc ON sc.user_id = u.id AND sc.session_id = t.session_id"
                " WHERE t.user_id = %(t)s AND t.session_id = %(s)s",
                params,
            )
            await conn.commit()
            await conn.set_autocommit(True)
            await conn.execute(f"ANALYZE {schema}.scopes")
            await conn.execute(f"ANALYZE {schema}.messages")

    async def database_bytes(self) -> int:
        """Give the bytes of the schema's tables with their indexes and TOAST."""
        async with await psycopg.AsyncConnection.connect(self._url) as conn:
            cursor = await conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r'",
                (self._schema,),
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        await super().close()
        if self._schema:
            schema = check_identifier("schema", self._schema)
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            self._schema = ""


def adapter(url: str) -> TenantryPostgresPeer:
    return TenantryPostgresPeer(url)
