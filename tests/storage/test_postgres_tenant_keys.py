"""PostgresStore's schema can be distributed by user_id (Citus): every table carries a
`user_id` column of one type, every primary key, unique and exclusion constraint holds it,
read from the catalog so that a table added later is checked too; and a schema of version 3
(main before this) is upgraded to that layout in place, in one transaction, with its data.

That no per-tenant statement lacks a `user_id` predicate is checked from the server's plan
log in `test_postgres_routing.py`."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tenantry import Message, Summary
from tenantry.errors import StoreError
from tenantry.storage.postgres import SCHEMA_VERSION, PostgresStore
from tenantry.storage.postgres_sql import RLS_TABLES
from tests.conftest import (
    POSTGRES_URL_VARIABLE,
    drop_postgres_schema,
    namespace_name,
    server_url,
)

COORDINATOR_TABLES = {"schema_version"}
"""The tables that hold no tenant's rows (they stay on the coordinator, docs/scaling.md)."""


@pytest.fixture
async def schema(tmp_path: Path) -> AsyncIterator[str]:
    server_url(POSTGRES_URL_VARIABLE)
    name = namespace_name(tmp_path)
    yield name
    await drop_postgres_schema(name)


async def _superuser() -> Any:
    return await psycopg.AsyncConnection.connect(os.environ[POSTGRES_URL_VARIABLE], autocommit=True)


async def _rows(sql: str, *params: Any) -> list[Any]:
    async with await _superuser() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


async def tenant_key_problems(schema: str) -> list[str]:
    """Give what keeps the tables of `schema` from being distributed by user_id, from the
    catalog: a table (other than COORDINATOR_TABLES) without a NOT NULL user_id column, user_id
    columns of different types or collations (co-location needs one), a unique index or a
    primary-key, unique or exclusion constraint whose key columns lack user_id."""
    problems = []
    tables = await _rows(
        "SELECT c.relname, a.attnotnull, format_type(a.atttypid, a.atttypmod), co.collname"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id'"
        "  AND NOT a.attisdropped"
        " LEFT JOIN pg_collation co ON co.oid = a.attcollation"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
        schema,
    )
    kinds = set()
    for table, not_null, kind, collation in tables:
        if table in COORDINATOR_TABLES:
            continue
        if kind is None or not not_null:
            problems.append(f"table {table} has no NOT NULL user_id column")
        else:
            kinds.add((kind, collation))
    if len(kinds) > 1:
        problems.append(f"user_id columns differ, so the tables cannot be co-located: {kinds}")
    # Key columns only (an index's INCLUDE columns are no part of its uniqueness).
    indexes = await _rows(
        "SELECT c.relname, (SELECT x.relname FROM pg_class x WHERE x.oid = i.indexrelid),"
        " EXISTS (SELECT 1 FROM pg_attribute a"
        "  WHERE a.attrelid = c.oid AND a.attname = 'user_id'"
        "  AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]))"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND (i.indisunique OR i.indisprimary OR i.indisexclusion)",
        schema,
    )
    problems += [f"unique index {i} of {t} lacks user_id" for t, i, has in indexes if not has]
    constraints = await _rows(
        "SELECT c.relname, k.conname, k.contype, EXISTS (SELECT 1 FROM pg_attribute a"
        "  WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND a.attnum = ANY (k.conkey))"
        " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND k.contype IN ('p', 'u', 'x')",
        schema,
    )
    problems += [
        f"constraint {name} ({kind}) of {table} lacks user_id"
        for table, name, kind, has in constraints
        if not has
    ]
    if not [t for t, *_ in tables if t not in COORDINATOR_TABLES] or not indexes:
        problems.append(f"schema {schema} has no tenant tables or keys: nothing was checked")
    return problems


async def _keys(schema: str) -> dict[str, str]:
    rows = await _rows(
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE connamespace = %s::regnamespace AND contype = 'p'",
        schema,
    )
    return {table.rsplit(".", 1)[-1]: definition for table, definition in rows}


