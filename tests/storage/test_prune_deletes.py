"""prune_inactive deletes, on every backend: what an idle scope stored is gone from the
underlying storage itself (rows, keys, index entries), not merely hidden from the API."""

from __future__ import annotations

import os
import sqlite3
from datetime import timedelta
from pathlib import Path

from tenantry import Message
from tenantry.storage.base import Store
from tests.conftest import (
    CLUSTER_BACKEND,
    POSTGRES_URL_VARIABLE,
    REDIS_CLUSTER_URL_VARIABLE,
    REDIS_URL_VARIABLE,
    FakeClock,
    MakeStore,
    namespace_name,
)


async def _footprint(backend: str, store: Store, namespace: Path) -> list[str]:
    """Give, sorted, everything the backend holds, in its own terms."""
    if backend == "memory":
        users = store._users  # type: ignore[attr-defined]
        return sorted(f"{u}/{s}:{len(x.messages)}" for u, v in users.items() for s, x in v.items())
    if backend == "sqlite":
        with sqlite3.connect(namespace / "tenantry.db") as conn:
            scopes = conn.execute("SELECT user_id, session_id, message_count FROM scopes")
            found = [f"{u}/{s}:{n}" for u, s, n in scopes]
            found += [f"message:{n}" for (n,) in conn.execute("SELECT count(*) FROM messages")]
        return sorted(found)
    if backend == "postgres":
        import psycopg

        schema = namespace_name(namespace)
        async with await psycopg.AsyncConnection.connect(os.environ[POSTGRES_URL_VARIABLE]) as c:
            cur = await c.execute(
                f'SELECT user_id, session_id, message_count FROM "{schema}".scopes'
            )
            found = [f"{u}/{s}:{n}" for u, s, n in await cur.fetchall()]
            cur = await c.execute(f'SELECT count(*) FROM "{schema}".messages')
            found += [f"message:{n}" for (n,) in await cur.fetchall()]
        return sorted(found)
    if backend == CLUSTER_BACKEND:
        return await _cluster_footprint(namespace)
    from redis.asyncio import Redis

    prefix = namespace_name(namespace)
    async with Redis.from_url(os.environ[REDIS_URL_VARIABLE], decode_responses=True) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        found = [key.removeprefix(prefix) for key in keys]
        found += [f"member:{m}" for m in await client.zrange(f"{prefix}:activity", 0, -1)]
        found += [f"user:{m}" for m in await client.smembers(f"{prefix}:users")]
    return sorted(found)


async def _cluster_footprint(namespace: Path) -> list[str]:
    """Every key under the prefix on every primary, with the index buckets' tags shown as
    {bucket}, and the members of the user's index buckets."""
    from tenantry.storage.redis_client import connect
    from tenantry.storage.redis_keys import key_slot, slot_tag

    prefix = namespace_name(namespace)
    url = os.environ[REDIS_CLUSTER_URL_VARIABLE].replace("+cluster", "", 1)
    client = connect(url, cluster=True, pool_size=5)
    try:
        keys = [_text(key) async for key in client.scan_iter(match=f"{prefix}:*")]
        found = [key.removeprefix(prefix) for key in keys]
        bucket = "{" + slot_tag(key_slot("kept")) + "}"
        found = [key.replace(bucket, "{bucket}") for key in found]
        activity = await client.zrange(f"{prefix}:activity:{bucket}", 0, -1)
        found += [f"member:{_text(m)}" for m in activity]
        found += [f"user:{_text(m)}" for m in await client.smembers(f"{prefix}:users:{bucket}")]
    finally:
        await client.aclose()
    return sorted(found)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


EXPECTED_AFTER = {
    "memory": ["kept/default:1"],
    "sqlite": ["kept/default:1", "message:1"],
    "postgres": ["kept/default:1", "message:1"],
    "redis": [
        ":activity",
        ":messages:kept:default",
        ":sessions:kept",
        ":users",
        "member:kept:default",
        "user:kept",
    ],
    CLUSTER_BACKEND: [
        ":activity:{bucket}",
        ":messages:{kept}:default",
        ":sessions:{kept}",
        ":users:{bucket}",
        "member:kept:default",
        "user:kept",
    ],
}


async def test_pruning_removes_every_trace_of_idle_scopes(
    make_store: MakeStore, backend: str, clock: FakeClock, tmp_path: Path
) -> None:
    store = make_store(clock=clock)
    await store.add_many([Message.user("a"), Message.assistant("b")], user_id="gone", state={})
    await store.set_state({"cart": ["x"]}, user_id="gone", session_id="other")
    await store.add(Message.user("idle"), user_id="kept", session_id="old")
    clock.advance(120)
    await store.add(Message.user("fresh"), user_id="kept")
    clock.advance(30)
    before = await _footprint(backend, store, tmp_path)
    assert len(before) > len(EXPECTED_AFTER[backend])

    assert await store.prune_inactive(timedelta(minutes=1)) == 3

    assert await _footprint(backend, store, tmp_path) == EXPECTED_AFTER[backend]
