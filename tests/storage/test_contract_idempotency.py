"""The store contract for idempotency records, on every backend: a record is written with its
turn in one atomic step, found by (user, key) until it expires, never by another user, and a
key can be written once per user while its record lives."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tenantry import IdempotencyKeyReused, InvalidIdempotencyKey, Message, SyncStore
from tenantry.errors import InvalidInput
from tenantry.storage.base import Store
from tenantry.storage.idempotency import IdempotencyRecord, request_hash
from tests.conftest import CLUSTER_BACKEND, PERSISTENT, FakeClock, MakeStore

DAY = 86_400.0


def record(
    key: str = "k-1",
    session: str = "default",
    text: str = "hello",
    expires_at: float = 1e12,
) -> IdempotencyRecord:
    reply = '{"content":"reply to ' + text + '"}'
    return IdempotencyRecord(key, session, request_hash(session, text), reply, expires_at)


def turn(text: str = "hello") -> list[Message]:
    return [Message.user(text), Message.assistant("reply to " + text)]


async def test_a_record_is_stored_with_its_turn_and_found_by_its_key(store: Store) -> None:
    written = record(session="s1")
    await store.add_many(turn(), user_id="u", session_id="s1", idempotency=written)
    assert await store.get_idempotency_record("k-1", user_id="u") == written
    assert [m.content for m in await store.get_messages("u", "s1")] == ["hello", "reply to hello"]
    assert await store.get_idempotency_record("k-2", user_id="u") is None


async def test_a_key_is_written_once_and_a_second_write_stores_nothing(store: Store) -> None:
    await store.add_many(turn("one"), user_id="u", idempotency=record(text="one"))
    for again in (record(text="one"), record(text="two"), record(session="other", text="x")):
        with pytest.raises(IdempotencyKeyReused, match="already used"):
            await store.add_many(
                turn("two"),
                user_id="u",
                session_id=again.session_id,
                state={"changed": True},
                idempotency=again,
            )
    assert [m.content for m in await store.get_messages("u")] == ["one", "reply to one"]
    assert await store.get_state("u") == {}
    assert await store.list_sessions("u") == ["default"]
    found = await store.get_idempotency_record("k-1", user_id="u")
    assert found is not None
    assert found.request_hash == request_hash("default", "one")


async def test_concurrent_writes_of_one_key_exactly_one_succeeds(store: Store) -> None:
    async def write(n: int) -> bool:
        try:
            await store.add_many(turn(f"t{n}"), user_id="u", idempotency=record(text=f"t{n}"))
        except IdempotencyKeyReused:
            return False
        return True

    results = await asyncio.gather(*(write(n) for n in range(20)))
    assert results.count(True) == 1
    assert await store.size("u") == 2
    winner = results.index(True)
    found = await store.get_idempotency_record("k-1", user_id="u")
    assert found is not None
    assert found.request_hash == request_hash("default", f"t{winner}")


async def test_a_record_expires_and_its_key_can_then_be_written_again(
    make_store: MakeStore, clock: FakeClock, backend: str
) -> None:
    store = make_store(clock=clock)
    first = record(text="one", expires_at=clock.now + DAY)
    await store.add_many(turn("one"), user_id="u", idempotency=first)
    clock.advance(DAY - 1)
    assert await store.get_idempotency_record("k-1", user_id="u") == first
    clock.advance(1)
    assert await store.get_idempotency_record("k-1", user_id="u") is None
    second = record(text="two", expires_at=clock.now + DAY)
    await store.add_many(turn("two"), user_id="u", idempotency=second)
    assert await store.get_idempotency_record("k-1", user_id="u") == second
    assert await store.size("u") == 4


async def test_prune_deletes_expired_records_and_keeps_live_ones(
    make_store: MakeStore, clock: FakeClock, backend: str
) -> None:
    store = make_store(clock=clock)
    await store.add_many(turn(), user_id="u", idempotency=record("old", expires_at=clock.now + 10))
    await store.add_many(turn(), user_id="u", idempotency=record("new", expires_at=clock.now + DAY))
    clock.advance(60)
    assert await store.prune_inactive(timedelta(days=7)) == 0  # the scope is not idle
    assert await store.get_idempotency_record("new", user_id="u") is not None
    if backend in ("redis", CLUSTER_BACKEND):
        pytest.skip("Redis deletes an expired record by the key's own TTL, not by prune")
    assert await store._get_record("u", "old") is None  # gone, not only hidden
    assert await store._get_record("u", "new") is not None


async def test_clearing_a_session_deletes_its_records_only(store: Store) -> None:
    await store.add_many(turn(), user_id="u", session_id="s1", idempotency=record("a", "s1"))
    await store.add_many(turn(), user_id="u", session_id="s2", idempotency=record("b", "s2"))
    await store.add_many(turn(), user_id="v", session_id="s1", idempotency=record("a", "s1"))
    await store.clear("u", "s1")
    assert await store.get_idempotency_record("a", user_id="u") is None
    assert await store.get_idempotency_record("b", user_id="u") is not None
    assert await store.get_idempotency_record("a", user_id="v") is not None
    await store.add_many(turn(), user_id="u", session_id="s1", idempotency=record("a", "s1"))


async def test_clearing_a_user_or_everything_deletes_their_records(store: Store) -> None:
    for user in ("u", "v"):
        for session in ("s1", "s2"):
            key = f"{session}-key"
            await store.add_many(
                turn(), user_id=user, session_id=session, idempotency=record(key, session)
            )
    await store.clear("u")
    assert await store.get_idempotency_record("s1-key", user_id="u") is None
    assert await store.get_idempotency_record("s2-key", user_id="u") is None
    assert await store.get_idempotency_record("s2-key", user_id="v") is not None
    await store.clear_all()
    assert await store.get_idempotency_record("s1-key", user_id="v") is None


@pytest.mark.parametrize("bad", ["", " ", "a" * 256, "new\nline", "nul\x00", 7, None])
async def test_a_bad_key_is_refused(store: Store, bad: object) -> None:
    with pytest.raises(InvalidIdempotencyKey, match="idempotency key"):
        await store.get_idempotency_record(bad, user_id="u")  # type: ignore[arg-type]
    with pytest.raises(InvalidIdempotencyKey, match="idempotency key"):
        await store.add_many(turn(), user_id="u", idempotency=record(bad))  # type: ignore[arg-type]
    assert await store.size("u") == 0


async def test_a_record_of_another_session_than_the_turn_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="names session 'other'"):
        await store.add_many(turn(), user_id="u", session_id="s", idempotency=record("k", "other"))
    assert await store.size("u", "s") == 0


async def test_unusual_keys_are_kept_apart(store: Store) -> None:
    keys = ["a:b", "a%3Ab", "{tag}", "ключ", "a b", "*"]
    for n, key in enumerate(keys):
        await store.add_many(turn(f"t{n}"), user_id="u", idempotency=record(key, text=f"t{n}"))
    for n, key in enumerate(keys):
        found = await store.get_idempotency_record(key, user_id="u")
        assert found is not None
        assert found.request_hash == request_hash("default", f"t{n}")


async def test_records_survive_reopening(make_store: MakeStore, backend: str) -> None:
    if backend not in PERSISTENT:
        pytest.skip("the in-memory store keeps nothing after close")
    first = make_store()
    await first.add_many(turn(), user_id="u", idempotency=record())
    await first.close()
    assert await make_store().get_idempotency_record("k-1", user_id="u") == record()


def test_the_sync_facade_reads_and_writes_records(make_store: MakeStore) -> None:
    with SyncStore(make_store()) as sync:
        sync.add_many(turn(), user_id="u", idempotency=record())
        assert sync.get_idempotency_record("k-1", user_id="u") == record()
        with pytest.raises(IdempotencyKeyReused):
            sync.add_many(turn(), user_id="u", idempotency=record())


# --- isolation --------------------------------------------------------------------------------


async def test_user_b_never_finds_user_a_record_even_knowing_its_key(store: Store) -> None:
    secret = record("shared", text="secret of a")
    await store.add_many(turn("secret of a"), user_id="user-a", idempotency=secret)
    assert await store.get_idempotency_record("shared", user_id="user-b") is None
    assert await store.get_idempotency_record("shared", user_id="user-a:") is None
    # b may use the very same key for a turn of its own; a's record is untouched
    mine = record("shared", text="b's own")
    await store.add_many(turn("b's own"), user_id="user-b", idempotency=mine)
    assert await store.get_idempotency_record("shared", user_id="user-b") == mine
    assert await store.get_idempotency_record("shared", user_id="user-a") == secret


async def test_many_users_writing_one_key_at_once_each_get_their_own(store: Store) -> None:
    users = [f"user-{n}" for n in range(50)]
    await asyncio.gather(
        *(store.add_many(turn(u), user_id=u, idempotency=record("same", text=u)) for u in users)
    )
    for user in users:
        found = await store.get_idempotency_record("same", user_id=user)
        assert found is not None
        assert found.request_hash == request_hash("default", user)
        assert found.reply == '{"content":"reply to ' + user + '"}'
        assert [m.content for m in await store.get_messages(user)] == [user, "reply to " + user]


async def test_a_reused_key_counts_no_usage_either(make_store: MakeStore, clock: FakeClock) -> None:
    from datetime import UTC, datetime

    from tenantry import Usage

    store = make_store(clock=clock)
    day = datetime.fromtimestamp(clock.now, UTC).date()
    counted = Usage(requests=1, input_tokens=10, output_tokens=5)
    await store.add_many(turn("one"), user_id="u", usage=counted, idempotency=record(text="one"))
    with pytest.raises(IdempotencyKeyReused):
        await store.add_many(turn("two"), user_id="u", usage=counted, idempotency=record())
    assert await store.usage_total("u", start=day, end=day) == counted  # counted once
    assert await store.size("u") == 2
