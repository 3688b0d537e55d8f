"""The store contract, usage half: counters per user per UTC day, budgets, the shared rate
limit.

Part of the contract suite (test_contract.py holds the conversation half): every backend must
pass every test here, unchanged, except where a test says why a backend differs (the rate
limit is shared only by the stores several processes share).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tenantry import Budget, Message, SyncStore, Usage, UsageDay
from tenantry.errors import (
    InvalidInput,
    InvalidUserId,
    RateLimitNotShared,
    ScopeLockLost,
    StoreClosed,
    StoreError,
)
from tenantry.storage.base import PRUNE_BATCH, Store
from tenantry.storage.usage import MAX_USAGE_DAYS, month_start, usage_day
from tests.conftest import (
    CLUSTER_BACKEND,
    PERSISTENT,
    REDIS_CLUSTER_URL_VARIABLE,
    FakeClock,
    MakeStore,
)
from tests.storage.test_contract import BAD_IDS, HOSTILE_IDS

SHARED = {"postgres", "redis", CLUSTER_BACKEND}
"""Backends that share the rate limit between processes."""


TURN = Usage(requests=2, input_tokens=120, output_tokens=30, cache_read_tokens=100, tool_calls=1)


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0) -> float:
    """Give the epoch time of `day` at that UTC time."""
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC).timestamp()


DAY = date(2026, 3, 10)


def turn(text: str = "q") -> list[Message]:
    return [Message.user(text), Message.assistant("a")]


# --- counted with the turn --------------------------------------------------------------------


async def test_a_turns_usage_is_counted_with_its_messages(
    make_store: MakeStore, clock: FakeClock
) -> None:
    clock.now = at(DAY)
    store = make_store(clock=clock)
    await store.add_many(turn(), user_id="u", session_id="s", usage=TURN)
    await store.add_many(turn(), user_id="u", session_id="other", usage=TURN)
    assert await store.size("u", "s") == 2
    assert await store.get_usage("u", start=DAY, end=DAY) == [UsageDay(DAY, TURN + TURN)]
    assert await store.usage_total("u", start=DAY - timedelta(days=9), end=DAY) == TURN + TURN
    stored = (await store.get_usage("u", start=DAY, end=DAY))[0].usage
    assert (stored.requests, stored.total_tokens, stored.tool_calls) == (4, 300, 2)
    assert (stored.cache_read_tokens, stored.estimated) == (200, False)


async def test_a_turn_without_usage_or_with_nothing_to_count_adds_no_row(
    make_store: MakeStore, clock: FakeClock
) -> None:
    clock.now = at(DAY)
    store = make_store(clock=clock)
    await store.add_many(turn(), user_id="u")
    await store.add_many(turn(), user_id="u", usage=Usage())
    await store.add_usage(Usage(estimated=True), user_id="u")
    assert await store.get_usage("u", start=DAY, end=DAY) == []
    assert await store.usage_total("u", start=DAY, end=DAY) == Usage()


async def test_usage_alone_is_counted_without_touching_the_scope(
    make_store: MakeStore, clock: FakeClock
) -> None:
    clock.now = at(DAY)
    store = make_store(clock=clock)
    await store.add_many([], user_id="u", usage=TURN)
    await store.add_usage(Usage(requests=1, input_tokens=5, estimated=True), user_id="u")
    got = await store.usage_total("u", start=DAY, end=DAY)
    assert got == TURN + Usage(requests=1, input_tokens=5, estimated=True)
    assert got.estimated
    assert await store.list_users() == []  # no session was made


async def test_a_turn_whose_usage_cannot_be_counted_stores_nothing(
    make_store: MakeStore, backend: str, tmp_path: Path, clock: FakeClock
) -> None:
    clock.now = at(DAY)
    store = make_store(clock=clock)
    await store.add_many(turn("before"), user_id="u", usage=TURN)
    await FAIL_A_COUNTED_TURN[backend](store, tmp_path)
    assert [m.content for m in await store.get_messages("u")] == ["before", "a"]
    assert await store.usage_total("u", start=DAY, end=DAY) == TURN
    assert await store.list_sessions("u") == ["default"]


async def _fail_in_memory(store: Store, tmp_path: Path) -> None:
    def fail(*args: Any) -> None:
        raise RuntimeError("counting failed")

    store._count = fail  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="counting failed"):
        await store.add_many(turn("lost"), user_id="u", session_id="new", usage=TURN)


async def _fail_in_sqlite(store: Store, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "tenantry.db")
    conn.execute(
        "CREATE TRIGGER no_usage BEFORE UPDATE ON usage_days "
        "BEGIN SELECT RAISE(ABORT, 'counting failed'); END"
    )
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="counting failed"):
        await store.add_many(turn("lost"), user_id="u", session_id="new", usage=TURN)


async def _fail_in_postgres(store: Store, tmp_path: Path) -> None:
    from tests.storage.test_postgres import _superuser

    schema = f'"{store.schema}"'  # type: ignore[attr-defined]
    async with await _superuser() as conn:
        await conn.execute(
            f"CREATE FUNCTION {schema}.no_usage() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'counting failed'; END $$;"
            f" CREATE TRIGGER no_usage BEFORE UPDATE ON {schema}.usage_days"
            f" FOR EACH ROW EXECUTE FUNCTION {schema}.no_usage()"
        )
    with pytest.raises(StoreError, match="counting failed"):
        await store.add_many(turn("lost"), user_id="u", session_id="new", usage=TURN)


async def _fail_in_redis(store: Store, tmp_path: Path) -> None:
    # A script's writes are not rolled back by a later error, so the append script does
    # everything that can refuse a turn (its fence) before it writes anything.
    from redis.asyncio import Redis

    from tenantry.tenancy import Scope

    lock_key = store._keys(Scope("u", "new")).lock  # type: ignore[attr-defined]
    async with store.lock("u", "new"):
        client = Redis.from_url(os.environ["TENANTRY_TEST_REDIS_URL"])
        async with client:
            await client.delete(lock_key)  # as if it had expired
        with pytest.raises(ScopeLockLost):
            await store.add_many(turn("lost"), user_id="u", session_id="new", usage=TURN)


async def _fail_in_redis_cluster(store: Store, tmp_path: Path) -> None:
    from tenantry.storage.redis_client import connect
    from tenantry.tenancy import Scope

    lock_key = store._keys(Scope("u", "new")).lock  # type: ignore[attr-defined]
    async with store.lock("u", "new"):
        url = os.environ[REDIS_CLUSTER_URL_VARIABLE].replace("+cluster", "", 1)
        client = connect(url, cluster=True, pool_size=2)
        try:
            await client.delete(lock_key)  # as if it had expired
        finally:
            await client.aclose()
        with pytest.raises(ScopeLockLost):
            await store.add_many(turn("lost"), user_id="u", session_id="new", usage=TURN)


FAIL_A_COUNTED_TURN = {
    CLUSTER_BACKEND: _fail_in_redis_cluster,
    "memory": _fail_in_memory,
    "sqlite": _fail_in_sqlite,
    "postgres": _fail_in_postgres,
    "redis": _fail_in_redis,
}
"""Per backend: append a counted turn (of user "u", session "new") that fails inside the
backend's atomic step, after the counter's user already has a row of today."""


# --- days and months --------------------------------------------------------------------------


async def test_counters_roll_over_at_midnight_utc(make_store: MakeStore, clock: FakeClock) -> None:
    clock.now = at(DAY, 23, 59, 59)
    store = make_store(clock=clock)
    await store.add_many(turn(), user_id="u", usage=TURN)
    clock.advance(2)  # 00:00:01 of the next day
    await store.add_many(turn(), user_id="u", usage=Usage(requests=1, output_tokens=7))
    next_day = DAY + timedelta(days=1)
    assert await store.get_usage("u", start=DAY, end=next_day) == [
        UsageDay(DAY, TURN),
        UsageDay(next_day, Usage(requests=1, output_tokens=7)),
    ]
    assert await store.get_usage("u", start=next_day, end=next_day + timedelta(days=5)) == [
        UsageDay(next_day, Usage(requests=1, output_tokens=7))
    ]
    admission = await store.read_admission("u")
    assert admission.day == Usage(requests=1, output_tokens=7)
    assert admission.month == TURN + Usage(requests=1, output_tokens=7)
    assert admission.budget is None


async def test_a_month_is_the_sum_of_its_days_and_starts_afresh(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    one = Usage(requests=1, input_tokens=10, output_tokens=1)
    for day in (date(2026, 1, 31), date(2026, 2, 1), date(2026, 2, 14), date(2026, 2, 28)):
        await store.add_usage(one, user_id="u", now=at(day))
    february = await store.read_admission("u", now=at(date(2026, 2, 28), 8))
    assert february.month == one + one + one
    assert february.day == one
    assert (await store.read_admission("u", now=at(date(2026, 2, 27)))).day == Usage()
    march = await store.read_admission("u", now=at(date(2026, 3, 1)))
    assert (march.day, march.month) == (Usage(), Usage())
    january = await store.usage_total("u", start=date(2026, 1, 1), end=date(2026, 1, 31))
    assert january == one


async def test_concurrent_turns_of_one_user_are_all_counted(
    make_store: MakeStore, clock: FakeClock
) -> None:
    clock.now = at(DAY)
    store = make_store(clock=clock)
    one = Usage(requests=1, input_tokens=3, output_tokens=2, tool_calls=1)
    await asyncio.gather(
        *(
            store.add_many(turn(), user_id="u", session_id=f"s{i % 7}", usage=one)
            for i in range(200)
        ),
        *(store.add_usage(one, user_id="u") for _ in range(50)),
    )
    total = await store.usage_total("u", start=DAY, end=DAY)
    assert (total.requests, total.input_tokens, total.output_tokens, total.tool_calls) == (
        250,
        750,
        500,
        250,
    )


async def test_turns_from_two_store_objects_add_up(
    make_store: MakeStore, backend: str, clock: FakeClock
) -> None:
    if backend not in PERSISTENT:
        pytest.skip(f"{backend} keeps its data in one store object, by design")
    clock.now = at(DAY)
    first, second = make_store(clock=clock), make_store(clock=clock)
    await asyncio.gather(
        *(s.add_many(turn(), user_id="u", usage=TURN) for s in (first, second) * 10)
    )
    assert await second.usage_total("u", start=DAY, end=DAY) == Usage(
        **{k: v * 20 for k, v in TURN.to_dict().items() if k not in ("total_tokens", "estimated")}
    )


def test_the_day_of_a_time_is_its_utc_date() -> None:
    for now in (0.0, -0.5, 86_399.999, 86_400.0, at(DAY, 23, 59, 59) + 0.999, 1.7e9, 4.1e9):
        assert usage_day(now) == datetime.fromtimestamp(now, UTC).date(), now
    assert month_start(date(2026, 2, 28)) == date(2026, 2, 1)


# --- the heaviest users -----------------------------------------------------------------------


async def test_top_usage_ranks_users_by_tokens_of_the_period(store: Store) -> None:
    days = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]
    plan = {"light": [5, 5, 5], "heavy": [100, 0, 50], "tie-b": [20, 0, 0], "tie-a": [0, 20, 0]}
    for user, tokens in plan.items():
        for day, n in zip(days, tokens, strict=True):
            if n:
                await store.add_usage(
                    Usage(requests=1, input_tokens=n, output_tokens=1), user_id=user, now=at(day)
                )
    await store.add_usage(Usage(input_tokens=10_000), user_id="outside", now=at(DAY, 0) - 1)
    top = await store.top_usage(start=DAY, end=days[-1], limit=3)
    assert [user for user, _ in top] == ["heavy", "tie-a", "tie-b"]
    assert top[0][1] == Usage(requests=2, input_tokens=150, output_tokens=2)
    everyone = await store.top_usage(start=DAY, end=days[-1], limit=100)
    assert [user for user, _ in everyone] == ["heavy", "tie-a", "tie-b", "light"]
    assert everyone[-1][1] == Usage(requests=3, input_tokens=15, output_tokens=3)
    only_day_two = await store.top_usage(start=days[1], end=days[1])
    assert [(user, usage.total_tokens) for user, usage in only_day_two] == [
        ("tie-a", 21),
        ("light", 6),
    ]
    assert (
        await store.top_usage(start=days[-1] + timedelta(days=1), end=days[-1] + timedelta(3)) == []
    )


# --- budgets ----------------------------------------------------------------------------------


async def test_a_budget_override_round_trips_and_can_be_removed(store: Store) -> None:
    assert await store.get_budget("u") is None
    budget = Budget(tokens_per_day=1_000, requests_per_month=300)
    await store.set_budget("u", budget)
    assert await store.get_budget("u") == budget
    assert (await store.read_admission("u")).budget == budget
    tighter = Budget(tokens_per_day=0)
    await store.set_budget("u", tighter)
    assert await store.get_budget("u") == tighter
    await store.set_budget("u", None)
    assert await store.get_budget("u") is None
    await store.set_budget("u", None)  # removing what is not there is harmless
    unlimited = Budget()
    await store.set_budget("u", unlimited)
    assert await store.get_budget("u") == unlimited


async def test_budgets_survive_reopening(make_store: MakeStore, backend: str) -> None:
    if backend not in PERSISTENT:
        pytest.skip(f"{backend} keeps nothing after close, by design")
    first = make_store()
    await first.set_budget("u", Budget(tokens_per_month=5))
    await first.add_usage(Usage(requests=1), user_id="u", now=at(DAY))
    await first.close()
    second = make_store()
    assert await second.get_budget("u") == Budget(tokens_per_month=5)
    assert await second.usage_total("u", start=DAY, end=DAY) == Usage(requests=1)


# --- deleting ---------------------------------------------------------------------------------


async def test_clearing_a_user_keeps_their_usage_and_budget(
    make_store: MakeStore, clock: FakeClock
) -> None:
    clock.now = at(DAY)
    store = make_store(clock=clock)
    await store.add_many(turn(), user_id="u", usage=TURN)
    await store.set_budget("u", Budget(tokens_per_day=10))
    await store.clear("u", "default")
    await store.clear("u")
    assert await store.list_users() == []
    assert await store.usage_total("u", start=DAY, end=DAY) == TURN
    assert await store.get_budget("u") == Budget(tokens_per_day=10)


async def test_clear_all_deletes_every_users_usage_and_budget(
    make_store: MakeStore, clock: FakeClock
) -> None:
    clock.now = at(DAY)
    store = make_store(clock=clock)
    for user in ("a", "b"):
        await store.add_many(turn(), user_id=user, usage=TURN)
        await store.add_usage(TURN, user_id=user, now=at(DAY - timedelta(days=40)))
        await store.set_budget(user, Budget(requests_per_day=1))
    await store.add_usage(TURN, user_id="no-session")
    await store.clear_all()
    for user in ("a", "b", "no-session"):
        assert await store.get_usage(user, start=DAY - timedelta(days=60), end=DAY) == []
        assert await store.get_budget(user) is None
    assert await store.top_usage(start=DAY - timedelta(days=60), end=DAY) == []


async def test_prune_deletes_usage_older_than_the_retention(
    make_store: MakeStore, clock: FakeClock
) -> None:
    clock.now = at(DAY)
    store = make_store(clock=clock, usage_retention_days=30)
    assert store.usage_retention_days == 30
    for back in (31, 30, 0):
        await store.add_usage(TURN, user_id="u", now=at(DAY - timedelta(days=back)))
    await store.add_usage(TURN, user_id="v", now=at(DAY - timedelta(days=100)))
    await store.set_budget("v", Budget(tokens_per_day=1))
    await store.add_many(turn(), user_id="w")
    assert await store.prune_inactive(timedelta(days=365)) == 0  # scopes: none idle that long
    start = DAY - timedelta(days=200)
    assert [one.day for one in await store.get_usage("u", start=start, end=DAY)] == [
        DAY - timedelta(days=30),
        DAY,
    ]
    assert await store.get_usage("v", start=start, end=DAY) == []
    assert await store.get_budget("v") == Budget(tokens_per_day=1)  # budgets are not usage


async def test_prune_deletes_old_usage_through_more_than_one_batch(
    make_store: MakeStore, clock: FakeClock
) -> None:
    clock.now = at(DAY)
    store = make_store(clock=clock, usage_retention_days=10)
    old = at(DAY - timedelta(days=11))
    await asyncio.gather(  # more users than one batch of PRUNE_BATCH
        *(store.add_usage(TURN, user_id=f"u{i}", now=old) for i in range(PRUNE_BATCH + 20))
    )
    await store.add_usage(TURN, user_id="u0")
    await store.prune_inactive(timedelta(days=365))
    start = DAY - timedelta(days=30)
    assert await store.top_usage(start=start, end=DAY, limit=1_000) == [("u0", TURN)]


def test_the_retention_is_a_positive_number_of_days(make_store: MakeStore) -> None:
    for bad in (0, -1, 1.5, None):
        with pytest.raises(InvalidInput, match="usage_retention_days"):
            make_store(usage_retention_days=bad)


# --- isolation --------------------------------------------------------------------------------


async def test_each_user_sees_only_their_own_usage_and_budget(
    make_store: MakeStore, clock: FakeClock
) -> None:
    clock.now = at(DAY)
    store = make_store(clock=clock)
    users = ["alice", "bob", *HOSTILE_IDS]
    for i, user in enumerate(users, 1):
        await store.add_many(turn(), user_id=user, usage=Usage(requests=i, input_tokens=i))
        await store.set_budget(user, Budget(tokens_per_day=i))
    for i, user in enumerate(users, 1):
        assert await store.get_usage(user, start=DAY, end=DAY) == [
            UsageDay(DAY, Usage(requests=i, input_tokens=i))
        ]
        admission = await store.read_admission(user)
        assert admission.day == admission.month == Usage(requests=i, input_tokens=i)
        assert admission.budget == Budget(tokens_per_day=i)
    top = await store.top_usage(start=DAY, end=DAY, limit=len(users))
    assert dict(top) == {user: Usage(requests=i, input_tokens=i) for i, user in enumerate(users, 1)}
    await store.set_budget("alice", None)
    assert await store.get_budget("bob") == Budget(tokens_per_day=2)
    assert await store.get_usage("nobody", start=DAY, end=DAY) == []
    assert (await store.read_admission("nobody")).month == Usage()


# --- checks -----------------------------------------------------------------------------------


def _usage_calls(store: Store, user: Any) -> list[Any]:
    return [
        store.add_usage(TURN, user_id=user),
        store.get_usage(user, start=DAY, end=DAY),
        store.usage_total(user, start=DAY, end=DAY),
        store.read_admission(user),
        store.get_budget(user),
        store.set_budget(user, Budget()),
        store.rate_limit_hit(user, per_minute=1),
    ]


@pytest.mark.parametrize("bad", [None, *BAD_IDS])
async def test_every_usage_call_refuses_a_bad_or_missing_user_id(store: Store, bad: Any) -> None:
    for call in _usage_calls(store, bad):
        with pytest.raises(InvalidUserId):
            await call


@pytest.mark.parametrize(
    "bad",
    [
        Usage(requests=-1),
        Usage(input_tokens=1.5),  # type: ignore[arg-type]
        Usage(tool_calls=True),  # type: ignore[arg-type]
        Usage(output_tokens=2**62),
        Usage(estimated=1),  # type: ignore[arg-type]
        {"requests": 1},
    ],
)
async def test_bad_usage_is_refused_and_nothing_is_stored(store: Store, bad: Any) -> None:
    with pytest.raises(InvalidInput):
        await store.add_usage(bad, user_id="u", now=at(DAY))
    with pytest.raises(InvalidInput):
        await store.add_many(turn(), user_id="u", usage=bad)
    assert await store.size("u") == 0
    assert await store.get_usage("u", start=DAY - timedelta(days=1), end=DAY) == []


async def test_bad_periods_budgets_and_limits_are_refused(store: Store) -> None:
    bad_calls = [
        store.get_usage("u", start=DAY, end=DAY - timedelta(days=1)),
        store.get_usage("u", start=datetime(2026, 1, 1, tzinfo=UTC), end=DAY),
        store.get_usage("u", start="2026-01-01", end=DAY),  # type: ignore[arg-type]
        store.get_usage("u", start=DAY - timedelta(days=MAX_USAGE_DAYS), end=DAY),
        store.top_usage(start=DAY, end=DAY, limit=0),
        store.top_usage(start=DAY, end=DAY, limit=1_001),
        store.set_budget("u", {"tokens_per_day": 1}),  # type: ignore[arg-type]
        store.rate_limit_hit("u", per_minute=0),
        store.add_usage(TURN, user_id="u", now="today"),  # type: ignore[arg-type]
    ]
    for call in bad_calls:
        with pytest.raises(InvalidInput):
            await call
    longest = await store.get_usage("u", start=DAY - timedelta(days=MAX_USAGE_DAYS - 1), end=DAY)
    assert longest == []


async def test_a_closed_store_refuses_usage_calls(make_store: MakeStore) -> None:
    store = make_store()
    await store.close()
    for call in [*_usage_calls(store, "u"), store.top_usage(start=DAY, end=DAY)]:
        with pytest.raises(StoreClosed):
            await call


# --- the shared rate limit --------------------------------------------------------------------


async def test_only_shared_stores_offer_the_shared_rate_limit(store: Store, backend: str) -> None:
    assert store.shares_rate_limit == (backend in SHARED)
    if backend not in SHARED:
        with pytest.raises(NotImplementedError, match="in-process rate limit") as refused:
            await store.rate_limit_hit("u", per_minute=5)
        assert isinstance(refused.value, RateLimitNotShared)  # a tenantry error, typed


async def test_the_rate_limit_is_a_bucket_of_per_minute_requests(
    store: Store, backend: str
) -> None:
    if backend not in SHARED:
        pytest.skip(f"{backend} is not shared between processes: the server's bucket applies")
    t = at(DAY)
    assert [await store.rate_limit_hit("u", per_minute=3, now=t) for _ in range(3)] == [0.0] * 3
    wait = await store.rate_limit_hit("u", per_minute=3, now=t)
    assert wait == pytest.approx(20.0, abs=0.01)  # one request refills in 60 / 3 seconds
    assert await store.rate_limit_hit("u", per_minute=3, now=t + 10) == pytest.approx(10, abs=0.01)
    assert await store.rate_limit_hit("other", per_minute=3, now=t) == 0.0  # per user
    assert await store.rate_limit_hit("u", per_minute=3, now=t + 20) == 0.0
    assert await store.rate_limit_hit("u", per_minute=3, now=t + 20) > 0
    assert await store.rate_limit_hit("u", per_minute=3, now=t + 600) == 0.0  # full, not more
    assert await store.rate_limit_hit("u", per_minute=3, now=t + 600) == 0.0
    assert await store.rate_limit_hit("u", per_minute=3, now=t + 600) == 0.0
    assert await store.rate_limit_hit("u", per_minute=3, now=t + 600) > 0


async def test_two_store_objects_share_one_bucket(make_store: MakeStore, backend: str) -> None:
    if backend not in SHARED:
        pytest.skip(f"{backend} is not shared between processes: the server's bucket applies")
    first, second = make_store(), make_store()
    t = at(DAY)
    results = await asyncio.gather(
        *(s.rate_limit_hit("u", per_minute=10, now=t) for s in (first, second) * 15)
    )
    assert sum(1 for wait in results if wait == 0.0) == 10  # not 10 per store object
    assert all(wait > 0 for wait in results if wait != 0.0)


# --- the sync facade --------------------------------------------------------------------------


def test_the_sync_facade_counts_and_reads_usage(make_store: MakeStore, clock: FakeClock) -> None:
    clock.now = at(DAY)
    with SyncStore(make_store(clock=clock)) as sync:
        sync.add_many(turn(), user_id="u", usage=TURN)
        sync.add_usage(Usage(requests=1), user_id="u")
        assert sync.get_usage("u", start=DAY, end=DAY) == [UsageDay(DAY, TURN + Usage(requests=1))]
        assert sync.usage_total("u", start=DAY, end=DAY).requests == 3
        assert sync.top_usage(start=DAY, end=DAY, limit=1)[0][0] == "u"
        sync.set_budget("u", Budget(tokens_per_day=9))
        assert sync.get_budget("u") == Budget(tokens_per_day=9)
        assert sync.read_admission("u").day.requests == 3
        assert sync.usage_retention_days == 400
        assert isinstance(sync.shares_rate_limit, bool)
        if sync.shares_rate_limit:
            assert sync.rate_limit_hit("u", per_minute=1) == 0.0
