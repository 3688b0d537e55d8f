"""What PostgresStore promises of memories beyond the contract: row-level security on the
memory tables, a search confined to the transaction's tenant, index access to one user's
rows whatever other users hold, and schema version 2 upgraded in place."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tenantry import Message, Summary
from tenantry.storage.postgres import SCHEMA_VERSION, PostgresStore
from tenantry.storage.postgres_memories import _tsquery, _tsvector
from tenantry.storage.postgres_sql import RLS_TABLES
from tests.conftest import POSTGRES_URL_VARIABLE, drop_postgres_schema, namespace_name, server_url
from tests.storage.test_postgres import _nodes, _scans, _superuser


@pytest.fixture
async def schema(tmp_path: Path) -> AsyncIterator[str]:
    server_url(POSTGRES_URL_VARIABLE)
    name = namespace_name(tmp_path)
    yield name
    await drop_postgres_schema(name)


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(os.environ[POSTGRES_URL_VARIABLE], schema=schema, max_memories=None)
    yield store
    await store.close()


async def _two_users(store: PostgresStore) -> None:
    await store.add_memory("Alice's vault code is 1234", user_id="alice")
    await store.add_memory("Bob's vault code is 9876", user_id="bob", embedding=[1.0, 0.0])


# --- row-level security -----------------------------------------------------------------------


async def test_a_tenant_transaction_sees_and_writes_only_its_own_memory_rows(
    store: PostgresStore, schema: str
) -> None:
    await _two_users(store)
    async with store.tenant_transaction("alice") as conn:
        cur = await conn.execute(f'SELECT user_id, text FROM "{schema}".memories')
        assert await cur.fetchall() == [("alice", "Alice's vault code is 1234")]
        cur = await conn.execute(f'SELECT user_id FROM "{schema}".memory_users')
        assert await cur.fetchall() == [("alice",)]
        cur = await conn.execute(f"UPDATE \"{schema}\".memories SET text = 'owned' RETURNING 1")
        assert len(await cur.fetchall()) == 1  # alice's own only
        raise psycopg.Rollback()
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        async with store.tenant_transaction("alice") as conn:
            await conn.execute(
                f'INSERT INTO "{schema}".memories (user_id, memory_id, stamp, text, terms,'
                " created_at, updated_at, version) VALUES ('bob', 'x', 1, 'planted', '', 0, 0, 1)"
            )
    assert [m.text for m in await store.list_memories(user_id="bob")] == [
        "Bob's vault code is 9876"
    ]


async def test_the_search_function_is_confined_to_the_transactions_tenant(
    store: PostgresStore, schema: str
) -> None:
    await _two_users(store)
    bobs_terms = _tsquery("bob", ["vault", "code"])  # an attacker who knows bob's key
    search = f'SELECT user_id, text FROM "{schema}".search_memories(%s::tsquery, 10)'
    async with store.tenant_transaction("alice") as conn:
        cur = await conn.execute(search, (bobs_terms,))
        assert await cur.fetchall() == []
        cur = await conn.execute(search, (_tsquery("alice", ["vault"]),))
        assert await cur.fetchall() == [("alice", "Alice's vault code is 1234")]
    async with await _superuser() as conn:  # no tenant set: nothing, even for the owner
        cur = await conn.execute(search, (bobs_terms,))
        assert await cur.fetchall() == []
        cur = await conn.execute(
            "SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) acl "
            "WHERE p.proname = 'search_memories' AND p.pronamespace = %s::regnamespace "
            "AND acl.grantee = 0",
            (f'"{schema}"',),
        )
        assert await cur.fetchone() == (0,)  # PUBLIC may not call it


async def test_every_table_has_its_tenant_policy(store: PostgresStore, schema: str) -> None:
    await store.ping()
    async with await _superuser() as conn:
        cur = await conn.execute(
            "SELECT tablename FROM pg_policies WHERE schemaname = %s ORDER BY 1", (schema,)
        )
        assert [row[0] for row in await cur.fetchall()] == sorted(RLS_TABLES)
    assert set(RLS_TABLES) == {
        "memories",
        "memory_users",
        "messages",
        "scopes",
        "usage_days",
        "budgets",
        "rate_buckets",
        "idempotency",
    }


# --- query plans ------------------------------------------------------------------------------


async def _plan(
    store: PostgresStore, query: str, params: dict[str, Any], *, as_owner: bool = False
) -> Any:
    """The executed plan of `query` as tenant "me" (or as the tables' owner, as
    `search_memories` runs its query); what it changed is rolled back."""
    async with store.tenant_transaction("me") as conn:
        if as_owner:
            await conn.execute("RESET ROLE")
        cur = await conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", params)
        row = await cur.fetchone()
        assert row is not None
        raise psycopg.Rollback()
    return _nodes(row[0][0]["Plan"])


async def test_reading_one_users_memories_touches_only_that_users_rows(
    store: PostgresStore, schema: str
) -> None:
    for n in range(30):
        await store.add_memory(f"green tea fact {n}", user_id="me", embedding=[1.0, n])
    async with await _superuser() as conn:  # 3,000 others with 30 memories of the same words
        await conn.execute(
            f'INSERT INTO "{schema}".memories (user_id, memory_id, stamp, text, terms, embedding,'
            " created_at, updated_at, version) SELECT 'other-' || u, 'm' || n, n, 'green tea',"
            " 'dummy', '\\x0000803f'::bytea, 0, 0, 1"
            " FROM generate_series(1, 3000) u, generate_series(1, 30) n"
        )
        for u in range(1, 3001):
            other = f"other-{u}"
            await conn.execute(
                f'UPDATE "{schema}".memories SET terms = %s::tsvector WHERE user_id = %s',
                (_tsvector(other, "green tea"), other),
            )
        await conn.execute(f'ANALYZE "{schema}".memories')
    q = _tsquery("me", ["green", "tea"])
    plans = {  # search: the query search_memories runs, as the owner
        "search": await _plan(
            store, store._mq.search, {"u": "me", "q": q, "limit": 5}, as_owner=True
        ),
        "list": await _plan(store, store._mq.newest, {"u": "me", "limit": 5}),
        "vectors": await _plan(store, store._mq.vectors, {"u": "me"}),
    }
    for name, nodes in plans.items():
        print(name, [(n["Node Type"], n.get("Index Name"), n.get("Actual Rows")) for n in nodes])
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], name
        for scan in _scans(nodes, "memories"):
            assert scan["Actual Rows"] <= 30, name
            assert scan.get("Rows Removed by Filter", 0) == 0, name
        index_scans = [n for n in nodes if n.get("Index Name", "").startswith("memories")]
        assert index_scans, name
        assert all(n["Actual Rows"] <= 30 for n in index_scans), name
    found = await store.search_memories("green tea", user_id="me", limit=50)
    assert len(found) == 30
    assert {m.user_id for m in found} == {"me"}


# --- schema -----------------------------------------------------------------------------------


async def test_a_version_2_schema_is_upgraded_in_place(store: PostgresStore, schema: str) -> None:
    await store.add_many([Message.user("written by version 2")], user_id="u", state={"k": 1})
    async with await _superuser() as conn:  # what a version-2 schema looked like
        for function in ("add_memory", "update_memory", "search_memories"):
            await conn.execute(f'DROP FUNCTION "{schema}".{function}')
        await conn.execute(f'DROP TABLE "{schema}".memories, "{schema}".memory_users')
        await conn.execute(f'ALTER TABLE "{schema}".scopes DROP COLUMN summary')
        await conn.execute(f'UPDATE "{schema}".schema_version SET version = 2')
    upgraded = PostgresStore(os.environ[POSTGRES_URL_VARIABLE], schema=schema)
    try:
        assert [m.content for m in await upgraded.get_messages("u")] == ["written by version 2"]
        assert await upgraded.get_state("u") == {"k": 1}
        memory = await upgraded.add_memory("The user's name is Alice", user_id="u")
        assert await upgraded.search_memories("name", user_id="u") == [memory]
        await upgraded.set_summary(Summary("old talk", "m-1", 1.0), user_id="u")
        assert await upgraded.get_summary("u") == Summary("old talk", "m-1", 1.0)
        async with upgraded.tenant_transaction("someone-else") as conn:
            cur = await conn.execute(f'SELECT count(*) FROM "{schema}".memories')
            assert await cur.fetchone() == (0,)  # the new tables have their policies
    finally:
        await upgraded.close()
    async with await _superuser() as conn:
        cur = await conn.execute(f'SELECT max(version) FROM "{schema}".schema_version')
        assert await cur.fetchone() == (SCHEMA_VERSION,)
        cur = await conn.execute(
            "SELECT count(*) FROM pg_policies WHERE schemaname = %s", (schema,)
        )
        assert await cur.fetchone() == (len(RLS_TABLES),)
