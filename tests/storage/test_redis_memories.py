"""What RedisStore promises of memories beyond the contract: four keys per user under the
prefix, the user id one percent-encoded segment of each, and a user's memory calls touch
that user's keys only (watched with MONITOR), never KEYS or SCAN."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tenantry import MemoryConflict, Message, Summary
from tenantry.storage.redis import RedisStore, encode_id
from tests.conftest import REDIS_URL_VARIABLE, delete_redis_prefix, namespace_name, server_url
from tests.storage.test_redis import HOSTILE, _keys

KINDS = ("memories", "memorder", "memterms", "memvectors")


@pytest.fixture
async def prefix(tmp_path: Path) -> AsyncIterator[str]:
    server_url(REDIS_URL_VARIABLE)
    name = namespace_name(tmp_path)
    yield name
    await delete_redis_prefix(name)


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(os.environ[REDIS_URL_VARIABLE], prefix=prefix, max_memories=3)
    yield store
    await store.close()


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    client = Redis.from_url(os.environ[REDIS_URL_VARIABLE], decode_responses=True)
    yield client
    await client.aclose()


async def test_memories_live_in_four_keys_per_user_under_the_prefix(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    for user in HOSTILE:
        await store.add_memory(f"fact of {user}", user_id=user, embedding=[1.0, 2.0])
    ours = await _keys(raw, f"{prefix}:*")
    assert ours == {f"{prefix}:memory_users"} | {
        f"{prefix}:{kind}:{encode_id(user)}" for user in HOSTILE for kind in KINDS
    }
    for key in ours:
        assert not set(key) & set("{}* ")
        assert key.count(":") <= 2
    assert await raw.smembers(f"{prefix}:memory_users") == set(HOSTILE)
    for user in HOSTILE:
        assert [m.text for m in await store.list_memories(user_id=user)] == [f"fact of {user}"]
    await store.clear_all()
    assert await _keys(raw, f"{prefix}:*") == set()


async def test_a_summary_is_one_key_of_its_session_deleted_with_it(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    await store.add(Message.user("hi"), user_id="a:b", session_id="s")
    await store.set_summary(Summary("talk", "m-1", 1.0), user_id="a:b", session_id="s")
    key = f"{prefix}:summary:{encode_id('a:b')}:s"
    assert await raw.exists(key) == 1
    await store.clear("a:b", "s")
    assert await raw.exists(key) == 0


async def test_a_users_memory_calls_touch_only_that_users_keys(
    store: RedisStore, prefix: str
) -> None:
    await store.add_memory("warm up: the scripts are loaded", user_id="bob")
    user = "alice:{x}*"
    mine = {f"{prefix}:{kind}:{encode_id(user)}" for kind in KINDS}
    await store.add_memory("alice's first", user_id=user)  # the one registration (below)
    sentinel = f"{prefix}:sentinel"
    seen: list[str] = []
    monitor_client = Redis.from_url(os.environ[REDIS_URL_VARIABLE])
    async with monitor_client, monitor_client.monitor() as monitor:

        async def watch() -> None:
            while True:
                command = (await monitor.next_command())["command"]
                if prefix in command:
                    seen.append(command)
                if sentinel in command:
                    return

        watching = asyncio.create_task(watch())
        await asyncio.sleep(0.2)  # MONITOR is on before the calls start
        memories = [
            await store.add_memory(f"fact {i}", user_id=user, embedding=[1.0, i]) for i in range(5)
        ]  # the cap of 3 drops two in the same script
        await store.update_memory(memories[-1].id, "fact, edited", user_id=user)
        with pytest.raises(MemoryConflict):
            await store.update_memory(memories[-1].id, "x", user_id=user, expected_version=1)
        await store.get_memory(memories[-1].id, user_id=user)
        await store.list_memories(user_id=user)
        await store.search_memories("fact edited", user_id=user)
        await store.search_memories("x", user_id=user, embedding=[1.0, 0.0])
        await store.delete_memory(memories[-2].id, user_id=user)
        assert await store.clear_memories(user_id=user) == 2
        await store._ready().get(sentinel)
        await asyncio.wait_for(watching, 10)
    touched = {word.strip('"') for command in seen for word in command.split(" ")}
    touched = {word for word in touched if word.startswith(f"{prefix}:")} - {sentinel}
    assert touched == mine, touched
    assert not [c for c in seen if c.split(" ")[0].strip('"').upper() in {"KEYS", "SCAN"}]
    assert len(seen) > 20
