"""Every statement of PostgresStore's per-tenant paths can be routed by user_id (Citus's router
planner sends a statement to one shard when each distributed table it names is filtered by
`distribution column = value`).

How: a private PostgreSQL logs the plan of every statement it executes, nested ones in
functions included (auto_explain, `log_nested_statements`); the test runs every contract
operation of one tenant, then checks each scan of a tenant table in those plans for a
`user_id = 'that tenant'` (or `= $n`, a bound argument) condition of the statement's own.
Row-level security's policy adds `user_id = current_setting(...)` to every scan, which Citus
does not route by, so it does not count; the test runs with RLS on and off.

What it does not check: inserts (they are routed by the user_id value they insert, a NOT
NULL column: `test_postgres_tenant_keys`), and the operations that span tenants on purpose
(list_users, prune_inactive, clear_all: docs/scaling.md says how they fan out)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tenantry import Budget, Message, Summary, Usage
from tenantry.storage.idempotency import IdempotencyRecord
from tenantry.storage.postgres import PostgresStore
from tests.support.plan_log import (
    PLAN_LOG_SETTINGS,
    Scan,
    log_entries,
    logged_plans,
    scans,
    unconfined,
)
from tests.support.reliability.faults import PrivatePostgres, private_postgres

pytestmark = pytest.mark.slow

USER = "alice"
LOG_WAIT = 20.0
"""Seconds to wait for the server's logger to write a marker it was sent (it writes as it
reads; this bounds a broken logger, it is no delay)."""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres(PLAN_LOG_SETTINGS) as server:
        yield server


async def _mark(server: PrivatePostgres, marker: str) -> None:
    async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as conn:
        await conn.execute(f"SELECT '{marker}'")


async def _logged(server: PrivatePostgres, start: str, end: str) -> list[dict[str, Any]]:
    """Give the plans logged between the two markers, once the logger has written `end`."""
    deadline = time.monotonic() + LOG_WAIT
    while True:
        entries = await asyncio.to_thread(lambda: list(log_entries(server.data)))
        if any(end in str(e.get("message", "")) for e in entries):
            return logged_plans(entries, start, end)
        assert time.monotonic() < deadline, f"the server logged no {end!r} in {LOG_WAIT}s"
        await asyncio.sleep(0.05)


async def _tenant_tables(server: PrivatePostgres, schema: str) -> set[str]:
    """Every table of the store's schema but schema_version (no tenant's rows), read from the
    catalog so that tables added later are checked too."""
    async with await psycopg.AsyncConnection.connect(server.url) as conn:
        cur = await conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace"
            " AND relkind IN ('r', 'p') AND relname <> 'schema_version'",
            (schema,),
        )
        return {row[0] for row in await cur.fetchall()}


async def _every_tenant_path(store: PostgresStore, user: str) -> None:
    """Run every per-tenant operation of the store contract for `user`, each path at least
    once: the trim (max_messages) and the memory cap (max_memories) included."""
    for n in range(3):
        pair = [Message.user(f"q{n}"), Message.assistant(f"a{n}")]
        used = Usage(requests=1, input_tokens=10 + n, output_tokens=5, tool_calls=n)
        await store.add_many(pair, user_id=user, session_id="s1", state={"n": n}, usage=used)
    record = IdempotencyRecord("key-1", "s1", "hash", "{}", store.clock() + 3600)
    await store.add_many([Message.user("keyed")], user_id=user, session_id="s1", idempotency=record)
    await store.get_idempotency_record("key-1", user_id=user)
    await store.add_usage(Usage(requests=1, output_tokens=3), user_id=user)
    today = datetime.now(UTC).date()
    await store.get_usage(user, start=today - timedelta(days=40), end=today)
    await store.read_admission(user)
    await store.snapshot_and_admission(user, "s1", limit=2)
    await store.set_budget(user, Budget(tokens_per_day=1000))
    await store.get_budget(user)
    await store.rate_limit_hit(user, per_minute=60)
    await store.snapshot_and_search("green tea", user_id=user, session_id="s1", limit=2)
    async with store.lock(user, "s2"):  # the fenced append: check_turn_lock first
        await store.add(Message.user("locked"), user_id=user, session_id="s2")
    await store.set_state({"k": 1}, user_id=user, session_id="s2")
    await store.get_messages(user, "s1", limit=2, offset=1)
    await store.snapshot(user, "s1", limit=2)
    await store.size(user, "s1")
    await store.get_state(user, "s1")
    await store.set_summary(Summary("talk", "m", 1.0), user_id=user, session_id="s1")
    await store.get_summary(user, "s1")
    await store.list_sessions(user)
    memories = [
        await store.add_memory(f"fact {n} about green tea", user_id=user, embedding=[1.0, n])
        for n in range(3)
    ]
    memory = memories[-1]
    await store.get_memory(memory.id, user_id=user)
    await store.list_memories(user_id=user, limit=5)
    await store.search_memories("green tea", user_id=user, limit=2)
    await store.search_memories("tea", user_id=user, limit=2, embedding=[1.0, 0.0])
    await store.update_memory(memory.id, "fact about black tea", user_id=user, expected_version=1)
    await store.delete_memory(memory.id, user_id=user)
    await store.clear_memories(user_id=user)
    await store.clear(user, "s2")
    await store.clear(user)


def _describe(found: list[Scan]) -> str:
    return "\n".join(f"{s.table} {s.node} {s.conditions} in: {s.query[:300]}" for s in found)


@pytest.mark.parametrize("rls", [True, False], ids=["rls-on", "rls-off"])
async def test_every_per_tenant_statement_names_the_tenant_on_every_table(
    postgres: PrivatePostgres, rls: bool
) -> None:
    schema = f"routing_{'rls' if rls else 'plain'}"
    store = PostgresStore(postgres.url, schema=schema, rls=rls, max_messages=4, max_memories=2)
    try:
        await _every_tenant_path(store, "bob")  # another tenant's rows, before the window
        await _mark(postgres, f"start {schema}")
        await _every_tenant_path(store, USER)
        await _mark(postgres, f"end {schema}")
    finally:
        await store.close()
    plans = await _logged(postgres, f"start {schema}", f"end {schema}")
    tables = await _tenant_tables(postgres, schema)
    found = scans(plans, schema, tables)
    print(f"\n{len(plans)} plans, {len(found)} scans of {sorted(tables)}")

    assert unconfined(found, USER) == [], _describe(unconfined(found, USER))
    # Not vacuous: every table was read, and the statements inside the functions were logged.
    unread = tables - {s.table for s in found}
    assert not unread, f"no operation read {sorted(unread)}: add theirs to _every_tenant_path"
    assert tables >= {"scopes", "messages", "memories", "memory_users"}
    inside = {s.table for s in found if "p_user" in s.query}  # add_memory, update_memory
    assert inside >= {"memories", "memory_users"}
    texts = [plan["Query Text"] for plan in plans]
    assert any("ON CONFLICT (user_id, session_id)" in t for t in texts)  # append_turn's upsert
    if rls:  # search_memories' own query, run with the tenant bound as $1
        assert any(s.table == "memories" and "$1" in s.query for s in found)


async def test_a_statement_without_the_tenant_is_found(postgres: PrivatePostgres) -> None:
    """The check fails a scan filtered by anything but the tenant's user_id: none, another
    column, another tenant, or only the row-level-security policy."""
    schema = "routing_negative"
    store = PostgresStore(postgres.url, schema=schema)
    try:
        await store.add(Message.user("x"), user_id=USER)
        await _mark(postgres, f"start {schema}")
        async with store.tenant_transaction(USER) as conn:
            for where in ("true", "scope_id > 0", "user_id = 'bob'", f"user_id = '{USER}'"):
                await conn.execute(f"SELECT count(*) FROM {schema}.messages WHERE {where}")
        await _mark(postgres, f"end {schema}")
    finally:
        await store.close()
    found = scans(await _logged(postgres, f"start {schema}", f"end {schema}"), schema, {"messages"})
    assert len(found) == 4
    flagged = unconfined(found, USER)
    assert [s.query.rsplit("WHERE ", 1)[1] for s in flagged] == [
        "true",
        "scope_id > 0",
        "user_id = 'bob'",
    ]
