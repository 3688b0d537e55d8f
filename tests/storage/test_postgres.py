"""What PostgresStore promises beyond the contract: row-level security, index-only access to
one tenant's rows, a guarded schema, typed connection errors and fenced turn locks."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tenantry import Message
from tenantry.errors import (
    InvalidInput,
    InvalidStoreURL,
    ScopeBusy,
    ScopeLockLost,
    StoreSchemaError,
)
from tenantry.storage.postgres import SCHEMA_VERSION, PostgresStore
from tenantry.storage.url import open_store
from tests.conftest import (
    POSTGRES_URL_VARIABLE,
    drop_postgres_schema,
    namespace_name,
    server_url,
)


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


async def _superuser() -> Any:
    return await psycopg.AsyncConnection.connect(os.environ[POSTGRES_URL_VARIABLE], autocommit=True)


async def _two_tenants(store: PostgresStore) -> None:
    await store.add_many([Message.user("alice 1"), Message.assistant("hi alice")], user_id="alice")
    await store.add_many([Message.user("bob 1")], user_id="bob", session_id="s", state={"b": 1})


# --- row-level security -----------------------------------------------------------------------


async def test_an_unfiltered_select_in_a_tenant_transaction_sees_only_that_tenant(
    store: PostgresStore, schema: str
) -> None:
    await _two_tenants(store)
    async with store.tenant_transaction("alice") as conn:
        cur = await conn.execute(f'SELECT user_id, body FROM "{schema}".messages')
        rows = await cur.fetchall()
        cur = await conn.execute(f'SELECT user_id, state FROM "{schema}".scopes')
        scopes = await cur.fetchall()
    assert sorted(user for user, _ in rows) == ["alice", "alice"]
    assert all("bob" not in body for _, body in rows)
    assert scopes == [("alice", None)]


async def test_a_tenant_transaction_cannot_write_another_tenants_rows(
    store: PostgresStore, schema: str
) -> None:
    await _two_tenants(store)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        async with store.tenant_transaction("alice") as conn:
            await conn.execute(
                f'INSERT INTO "{schema}".messages (scope_id, user_id, body) VALUES (1, %s, %s)',
                ("bob", "{}"),
            )
    async with store.tenant_transaction("alice") as conn:
        cur = await conn.execute(f'DELETE FROM "{schema}".messages RETURNING user_id')
        assert await cur.fetchall() == [("alice",), ("alice",)]  # only alice's were reachable
    assert await store.size("bob", "s") == 1


async def test_the_tenant_role_without_a_tenant_setting_sees_nothing(
    store: PostgresStore, schema: str
) -> None:
    await _two_tenants(store)
    async with await _superuser() as conn, conn.transaction():
        await conn.execute("SET LOCAL ROLE tenantry_tenant")
        cur = await conn.execute(f'SELECT count(*) FROM "{schema}".messages')
        assert await cur.fetchone() == (0,)


async def test_rls_can_be_turned_off_for_servers_without_role_rights(schema: str) -> None:
    async with open_store(f"{os.environ[POSTGRES_URL_VARIABLE]}?schema={schema}&rls=off") as store:
        await store.add(Message.user("no rls"), user_id="u")
        assert [m.content for m in await store.get_messages("u")] == ["no rls"]
    async with await _superuser() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_policies WHERE schemaname = %s", (schema,)
        )
        assert await cur.fetchone() == (0,)


# --- query plans ------------------------------------------------------------------------------


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def _executed_plan(store: PostgresStore, query: str, params: dict[str, Any]) -> Any:
    """The executed plan of `query`, run as tenant user-5; what it changed is rolled back."""
    async with store.tenant_transaction("user-5") as conn:
        cur = await conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", params)
        row = await cur.fetchone()
        assert row is not None
        raise psycopg.Rollback()
    return _nodes(row[0][0]["Plan"])


def _scans(nodes: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    return [n for n in nodes if n.get("Relation Name") == table]


async def test_reading_counting_and_trimming_one_scope_touch_only_its_rows(
    store: PostgresStore, schema: str
) -> None:
    await store.add(Message.user("create the schema"), user_id="setup")
    async with await _superuser() as conn:
        await conn.execute(  # 5000 tenants with 20 messages each; user-5 has 5000 more
            f'INSERT INTO "{schema}".scopes (user_id, session_id, updated_at, message_count, '
            "next_pos) SELECT 'user-' || i, 'default', 0, 20, 20 FROM generate_series(1, 5000) i"
        )
        await conn.execute(
            f'UPDATE "{schema}".scopes SET message_count = 5020, next_pos = 5020 '
            "WHERE user_id = 'user-5'"
        )
        await conn.execute(
            f'INSERT INTO "{schema}".messages (scope_id, pos, user_id, body) '
            f"SELECT scope_id, pos, user_id, '{{}}' FROM \"{schema}\".scopes, "
            "generate_series(0, next_pos - 1) pos WHERE user_id LIKE 'user-%'"
        )
        await conn.execute(f'ANALYZE "{schema}".scopes, "{schema}".messages')
    scope = {"u": "user-5", "s": "default", "limit": 50, "offset": 100, "cap": 1000}
    plans = {
        "newest": await _executed_plan(store, store._q.newest, scope),
        "size": await _executed_plan(store, store._q.size, scope),
        "trim": await _executed_plan(store, store._q.trim, scope),
    }
    for name, nodes in plans.items():
        print(name, [(n["Node Type"], n.get("Index Cond"), n.get("Actual Rows")) for n in nodes])
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], name
        for scan in _scans(nodes, "scopes"):
            assert scan["Actual Rows"] <= 1, name
    assert not _scans(plans["size"], "messages")
    # The messages read or trimmed are found through a primary-key range, not filtered.
    for name, bound, rows in (("newest", "pos >= sc.lo", 50), ("trim", "pos < sc.lo", 4020)):
        (scan,) = [n for n in plans[name] if n.get("Index Name") == "messages_pkey"]
        assert bound in scan["Index Cond"], name
        assert scan["Actual Rows"] == rows, name
        assert scan.get("Rows Removed by Filter", 0) == 0, name


# --- schema -----------------------------------------------------------------------------------


async def test_replicas_creating_the_schema_at_once_both_succeed(schema: str) -> None:
    url = os.environ[POSTGRES_URL_VARIABLE]
    stores = [PostgresStore(url, schema=schema) for _ in range(4)]
    try:
        await asyncio.gather(
            *(s.add(Message.user(f"from {i}"), user_id="u") for i, s in enumerate(stores))
        )
        assert await stores[0].size("u") == 4
    finally:
        for s in stores:
            await s.close()


async def test_a_version_1_schema_is_upgraded_in_place(store: PostgresStore, schema: str) -> None:
    await store.add(Message.user("written by version 1"), user_id="u")
    async with await _superuser() as conn:  # what a version-1 schema looked like
        await conn.execute(f'DROP FUNCTION "{schema}".append_turn')
        await conn.execute(f'UPDATE "{schema}".schema_version SET version = 1')
    upgraded = PostgresStore(os.environ[POSTGRES_URL_VARIABLE], schema=schema)
    try:
        await upgraded.add(Message.assistant("written by version 2"), user_id="u")
        contents = [m.content for m in await upgraded.get_messages("u")]
        assert contents == ["written by version 1", "written by version 2"]
    finally:
        await upgraded.close()
    async with await _superuser() as conn:
        cur = await conn.execute(f'SELECT max(version) FROM "{schema}".schema_version')
        assert await cur.fetchone() == (SCHEMA_VERSION,)


async def test_a_newer_schema_version_is_refused(store: PostgresStore, schema: str) -> None:
    await store.add(Message.user("x"), user_id="u")
    async with await _superuser() as conn:
        await conn.execute(f'UPDATE "{schema}".schema_version SET version = 99')
    newer = PostgresStore(os.environ[POSTGRES_URL_VARIABLE], schema=schema)
    with pytest.raises(StoreSchemaError, match="version 99"):
        await newer.size("u")
    await newer.close()


@pytest.mark.parametrize(
    "options", [{"schema": "bad-name"}, {"schema": 'x"; drop'}, {"tenant_role": "a b"}]
)
def test_schema_and_role_names_must_be_plain_identifiers(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="plain identifier"):
        PostgresStore("postgresql://localhost/db", **options)


def test_a_bad_url_or_option_is_an_invalid_store_url() -> None:
    with pytest.raises(InvalidStoreURL, match="PostgreSQL URL"):
        open_store("postgresql://localhost/db?no_such_libpq_option=1")
    with pytest.raises(InvalidStoreURL, match="rls must be true or false"):
        open_store("postgresql://localhost/db?rls=maybe")
    with pytest.raises(InvalidInput, match="pool_size"):
        open_store("postgres://localhost/db", pool_size=0)


# --- the turn lock ----------------------------------------------------------------------------


async def test_a_lock_held_by_another_store_makes_the_turn_wait_then_busy(
    store: PostgresStore,
) -> None:
    other = PostgresStore(os.environ[POSTGRES_URL_VARIABLE], schema=store.schema)
    try:
        async with store.lock("u"):
            with pytest.raises(ScopeBusy, match="another replica"):
                async with other.lock("u", timeout=0.2):
                    pass
            async with other.lock("v", timeout=1):
                pass  # other scopes are free
        async with other.lock("u", timeout=1):
            pass
    finally:
        await other.close()


async def test_a_turn_whose_lock_connection_died_stores_nothing(store: PostgresStore) -> None:
    await store.ping()
    async with store.lock("u", "s"):
        lock_conn = store._db.current_lock_connection()
        assert lock_conn is not None
        pid = lock_conn.info.backend_pid
        async with await _superuser() as conn:
            await conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # waits
        with pytest.raises(ScopeLockLost, match="nothing of this turn was stored"):
            await store.add_many(
                [Message.user("q"), Message.assistant("a")], user_id="u", session_id="s"
            )
    assert await store.size("u", "s") == 0
    async with store.lock("u", "s", timeout=5):  # a fresh lock connection is opened
        await store.add(Message.user("again"), user_id="u", session_id="s")
    assert await store.size("u", "s") == 1


async def test_each_store_has_its_own_schema(schema: str) -> None:
    other_schema = f"{schema}_{uuid.uuid4().hex[:6]}"
    url = os.environ[POSTGRES_URL_VARIABLE]
    try:
        async with (
            PostgresStore(url, schema=schema) as a,
            PostgresStore(url, schema=other_schema) as b,
        ):
            await a.add(Message.user("in a"), user_id="u")
            assert await b.size("u") == 0
            await b.clear_all()
            assert await a.size("u") == 1
    finally:
        await drop_postgres_schema(other_schema)
