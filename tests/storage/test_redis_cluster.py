"""What RedisStore promises on Redis Cluster beyond the contract: every key of a user lives in
that user's hash slot (so a turn is one script in one slot), the index buckets a user is
listed in too, a single server keeps its old key names, and `wait_replicas` acknowledges a
turn only once a replica has it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from tenantry import Message
from tenantry.errors import StoreUnavailable
from tenantry.storage.redis import RedisStore
from tenantry.storage.redis_client import connect
from tenantry.storage.redis_keys import KeyLayout, encode_id
from tenantry.types import Summary
from tests.conftest import (
    REDIS_CLUSTER_URL_VARIABLE,
    REDIS_URL_VARIABLE,
    delete_redis_cluster_prefix,
    delete_redis_prefix,
    namespace_name,
    server_url,
)

HOSTILE = ["*", "{tag}", "}{", "x:*:y", "ユーザー", "%", "a b", "plain"]


@pytest.fixture
async def cluster_store(redis_cluster_url: str, tmp_path: Path) -> AsyncIterator[RedisStore]:
    url = redis_cluster_url.replace("+cluster", "", 1)
    store = RedisStore(url, cluster=True, prefix=namespace_name(tmp_path))
    yield store
    await store.close()
    await delete_redis_cluster_prefix(namespace_name(tmp_path))


def _user_of(key: str, prefix: str) -> str | None:
    """The user a per-user key belongs to: its hash tag; None for an index bucket."""
    _, kind, rest = key.split(":", 2)
    if kind in ("users", "activity", "memory_users"):
        return None
    assert rest.startswith("{"), f"{key} has no hash tag"
    return rest[1 : rest.index("}")]


async def test_every_key_of_a_user_is_in_that_users_slot(cluster_store: RedisStore) -> None:
    store = cluster_store
    for user in HOSTILE:
        for session in ("s1", "s:2"):
            async with store.lock(user, session):
                await store.add_many([Message.user(user)], user_id=user, session_id=session)
        await store.set_summary(Summary("summary", "m-1", 1.0), user_id=user, session_id="s1")
        await store.add_memory(f"{user} likes tea", user_id=user)
    client = connect(
        os.environ[REDIS_CLUSTER_URL_VARIABLE].replace("+cluster", ""), cluster=True, pool_size=5
    )
    try:
        keys = [k.decode() async for k in client.scan_iter(match=f"{store.prefix}:*", count=1000)]
    finally:
        await client.aclose()
    users = {encode_id(u) for u in HOSTILE}
    seen: set[str] = set()
    for key in keys:
        user = _user_of(key, store.prefix)
        if user is None:
            continue
        assert user in users
        assert key_slot(key.encode()) == key_slot(f"{{{user}}}".encode()), key
        seen.add(user)
    assert seen == users
    for user in HOSTILE:  # the user's index buckets are in the user's slot as well
        layout = KeyLayout(store.prefix, cluster=True)
        for index in ("users", "activity", "memory_users"):
            bucket = layout.index_key(index, user)
            assert key_slot(bucket.encode()) == key_slot(f"{{{encode_id(user)}}}".encode())
    assert await store.list_users() == sorted(HOSTILE)
    assert await store.list_sessions("}{") == ["s1", "s:2"]


def test_a_single_server_keeps_the_key_names_of_earlier_releases() -> None:
    layout = KeyLayout("app", cluster=False)
    assert layout.user_key("messages", "a:b", "s") == "app:messages:a%3Ab:s"
    assert layout.user_key("sessions", "u") == "app:sessions:u"
    assert layout.index_key("users", "u") == "app:users"
    cluster = KeyLayout("app", cluster=True)
    assert cluster.user_key("messages", "a:b", "s") == "app:messages:{a%3Ab}:s"
    assert cluster.index_key("users", "u").startswith("app:users:{")


async def test_a_turn_waits_for_a_replica_on_the_cluster(
    redis_cluster_url: str, tmp_path: Path
) -> None:
    url = redis_cluster_url.replace("+cluster", "", 1)
    name = namespace_name(tmp_path)
    try:
        async with RedisStore(url, cluster=True, prefix=name, wait_replicas=1) as store:
            async with store.lock("u"):
                await store.add_many([Message.user("q"), Message.assistant("a")], user_id="u")
            assert await store.size("u") == 2
    finally:
        await delete_redis_cluster_prefix(name)


async def test_without_a_replica_a_waiting_turn_is_refused_as_unavailable(tmp_path: Path) -> None:
    url = server_url(REDIS_URL_VARIABLE)
    name = namespace_name(tmp_path)
    try:
        async with RedisStore(url, prefix=name, wait_replicas=1, wait_timeout=0.05) as store:
            with pytest.raises(StoreUnavailable, match="0 of 1 replica"):
                await store.add(Message.user("q"), user_id="u")
    finally:
        await delete_redis_prefix(name)