USAGE_AND_KEY_TABLES = {
    "usage_days": "PRIMARY KEY (user_id, day)",
    "budgets": "PRIMARY KEY (user_id)",
    "rate_buckets": "PRIMARY KEY (user_id)",
    "idempotency": "PRIMARY KEY (user_id, key)",
}
"""The keys of the tables of versions 4 and 5: tenant-first from the start."""


async def test_every_key_of_every_table_holds_user_id(schema: str) -> None:
    async with PostgresStore(os.environ[POSTGRES_URL_VARIABLE], schema=schema) as store:
        await store.ping()
    assert await tenant_key_problems(schema) == []
    assert await _keys(schema) == {
        "scopes": "PRIMARY KEY (user_id, scope_id)",
        "messages": "PRIMARY KEY (user_id, scope_id, pos)",
        "memories": "PRIMARY KEY (user_id, memory_id)",
        "memory_users": "PRIMARY KEY (user_id)",
        **USAGE_AND_KEY_TABLES,
    }


async def test_the_catalog_check_finds_a_key_without_user_id(schema: str) -> None:
    """The check reads the catalog, so a table added later cannot slip through."""
    async with PostgresStore(os.environ[POSTGRES_URL_VARIABLE], schema=schema) as store:
        await store.ping()
    async with await _superuser() as conn:
        await conn.execute(f'CREATE TABLE "{schema}".later (id bigint PRIMARY KEY, note text)')
        await conn.execute(
            f'CREATE TABLE "{schema}".later_too (user_id text NOT NULL, k text, UNIQUE (k))'
        )
        await conn.execute(
            f'CREATE UNIQUE INDEX by_k ON "{schema}".later_too (k) INCLUDE (user_id)'
        )
    problems = await tenant_key_problems(schema)
    assert "table later has no NOT NULL user_id column" in problems
    assert "constraint later_pkey (p) of later lacks user_id" in problems
    assert "constraint later_too_k_key (u) of later_too lacks user_id" in problems
    assert "unique index by_k of later_too lacks user_id" in problems  # INCLUDE is no key
    assert any("user_id columns differ" in p for p in problems)  # text "C" against text


# --- the upgrade from version 3 ---------------------------------------------------------------


async def _to_version_3(schema: str) -> None:
    """Give the schema the keys and the search function version 3 had (main before 6)."""
    search = (
        "SELECT m.* FROM (SELECT * FROM {s}.memories WHERE terms @@ $2 OFFSET 0) m"
        " WHERE m.user_id = $1 ORDER BY ts_rank(m.terms, $2) DESC, m.stamp DESC LIMIT $3"
    ).format(s=f'"{schema}"')
    async with await _superuser() as conn, conn.transaction():
        await conn.execute(
            f'ALTER TABLE "{schema}".scopes DROP CONSTRAINT scopes_pkey, ADD PRIMARY KEY (scope_id)'
        )
        await conn.execute(
            f'ALTER TABLE "{schema}".messages DROP CONSTRAINT messages_pkey,'
            " ADD PRIMARY KEY (scope_id, pos)"
        )
        await conn.execute(
            f'CREATE OR REPLACE FUNCTION "{schema}".search_memories(p_query tsquery,'
            f' p_limit integer) RETURNS SETOF "{schema}".memories LANGUAGE plpgsql STABLE'
            " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN"
            f" RETURN QUERY EXECUTE '{search}'"
            " USING nullif(current_setting('tenantry.user_id', true), ''), p_query, p_limit;"
            " END $$"
        )
        await conn.execute(f'UPDATE "{schema}".schema_version SET version = 3')
    assert await _keys(schema) == {
        "scopes": "PRIMARY KEY (scope_id)",
        "messages": "PRIMARY KEY (scope_id, pos)",
        "memories": "PRIMARY KEY (user_id, memory_id)",
        "memory_users": "PRIMARY KEY (user_id)",
        **USAGE_AND_KEY_TABLES,
    }


Expected = dict[tuple[str, str], tuple[list[str], dict[str, int]]]


