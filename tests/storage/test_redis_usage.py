"""What RedisStore promises of usage beyond the contract: its keys under the prefix with the
user id one percent-encoded segment, a user's usage calls touch that user's keys and the
day-wide indexes only (watched with MONITOR, never KEYS or SCAN), clear_all and pruning
leave no stray key, and the rate bucket expires by itself."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tenantry import Budget, Message, Usage
from tenantry.storage.redis import RedisStore, encode_id
from tests.conftest import REDIS_URL_VARIABLE, delete_redis_prefix, namespace_name, server_url
from tests.storage.test_redis import HOSTILE, _keys

DAY = date(2026, 3, 10)
NOON = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()
TURN = Usage(requests=1, input_tokens=10, output_tokens=2, tool_calls=1)


@pytest.fixture
async def prefix(tmp_path: Path) -> AsyncIterator[str]:
    server_url(REDIS_URL_VARIABLE)
    name = namespace_name(tmp_path)
    yield name
    await delete_redis_prefix(name)


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(os.environ[REDIS_URL_VARIABLE], prefix=prefix)
    yield store
    await store.close()


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    client = Redis.from_url(os.environ[REDIS_URL_VARIABLE], decode_responses=True)
    yield client
    await client.aclose()


async def test_usage_lives_in_keys_of_each_user_under_the_prefix(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    for user in HOSTILE:
        await store.add_usage(TURN, user_id=user, now=NOON)
        await store.set_budget(user, Budget(tokens_per_day=7))
    ours = await _keys(raw, f"{prefix}:*")
    day = DAY.isoformat()
    assert ours == {
        f"{prefix}:usagedays",
        f"{prefix}:usagetop:{day}",
        f"{prefix}:budgetusers",
        *(f"{prefix}:usage:{encode_id(user)}:{day}" for user in HOSTILE),
        *(f"{prefix}:budget:{encode_id(user)}" for user in HOSTILE),
    }
    for key in ours:
        assert not set(key) & set("{}* ")
    assert await raw.zrange(f"{prefix}:usagetop:{day}", 0, -1) == sorted(HOSTILE)
    assert await raw.smembers(f"{prefix}:budgetusers") == set(HOSTILE)
    await store.clear_all()
    assert await _keys(raw, f"{prefix}:*") == set()


async def test_pruning_deletes_the_old_days_hashes_and_their_indexes(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    old = NOON - 500 * 86_400
    await store.add_usage(TURN, user_id="u", now=old)
    await store.add_usage(TURN, user_id="v", now=old)
    await store.add(Message.user("today"), user_id="u")
    await store.add_usage(TURN, user_id="u")
    assert await store.prune_inactive(timedelta(days=1)) == 0
    old_day = datetime.fromtimestamp(old, UTC).date().isoformat()
    assert not [key for key in await _keys(raw, f"{prefix}:*") if old_day in key]
    assert old_day not in await raw.zrange(f"{prefix}:usagedays", 0, -1)


async def test_the_rate_bucket_is_one_key_of_the_user_that_expires(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    assert await store.rate_limit_hit("a:b", per_minute=2) == 0.0
    key = f"{prefix}:rate:{encode_id('a:b')}"
    assert await _keys(raw, f"{prefix}:*") == {key}
    assert 0 < await raw.pttl(key) <= 61_000


async def test_a_users_usage_calls_touch_only_that_users_keys_and_the_day_indexes(
    store: RedisStore, prefix: str
) -> None:
    user = "alice:{x}*"
    await store.add_usage(TURN, user_id="warm-up", now=NOON)  # the scripts are loaded
    day = DAY.isoformat()
    mine = {
        f"{prefix}:usage:{encode_id(user)}:{day}",
        f"{prefix}:budget:{encode_id(user)}",
        f"{prefix}:rate:{encode_id(user)}",
    }
    shared = {f"{prefix}:usagetop:{day}", f"{prefix}:usagedays", f"{prefix}:budgetusers"}
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
        await store.add_usage(TURN, user_id=user, now=NOON)
        await store.get_usage(user, start=DAY - timedelta(days=3), end=DAY)
        await store.read_admission(user, now=NOON)
        await store.set_budget(user, Budget(requests_per_day=1))
        await store.get_budget(user)
        await store.set_budget(user, None)
        await store.rate_limit_hit(user, per_minute=5, now=NOON)
        await store._ready().get(sentinel)
        await asyncio.wait_for(watching, 10)
    touched = {word.strip('"') for command in seen for word in command.split(" ")}
    touched = {word for word in touched if word.startswith(f"{prefix}:")} - {sentinel}
    month = {
        f"{prefix}:usage:{encode_id(user)}:{(DAY - timedelta(days=i)).isoformat()}"
        for i in range(DAY.day)
    }  # the admission reads each day of the month: the user's own keys
    assert touched - shared - month == mine - month, touched
    assert not touched & {k.replace(encode_id(user), "warm-up") for k in mine}
    assert not [c for c in seen if c.split(" ")[0].strip('"').upper() in {"KEYS", "SCAN"}]
