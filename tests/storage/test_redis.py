"""What RedisStore promises beyond the contract: hostile ids neither collide nor escape the
key prefix, nothing outside the prefix is touched, and the turn lock is renewed and fenced."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from tenantry import Message
from tenantry.errors import InvalidInput, ScopeBusy, ScopeLockLost
from tenantry.storage.redis import RedisStore, encode_id
from tests.conftest import (
    REDIS_URL_VARIABLE,
    FakeClock,
    delete_redis_prefix,
    namespace_name,
    server_url,
)


@pytest.fixture
async def prefix(tmp_path: Path) -> AsyncIterator[str]:
    server_url(REDIS_URL_VARIABLE)
    name = namespace_name(tmp_path)
    yield name
    await delete_redis_prefix(name)
    await delete_redis_prefix(f"{name}x")


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


async def _keys(raw: Redis, pattern: str) -> set[str]:
    return {key async for key in raw.scan_iter(match=pattern, count=1000)}


# --- keys -------------------------------------------------------------------------------------

COLLIDING = [("a:b", "c"), ("a", "b:c"), ("a%3Ab", "c"), ("a", "b%3Ac")]
HOSTILE = ["*", "{tag}", "}{", "x:*:y", "..:other-app:users", "ユーザー", "%", "%25", "a b"]


async def test_ids_that_would_collide_as_raw_keys_stay_separate(store: RedisStore) -> None:
    for user, session in COLLIDING:
        await store.add(Message.user(f"{user}|{session}"), user_id=user, session_id=session)
    for user, session in COLLIDING:
        got = [m.content for m in await store.get_messages(user, session)]
        assert got == [f"{user}|{session}"]
    assert await store.list_sessions("a") == ["b%3Ac", "b:c"]


async def test_hostile_ids_never_reach_outside_the_prefix(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    for user in HOSTILE:
        await store.add_many([Message.user(user)], user_id=user, session_id=user, state={"k": 1})
        async with store.lock(user, user):
            pass
    keys = await _keys(raw, "*")
    ours = {key for key in keys if key.startswith(f"{prefix}:")}
    assert ours == {f"{prefix}:users", f"{prefix}:activity"} | {
        f"{prefix}:{kind}:{encode_id(user)}:{encode_id(user)}"
        for user in HOSTILE
        for kind in ("messages", "state")
    } | {f"{prefix}:sessions:{encode_id(user)}" for user in HOSTILE}
    for key in ours:
        assert not set(key) & set("{}* ")
        assert key.count(":") <= 3
    assert await store.list_users() == sorted(HOSTILE)


async def test_clear_all_and_prune_touch_only_their_own_prefix(
    prefix: str, raw: Redis, clock: FakeClock
) -> None:
    store = RedisStore(os.environ[REDIS_URL_VARIABLE], prefix=prefix, clock=clock)
    neighbour = RedisStore(os.environ[REDIS_URL_VARIABLE], prefix=f"{prefix}x")
    try:
        await neighbour.add(Message.user("keep me"), user_id="u")
        await store.add(Message.user("drop me"), user_id="u")
        await store.clear_all()
        assert await _keys(raw, f"{prefix}:*") == set()
        assert await neighbour.size("u") == 1
        await store.add(Message.user("prune me"), user_id="u")
        clock.advance(1)
        assert await store.prune_inactive(timedelta(0)) == 1
        assert await neighbour.list_users() == ["u"]
    finally:
        await store.close()
        await neighbour.close()


@pytest.mark.parametrize(
    "options",
    [
        {"prefix": ""},
        {"prefix": "a*"},
        {"prefix": "{x}"},
        {"prefix": "app:tenantry"},
        {"pool_size": 0},
        {"lock_ttl": 0},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        RedisStore("redis://127.0.0.1:6379/0", **options)


# --- the turn lock ----------------------------------------------------------------------------


async def test_a_lock_is_renewed_while_the_turn_runs(prefix: str) -> None:
    url = os.environ[REDIS_URL_VARIABLE]
    async with (
        RedisStore(url, prefix=prefix, lock_ttl=0.3) as a,
        RedisStore(url, prefix=prefix, lock_ttl=0.3) as b,
    ):
        async with a.lock("u"):
            await asyncio.sleep(1.0)  # more than three TTLs: only renewal keeps the lock
            with pytest.raises(ScopeBusy, match="another replica"):
                async with b.lock("u", timeout=0.2):
                    pass
            await a.add(Message.user("written under a renewed lock"), user_id="u")
        async with b.lock("u", timeout=1):
            pass
    assert await _size(url, prefix, "u") == 1


async def test_a_released_lock_is_not_renewed_when_the_driver_swallows_the_cancel(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a failover the release can fail (the key then expires by its TTL), and redis-py,
    closing the broken connection under a cancelled renewal, can raise an error of its own
    instead of the cancellation. The renewal must stop all the same, or it would keep the
    scope locked for ever."""
    url = os.environ[REDIS_URL_VARIABLE]
    async with (
        RedisStore(url, prefix=prefix, lock_ttl=0.3) as a,
        RedisStore(url, prefix=prefix, lock_ttl=0.3) as b,
    ):
        real = a._script
        renewing = asyncio.Event()
        stall = False

        async def failing_over(name: str, keys: list[str], args: list[Any]) -> Any:
            nonlocal stall
            if name == "release":
                raise redis_errors.ConnectionError("the primary is gone")
            if name == "renew" and stall:
                renewing.set()
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    stall = False
                    raise redis_errors.ConnectionError("closing the socket failed") from None
            return await real(name, keys, args)

        monkeypatch.setattr(a, "_script", failing_over)
        async with a.lock("u"):
            stall = True
            await asyncio.wait_for(renewing.wait(), 5)
        # The failed release leaves the key to its TTL (0.3 s); renewed, it would never go.
        async with b.lock("u", timeout=2):
            pass


async def _size(url: str, prefix: str, user: str) -> int:
    async with RedisStore(url, prefix=prefix) as store:
        return await store.size(user)


async def test_a_turn_whose_lock_expired_stores_nothing(store: RedisStore, raw: Redis) -> None:
    async with store.lock("u", "s"):
        await raw.delete(f"{store.prefix}:lock:u:s")  # as if it had expired
        with pytest.raises(ScopeLockLost, match="nothing of this turn was stored"):
            await store.add_many(
                [Message.user("q"), Message.assistant("a")], user_id="u", session_id="s"
            )
    assert await store.size("u", "s") == 0
    assert await store.list_users() == []


async def test_a_released_lock_leaves_no_key(store: RedisStore, raw: Redis) -> None:
    async with store.lock("u"):
        assert await raw.exists(f"{store.prefix}:lock:u:default") == 1
    assert await raw.exists(f"{store.prefix}:lock:u:default") == 0