async def _fill(store: PostgresStore) -> Expected:
    """Store turns of several users and sessions (the longer ones trimmed to max_messages
    10), memories and summaries; give each scope's expected messages, in order, and state."""
    expected: Expected = {}
    for u in range(6):
        for s in range(3):
            texts = [f"u{u} s{s} m{n}" for n in range(2 * (u + s) + 2)]
            for n in range(0, len(texts), 2):
                pair = [Message.user(texts[n]), Message.assistant(texts[n + 1])]
                await store.add_many(pair, user_id=f"user-{u}", session_id=f"s{s}", state={"n": n})
            expected[(f"user-{u}", f"s{s}")] = (texts[-10:], {"n": len(texts) - 2})
        await store.add_memory(f"user {u} likes green tea", user_id=f"user-{u}")
        await store.set_summary(
            Summary(f"talk {u}", "m-1", 1.0), user_id=f"user-{u}", session_id="s0"
        )
    return expected


async def _counts(schema: str) -> list[Any]:
    scopes, messages = f'"{schema}".scopes', f'"{schema}".messages'
    return await _rows(f"SELECT (SELECT count(*) FROM {scopes}), (SELECT count(*) FROM {messages})")


async def test_a_version_3_schema_with_data_is_upgraded_in_place(schema: str) -> None:
    url = os.environ[POSTGRES_URL_VARIABLE]
    async with PostgresStore(url, schema=schema, max_messages=10) as old:
        expected = await _fill(old)
    await _to_version_3(schema)
    counts = await _counts(schema)

    # Three replicas start on it together: the DDL lock lets one upgrade, the others wait.
    stores = [PostgresStore(url, schema=schema, max_messages=10) for _ in range(3)]
    try:
        await asyncio.gather(*(s.size("user-0", "s0") for s in stores))
        store = stores[0]
        for (user, session), (texts, state) in expected.items():
            got = await store.get_messages(user, session)
            assert [m.content for m in got] == texts, (user, session)
            assert await store.get_state(user, session) == state, (user, session)
        assert sorted(await store.list_users()) == [f"user-{u}" for u in range(6)]
        assert await store.get_summary("user-3", "s0") == Summary("talk 3", "m-1", 1.0)
        found = await store.search_memories("green tea", user_id="user-4")
        assert [m.text for m in found] == ["user 4 likes green tea"]
        # New turns continue each scope's order after the old messages.
        await store.add_many(
            [Message.user("after"), Message.assistant("upgrade")], user_id="user-5"
        )
        contents = [m.content for m in await store.get_messages("user-5", "default")]
        assert contents == ["after", "upgrade"]
        await store.add(Message.user("next"), user_id="user-5", session_id="s2")
        contents = [m.content for m in await store.get_messages("user-5", "s2")]
        assert contents == [*expected[("user-5", "s2")][0][1:], "next"]
        # Row-level security is still on: a tenant sees only its own rows.
        async with store.tenant_transaction("user-1") as conn:
            cur = await conn.execute(f'SELECT DISTINCT user_id FROM "{schema}".messages')
            assert await cur.fetchall() == [("user-1",)]
    finally:
        for s in stores:
            await s.close()
    assert counts == [(18, sum(len(texts) for texts, _ in expected.values()))]
    after = await _counts(schema)
    # Nothing lost: the old rows, the new session's 2, and s2's "next" replaced its oldest.
    assert after == [(19, counts[0][1] + 2)]
    assert await tenant_key_problems(schema) == []
    (body,) = await _rows(
        "SELECT prosrc FROM pg_proc WHERE proname = 'search_memories'"
        " AND pronamespace = %s::regnamespace",
        schema,
    )
    assert "AND user_id = $1 OFFSET 0" in body[0]  # the search was replaced: routable
    assert await _rows(f'SELECT max(version) FROM "{schema}".schema_version') == [(SCHEMA_VERSION,)]
    policies = await _rows(
        "SELECT c.relname FROM pg_class c JOIN pg_policies p ON p.tablename = c.relname"
        " AND p.schemaname = %s WHERE c.relnamespace = %s::regnamespace AND c.relrowsecurity"
        " ORDER BY 1",
        schema,
        schema,
    )
    assert [p for (p,) in policies] == sorted(RLS_TABLES)


