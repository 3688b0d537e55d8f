"""Schemas written before idempotency records (SQLite 2 or 3, PostgreSQL 3 or 4) are upgraded
in place on first use (to the current version; idempotency came with SQLite 4 and PostgreSQL
5), keep what they held, and then store records with their turns."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tenantry import IdempotencyKeyReused, Message, SQLiteStore
from tenantry.storage import postgres_sql, sqlite_sql
from tenantry.storage.idempotency import IdempotencyRecord, request_hash
from tests.conftest import POSTGRES_URL_VARIABLE, drop_postgres_schema, namespace_name, server_url

RECORD = IdempotencyRecord("k", "default", request_hash("default", "new"), "{}", 1e12)


async def _stores_a_record(store: Any) -> None:
    await store.add_many([Message.user("new")], user_id="u", idempotency=RECORD)
    assert await store.get_idempotency_record("k", user_id="u") == RECORD
    with pytest.raises(IdempotencyKeyReused):
        await store.add_many([Message.user("again")], user_id="u", idempotency=RECORD)
    assert [m.content for m in await store.get_messages("u")] == ["old", "new"]


@pytest.mark.parametrize("version", [2, 3])
async def test_an_sqlite_file_without_records_is_upgraded(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    first = SQLiteStore(path)
    await first.add(Message.user("old"), user_id="u")
    await first.close()
    conn = sqlite3.connect(path, isolation_level=None)  # what versions 2 and 3 looked like
    conn.execute("DROP TABLE idempotency")
    conn.execute("UPDATE tenantry_schema SET version = ?", (version,))
    conn.close()

    store = SQLiteStore(path)
    try:
        await _stores_a_record(store)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM tenantry_schema").fetchall() == [
        (sqlite_sql.SCHEMA_VERSION,)
    ]
    assert sqlite_sql.SCHEMA_VERSION >= 4  # version 4 brought idempotency records
    conn.close()


_OLD_APPEND_TURN = """
CREATE FUNCTION {schema}.append_turn(
    p_user text, p_session text, p_state text, p_now double precision, p_cap integer,
    p_bodies text[]{usage}
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


_VERSION_4_USAGE = """,
    p_day date DEFAULT NULL, p_usage bigint[] DEFAULT NULL, p_estimated boolean DEFAULT false"""
"""Version 4's extra parameters (its body is irrelevant: the upgrade replaces it)."""


@pytest.mark.parametrize("version", [3, 4])
async def test_a_postgres_schema_without_records_is_upgraded_to_5(
    tmp_path: Path, version: int
) -> None:
    from tenantry.storage.postgres import PostgresStore

    url = server_url(POSTGRES_URL_VARIABLE)
    schema = namespace_name(tmp_path)
    first = PostgresStore(url, schema=schema)
    try:
        await first.add(Message.user("old"), user_id="u")
    finally:
        await first.close()
    quoted = f'"{schema}"'
    try:
        conn = await psycopg.AsyncConnection.connect(os.environ[POSTGRES_URL_VARIABLE])
        async with conn:  # what versions 3 and 4 looked like: append_turn without the key
            await conn.execute(f"DROP TABLE {quoted}.idempotency")
            await conn.execute(f"DROP FUNCTION {quoted}.append_turn")
            usage = "" if version == 3 else _VERSION_4_USAGE  # version 4 counted usage
            old = _OLD_APPEND_TURN.format(schema=quoted, usage=usage)
            await conn.execute(old.encode())
            await conn.execute(f"UPDATE {quoted}.schema_version SET version = {version}")
        store = PostgresStore(url, schema=schema)  # row-level security on, as by default
        try:
            await _stores_a_record(store)
        finally:
            await store.close()
        conn = await psycopg.AsyncConnection.connect(os.environ[POSTGRES_URL_VARIABLE])
        async with conn:
            cur = await conn.execute(f"SELECT max(version) FROM {quoted}.schema_version")
            assert await cur.fetchone() == (postgres_sql.SCHEMA_VERSION,)
            assert postgres_sql.SCHEMA_VERSION >= 5
            cur = await conn.execute(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = %s AND p.proname = 'append_turn'",
                (schema,),
            )
            assert await cur.fetchone() == (1,)  # replaced, not overloaded
    finally:
        await drop_postgres_schema(schema)
