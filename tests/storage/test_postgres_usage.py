"""What PostgresStore promises of usage beyond the contract: row-level security on the usage
tables, an admission that reads only the user's rows of the month, and a version-3 schema
(the previous DDL, with the six-parameter append_turn) upgraded in place."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest

from tenantry import Budget, Message, Usage, UsageDay
from tenantry.storage.postgres import SCHEMA_VERSION, PostgresStore
from tenantry.storage.postgres_sql import RLS_TABLES
from tests.conftest import POSTGRES_URL_VARIABLE, drop_postgres_schema, namespace_name, server_url
from tests.storage.test_postgres import _scans, _superuser
from tests.storage.test_postgres_memories import _plan

DAY = date(2026, 3, 10)
NOON = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()
TURN = Usage(requests=1, input_tokens=10, output_tokens=2, tool_calls=1)


@pytest.fixture
async def schema(tmp_path: Path) -> AsyncIterator[str]:
    server_url(POSTGRES_URL_VARIABLE)
    name = namespace_name(tmp_path)
    yield name
    await drop_postgres_schema(name)


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(os.environ[POSTGRES_URL_VARIABLE], schema=schema)
    yield store
    await store.close()


# --- row-level security -----------------------------------------------------------------------


async def test_a_tenant_transaction_sees_and_writes_only_its_own_usage_rows(
    store: PostgresStore, schema: str
) -> None:
    for user in ("alice", "bob"):
        await store.add_usage(TURN, user_id=user, now=NOON)
        await store.set_budget(user, Budget(tokens_per_day=5))
        await store.rate_limit_hit(user, per_minute=10, now=NOON)
    async with store.tenant_transaction("alice") as conn:
        for table in ("usage_days", "budgets", "rate_buckets"):
            cur = await conn.execute(f'SELECT user_id FROM "{schema}".{table}')
            assert await cur.fetchall() == [("alice",)], table
        cur = await conn.execute(f'UPDATE "{schema}".usage_days SET requests = 0 RETURNING 1')
        assert len(await cur.fetchall()) == 1  # alice's own only
        raise psycopg.Rollback()
    for planted in (
        f"INSERT INTO \"{schema}\".usage_days (user_id, day) VALUES ('bob', '2026-03-11')",
        f"INSERT INTO \"{schema}\".budgets (user_id) VALUES ('carol')",
        f"SELECT \"{schema}\".count_usage('bob', '2026-03-10', '{{1,1,1,1,1,1}}', false)",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            async with store.tenant_transaction("alice") as conn:
                await conn.execute(planted)
    assert await store.usage_total("bob", start=DAY, end=DAY) == TURN


# --- query plans ------------------------------------------------------------------------------


async def test_an_admission_reads_only_the_users_rows_of_the_month(
    store: PostgresStore, schema: str
) -> None:
    for day in range(1, 11):
        await store.add_usage(TURN, user_id="me", now=NOON - (10 - day) * 86_400)
    async with await _superuser() as conn:  # 3,000 others with a row for every day of 2026
        await conn.execute(
            f'INSERT INTO "{schema}".usage_days (user_id, day, requests)'
            " SELECT 'other-' || u, date '2026-01-01' + d, 1"
            " FROM generate_series(1, 3000) u, generate_series(0, 99) d"
        )
        await conn.execute(f'ANALYZE "{schema}".usage_days')
    params = {"u": "me", "start": date(2026, 3, 1), "end": DAY}
    for name, query in (("admission", store._uq.admission), ("days", store._uq.days)):
        nodes = await _plan(store, query, params)
        print(name, [(n["Node Type"], n.get("Index Name"), n.get("Actual Rows")) for n in nodes])
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], name
        for scan in _scans(nodes, "usage_days"):
            assert scan["Actual Rows"] <= 10, name
            assert scan.get("Rows Removed by Filter", 0) == 0, name
    admission = await store.read_admission("me", now=NOON)
    assert admission.month.requests == 10


# --- schema -----------------------------------------------------------------------------------

VERSION_3_APPEND_TURN = """
CREATE OR REPLACE FUNCTION {schema}.append_turn(
    p_user text, p_session text, p_state text, p_now double precision, p_cap integer,
    p_bodies text[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    added integer := coalesce(array_length(p_bodies, 1), 0);
    scope bigint;
    next bigint;
BEGIN
    INSERT INTO {schema}.scopes AS sc
        (user_id, session_id, state, updated_at, message_count, next_pos)
    VALUES (p_user, p_session, p_state, p_now, least(added, p_cap), added)
    ON CONFLICT (user_id, session_id) DO UPDATE SET updated_at = excluded.updated_at,
        state = coalesce(excluded.state, sc.state), next_pos = sc.next_pos + added,
        message_count = least(sc.message_count + added, p_cap)
    RETURNING scope_id, next_pos INTO scope, next;
    IF added > 0 THEN
        INSERT INTO {schema}.messages (scope_id, pos, user_id, body)
        SELECT scope, next - added + b.i - 1, p_user, b.body
        FROM unnest(p_bodies) WITH ORDINALITY AS b(body, i);
    END IF;
END $$;
"""
"""append_turn as schema version 3 defined it (tenantry before usage), verbatim."""


async def _make_version_3(schema: str) -> None:
    """Turn `schema` into what version 3 left: no usage tables or functions, the old
    append_turn, version 3."""
    quoted = f'"{schema}"'
    async with await _superuser() as conn:
        await conn.execute(
            f"DROP TABLE {quoted}.usage_days, {quoted}.budgets, {quoted}.rate_buckets"
        )
        await conn.execute(f"DROP FUNCTION {quoted}.count_usage, {quoted}.rate_limit_hit")
        await conn.execute(f"DROP FUNCTION {quoted}.append_turn")
        await conn.execute(VERSION_3_APPEND_TURN.format(schema=quoted).encode())
        await conn.execute(f"UPDATE {quoted}.schema_version SET version = 3")


async def _append_turns(schema: str) -> list[tuple[str, int]]:
    async with await _superuser() as conn:
        cur = await conn.execute(
            "SELECT p.proname, p.pronargs FROM pg_proc p"
            " WHERE p.pronamespace = %s::regnamespace AND p.proname = 'append_turn'",
            (f'"{schema}"',),
        )
        return [(row[0], row[1]) for row in await cur.fetchall()]


async def test_a_version_3_schema_is_upgraded_in_place(store: PostgresStore, schema: str) -> None:
    await store.add_many([Message.user("written by version 3")], user_id="u", state={"k": 1})
    await store.add_memory("The user's name is Alice", user_id="u")
    await store.close()
    await _make_version_3(schema)
    assert await _append_turns(schema) == [("append_turn", 6)]
    url = os.environ[POSTGRES_URL_VARIABLE]
    replicas = [PostgresStore(url, schema=schema) for _ in range(3)]  # starting together
    try:
        assert await asyncio.gather(*(r.size("u") for r in replicas)) == [1, 1, 1]
        upgraded = replicas[0]
        assert [m.content for m in await upgraded.get_messages("u")] == ["written by version 3"]
        assert await upgraded.get_state("u") == {"k": 1}
        assert len(await upgraded.list_memories(user_id="u")) == 1
        await upgraded.add_many([Message.assistant("counted")], user_id="u", usage=TURN)
        today = datetime.now(UTC).date()
        assert await replicas[1].get_usage("u", start=today, end=today) == [UsageDay(today, TURN)]
        await replicas[2].set_budget("u", Budget(requests_per_day=3))
        assert await upgraded.get_budget("u") == Budget(requests_per_day=3)
        async with upgraded.tenant_transaction("someone-else") as conn:
            cur = await conn.execute(f'SELECT count(*) FROM "{schema}".usage_days')
            assert await cur.fetchone() == (0,)  # the new tables have their policies
    finally:
        for replica in replicas:
            await replica.close()
    assert await _append_turns(schema) == [("append_turn", 13)]  # replaced, not overloaded
    async with await _superuser() as conn:
        cur = await conn.execute(f'SELECT max(version) FROM "{schema}".schema_version')
        assert await cur.fetchone() == (SCHEMA_VERSION,)
        assert SCHEMA_VERSION >= 4
        cur = await conn.execute(
            "SELECT count(*) FROM pg_policies WHERE schemaname = %s", (schema,)
        )
        assert await cur.fetchone() == (len(RLS_TABLES),)
        # A replica still on version 3's code calls append_turn with six arguments: it works
        # (the usage parameters default to NULL) and counts nothing.
        await conn.execute(
            f'SELECT "{schema}".append_turn(%s, %s, NULL, 0, 100, %s::text[])',
            ("old-replica", "default", ['{"role":"user","content":"x"}']),
        )
        cur = await conn.execute(
            f"SELECT count(*) FROM \"{schema}\".usage_days WHERE user_id = 'old-replica'"
        )
        assert await cur.fetchone() == (0,)