async def test_a_failed_upgrade_changes_nothing(schema: str) -> None:
    """The upgrade is one transaction: when its second table cannot be changed, the first
    keeps its old key too, the version stays 3, and the store says why."""
    url = os.environ[POSTGRES_URL_VARIABLE]
    async with PostgresStore(url, schema=schema) as old:
        await old.add_many([Message.user("q"), Message.assistant("a")], user_id="u")
    await _to_version_3(schema)
    async with await _superuser() as conn:  # something of the user's depends on the old key
        await conn.execute(
            f'CREATE TABLE "{schema}".pins (scope_id bigint, pos bigint,'
            f' FOREIGN KEY (scope_id, pos) REFERENCES "{schema}".messages)'
        )
    with pytest.raises(StoreError, match="depend"):
        async with PostgresStore(url, schema=schema) as store:
            await store.size("u")
    assert (await _keys(schema))["scopes"] == "PRIMARY KEY (scope_id)"
    assert await _rows(f'SELECT max(version) FROM "{schema}".schema_version') == [(3,)]


async def test_keys_built_beforehand_are_kept(schema: str) -> None:
    """An operator may build the new keys concurrently before upgrading (docs/scaling.md):
    the upgrade then finds them in place and does not rebuild them."""
    url = os.environ[POSTGRES_URL_VARIABLE]
    async with PostgresStore(url, schema=schema) as old:
        await old.add_many([Message.user("q"), Message.assistant("a")], user_id="u")
    await _to_version_3(schema)
    async with await _superuser() as conn:
        for table, columns in (
            ("scopes", "user_id, scope_id"),
            ("messages", "user_id, scope_id, pos"),
        ):
            await conn.execute(
                f'CREATE UNIQUE INDEX CONCURRENTLY {table}_v6 ON "{schema}".{table} ({columns})'
            )
            await conn.execute(
                f'ALTER TABLE "{schema}".{table} DROP CONSTRAINT {table}_pkey,'
                f" ADD CONSTRAINT {table}_pkey PRIMARY KEY USING INDEX {table}_v6"
            )
    indexes = "SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass AND indisprimary"
    built = [await _rows(indexes, f'"{schema}".{t}') for t in ("scopes", "messages")]
    async with PostgresStore(url, schema=schema) as store:
        assert [m.content for m in await store.get_messages("u")] == ["q", "a"]
    assert [await _rows(indexes, f'"{schema}".{t}') for t in ("scopes", "messages")] == built
    assert await tenant_key_problems(schema) == []
    assert await _rows(f'SELECT max(version) FROM "{schema}".schema_version') == [(SCHEMA_VERSION,)]


DOCS = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"
DISTRIBUTED_FUNCTIONS = {
    "append_turn",
    "add_memory",
    "update_memory",
    "count_usage",
    "rate_limit_hit",
}
"""The functions docs/scaling.md distributes by their `p_user` argument."""


async def test_the_functions_distributed_by_user_take_it_as_p_user(schema: str) -> None:
    """docs/scaling.md's create_distributed_function statements name `p_user`, and spell out
    today's signatures: both must match the functions the store creates."""
    async with PostgresStore(os.environ[POSTGRES_URL_VARIABLE], schema=schema) as store:
        await store.ping()
    rows = await _rows(
        "SELECT proname, pg_get_function_identity_arguments(oid), proargnames[1],"
        " format_type(proargtypes[0], NULL) FROM pg_proc WHERE pronamespace = %s::regnamespace",
        schema,
    )
    found = {name: (arguments, first, kind) for name, arguments, first, kind in rows}
    assert set(found) >= DISTRIBUTED_FUNCTIONS
    for name in DISTRIBUTED_FUNCTIONS:
        assert found[name][1:] == ("p_user", "text"), name
    spelled = dict(re.findall(r"`tenantry\.(\w+)\(([^`]*)\)`", DOCS.read_text()))
    assert set(spelled) == DISTRIBUTED_FUNCTIONS
    for name, types in spelled.items():
        (resolved,) = await _rows(
            "SELECT pg_get_function_identity_arguments(%s::regprocedure)",
            f'"{schema}".{name}({types})',
        )
        assert resolved[0] == found[name][0], name
