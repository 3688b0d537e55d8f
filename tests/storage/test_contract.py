"""The store contract: every backend must pass every test here, unchanged.

Isolation and concurrency cases are the seed's (Agno-Go's memory tests), made stricter.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from tenantry import InvalidSessionId, InvalidUserId, Message, SyncStore, ToolCall
from tenantry.errors import InvalidInput, InvalidMessage, InvalidState, ScopeBusy, StoreClosed
from tenantry.storage.base import PRUNE_BATCH, Store
from tests.conftest import PERSISTENT, FakeClock, MakeStore

# --- the seed's cases -------------------------------------------------------------------------


async def test_each_user_sees_only_their_own_messages(store: Store) -> None:
    for i in range(10):
        await store.add(Message.user(f"User A message {i}"), user_id="user-a")
    for i in range(5):
        await store.add(Message.user(f"User B message {i}"), user_id="user-b")

    assert await store.size("user-a") == 10
    assert await store.size("user-b") == 5
    assert await store.size("user-c") == 0
    a = await store.get_messages("user-a")
    assert [m.content for m in a] == [f"User A message {i}" for i in range(10)]
    assert all("User B" not in m.content for m in a)
    assert await store.get_messages("user-c") == []


async def test_omitted_user_id_is_the_default_user(store: Store) -> None:
    await store.add(Message.user("hello"))
    assert await store.size("default") == 1
    assert await store.list_users() == ["default"]


async def test_1000_concurrent_adds_over_10_users_keep_exact_counts(store: Store) -> None:
    async def add(user: int, n: int) -> None:
        await store.add(Message.user(f"Message {n}"), user_id=f"user-{user}")

    await asyncio.gather(*(add(u, n) for u in range(10) for n in range(100)))

    for u in range(10):
        assert await store.size(f"user-{u}") == 100
        contents = {m.content for m in await store.get_messages(f"user-{u}")}
        assert contents == {f"Message {n}" for n in range(100)}


async def test_concurrent_adds_from_threads_through_the_sync_facade(store: Store) -> None:
    sync = SyncStore(store)

    def add(user: int, n: int) -> None:
        sync.add(Message.user(f"Message {n}"), user_id=f"user-{user}")

    def hammer() -> None:
        with ThreadPoolExecutor(max_workers=16) as pool:
            for future in [pool.submit(add, u, n) for u in range(10) for n in range(100)]:
                future.result()

    await asyncio.to_thread(hammer)
    for u in range(10):
        assert await store.size(f"user-{u}") == 100


# --- reading ----------------------------------------------------------------------------------


async def test_messages_come_back_oldest_first_and_limit_gives_the_newest(
    store: Store,
) -> None:
    await store.add_many([Message.user(f"m{i}") for i in range(10)], user_id="u")
    assert [m.content for m in await store.get_messages("u")] == [f"m{i}" for i in range(10)]
    assert [m.content for m in await store.get_messages("u", limit=3)] == ["m7", "m8", "m9"]
    assert await store.get_messages("u", limit=0) == []
    assert len(await store.get_messages("u", limit=100)) == 10


async def test_offset_pages_backwards_from_the_newest(store: Store) -> None:
    await store.add_many([Message.user(f"m{i}") for i in range(10)], user_id="u")
    page = await store.get_messages("u", limit=3, offset=3)
    assert [m.content for m in page] == ["m4", "m5", "m6"]
    assert [m.content for m in await store.get_messages("u", limit=4, offset=8)] == ["m0", "m1"]
    assert [m.content for m in await store.get_messages("u", offset=7)] == ["m0", "m1", "m2"]
    assert await store.get_messages("u", limit=5, offset=10) == []


@pytest.mark.parametrize("bad", [{"limit": -1}, {"offset": -1}, {"limit": True}, {"offset": 1.5}])
async def test_bad_paging_is_rejected(store: Store, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        await store.get_messages("u", **bad)


async def test_messages_round_trip_with_every_field(store: Store) -> None:
    call = ToolCall(id="call-1", name="lookup", arguments='{"q": "ü"}')
    sent = [
        Message.user("Find ü ✓ 日本語"),
        Message.assistant("", tool_calls=(call,)),
        Message.tool('{"found": true}', tool_call_id="call-1", name="lookup"),
        Message.assistant("Found it."),
    ]
    await store.add_many(sent, user_id="u", session_id="s")
    assert await store.get_messages("u", "s") == sent


async def test_a_caller_cannot_change_stored_messages(store: Store) -> None:
    await store.add(Message.user("original"), user_id="u")
    got = await store.get_messages("u")
    got.append(Message.user("smuggled"))
    got.clear()
    with pytest.raises(AttributeError):
        (await store.get_messages("u"))[0].content = "edited"  # type: ignore[misc]
    assert [m.content for m in await store.get_messages("u")] == ["original"]


async def test_messages_read_back_are_ordinary_frozen_messages(store: Store) -> None:
    call = ToolCall(id="call-1", name="lookup", arguments="{}")
    sent = Message.assistant("looking", tool_calls=(call,))
    await store.add(sent, user_id="u")
    (got,) = await store.get_messages("u")
    assert type(got) is Message
    assert (got, hash(got)) == (sent, hash(sent))
    assert type(got.tool_calls) is tuple
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.content = "edited"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):  # slotted: no new attributes either
        got.extra = 1  # type: ignore[attr-defined]
    assert dataclasses.replace(got, content="derived").content == "derived"
    assert (await store.snapshot("u")).messages == [sent]


async def test_sessions_of_one_user_are_separate(store: Store) -> None:
    await store.add(Message.user("in s1"), user_id="u", session_id="s1")
    await store.add(Message.user("in s2"), user_id="u", session_id="s2")
    assert [m.content for m in await store.get_messages("u", "s1")] == ["in s1"]
    assert [m.content for m in await store.get_messages("u", "s2")] == ["in s2"]
    assert await store.size("u") == 0  # the default session is yet another one


# --- writing ----------------------------------------------------------------------------------


async def test_add_many_is_all_or_nothing(store: Store) -> None:
    bad: list[Any] = [Message.user("one"), "not a message", Message.user("three")]
    with pytest.raises(InvalidMessage):
        await store.add_many(bad, user_id="u")
    assert await store.size("u") == 0
    assert await store.list_users() == []


async def test_add_rejects_what_is_not_a_message(store: Store) -> None:
    with pytest.raises(InvalidMessage):
        await store.add("hello", user_id="u")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage):
        await store.add_many(Message.user("one"), user_id="u")  # type: ignore[arg-type]


async def test_capacity_drops_the_oldest_first(make_store: MakeStore) -> None:
    store = make_store(max_messages=5)
    for i in range(8):
        await store.add(Message.user(f"m{i}"), user_id="u")
    assert await store.size("u") == 5
    assert [m.content for m in await store.get_messages("u")] == [f"m{i}" for i in range(3, 8)]
    await store.add_many([Message.user(f"b{i}") for i in range(7)], user_id="v")
    assert [m.content for m in await store.get_messages("v")] == [f"b{i}" for i in range(2, 7)]
    await store.add(Message.user("other"), user_id="w")
    assert await store.size("w") == 1


# --- clearing ---------------------------------------------------------------------------------


async def _fill(store: Store) -> None:
    for user in ("a", "b"):
        for session in ("s1", "s2"):
            await store.add(Message.user(f"{user}/{session}"), user_id=user, session_id=session)
            await store.set_state({"who": f"{user}/{session}"}, user_id=user, session_id=session)


async def test_clearing_a_session_leaves_every_other_scope_intact(store: Store) -> None:
    await _fill(store)
    await store.clear("a", "s1")
    assert await store.size("a", "s1") == 0
    assert await store.get_state("a", "s1") == {}
    assert await store.list_sessions("a") == ["s2"]
    for user, session in (("a", "s2"), ("b", "s1"), ("b", "s2")):
        assert [m.content for m in await store.get_messages(user, session)] == [f"{user}/{session}"]
        assert await store.get_state(user, session) == {"who": f"{user}/{session}"}


async def test_clearing_a_user_removes_all_their_sessions_only(store: Store) -> None:
    await _fill(store)
    await store.clear("a")
    assert await store.list_users() == ["b"]
    assert await store.list_sessions("a") == []
    assert await store.size("a", "s2") == 0
    assert await store.size("b", "s1") == 1


async def test_clear_all_removes_everything(store: Store) -> None:
    await _fill(store)
    await store.clear_all()
    assert await store.list_users() == []
    assert await store.size("b", "s2") == 0
    await store.add(Message.user("after"), user_id="a")  # still usable
    assert await store.size("a") == 1


async def test_clearing_unknown_scopes_is_harmless(store: Store) -> None:
    await store.clear("nobody")
    await store.clear("nobody", "nothing")
    assert await store.list_users() == []


# --- listing ----------------------------------------------------------------------------------


async def test_list_users_and_sessions_are_sorted_and_exact(store: Store) -> None:
    await store.add(Message.user("x"), user_id="carol", session_id="z")
    await store.add(Message.user("x"), user_id="alice", session_id="b")
    await store.add(Message.user("x"), user_id="alice", session_id="a")
    await store.set_state({"k": 1}, user_id="bob", session_id="only-state")
    assert await store.list_users() == ["alice", "bob", "carol"]
    assert await store.list_sessions("alice") == ["a", "b"]
    assert await store.list_sessions("bob") == ["only-state"]
    assert await store.list_sessions("dave") == []


# --- session state ----------------------------------------------------------------------------


async def test_state_is_per_scope_and_starts_empty(store: Store) -> None:
    assert await store.get_state("u") == {}
    await store.set_state({"cart": ["apple"], "n": 1}, user_id="u")
    await store.set_state({"cart": ["pear"]}, user_id="v")
    await store.set_state({"other": True}, user_id="u", session_id="s2")
    assert await store.get_state("u") == {"cart": ["apple"], "n": 1}
    assert await store.get_state("v") == {"cart": ["pear"]}
    assert await store.get_state("u", "s2") == {"other": True}


async def test_state_returned_is_a_copy(store: Store) -> None:
    await store.set_state({"cart": ["apple"]}, user_id="u")
    got = await store.get_state("u")
    got["cart"].append("stolen")
    got["new"] = 1
    assert await store.get_state("u") == {"cart": ["apple"]}


@pytest.mark.parametrize(
    "bad", [{"f": object()}, {1: "int key"}, ["not", "a", "dict"], {"nan": float("nan")}]
)
async def test_state_that_is_not_json_is_rejected(store: Store, bad: Any) -> None:
    with pytest.raises(InvalidState):
        await store.set_state(bad, user_id="u")
    assert await store.get_state("u") == {}
    assert await store.list_users() == []


async def test_add_many_writes_messages_and_state_together(store: Store) -> None:
    await store.add_many([Message.user("hi")], user_id="u", state={"turns": 1})
    snapshot = await store.snapshot("u", limit=10)
    assert [m.content for m in snapshot.messages] == ["hi"]
    assert snapshot.state == {"turns": 1}
    with pytest.raises(InvalidState):
        await store.add_many([Message.user("lost")], user_id="u", state={"bad": object()})
    assert await store.size("u") == 1
    assert await store.get_state("u") == {"turns": 1}


async def test_snapshot_of_an_unknown_scope_is_empty(store: Store) -> None:
    snapshot = await store.snapshot("ghost", limit=5)
    assert snapshot.messages == []
    assert snapshot.state == {}


# --- pruning ----------------------------------------------------------------------------------


async def test_prune_inactive_deletes_exactly_the_idle_scopes(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    await store.add(Message.user("old"), user_id="idle", session_id="s1")
    await store.set_state({"x": 1}, user_id="idle", session_id="s2")
    await store.add(Message.user("old"), user_id="mixed", session_id="old")
    clock.advance(3600)
    await store.add(Message.user("new"), user_id="mixed", session_id="new")
    await store.add(Message.user("new"), user_id="active")
    clock.advance(1800)

    assert await store.prune_inactive(timedelta(minutes=45)) == 3
    assert await store.list_users() == ["active", "mixed"]
    assert await store.list_sessions("mixed") == ["new"]
    assert await store.get_state("idle", "s2") == {}
    assert await store.size("idle", "s1") == 0
    assert await store.prune_inactive(timedelta(minutes=45)) == 0
    clock.advance(3600)
    assert await store.prune_inactive(timedelta(hours=1)) == 2
    assert await store.list_users() == []


async def test_prune_works_through_more_than_one_batch(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    for i in range(1203):
        await store.add(Message.user("x"), user_id=f"user-{i:04d}")
    clock.advance(10)
    await store.add(Message.user("y"), user_id="survivor")
    assert await store.prune_inactive(timedelta(seconds=5)) == 1203
    assert await store.list_users() == ["survivor"]


async def test_prune_finds_idle_scopes_behind_pages_of_active_ones(
    make_store: MakeStore, clock: FakeClock
) -> None:
    # More active scopes than one batch come first in key order, then active and idle ones
    # alternate: a prune that stops at a batch without idle scopes, or skips a key at a page's
    # edge, leaves some idle scope or deletes an active one.
    store = make_store(clock=clock)
    idle = [f"b-{i:04d}" for i in range(0, 300, 2)]
    for user_id in idle:
        await store.add(Message.user("old"), user_id=user_id, session_id="s")
    clock.advance(10)
    active = [f"a-{i:04d}" for i in range(PRUNE_BATCH + 100)]
    active += [f"b-{i:04d}" for i in range(1, 300, 2)]
    for user_id in active:
        await store.add(Message.user("new"), user_id=user_id, session_id="s")
    assert await store.prune_inactive(timedelta(seconds=5)) == len(idle)
    assert await store.list_users() == sorted(active)
    assert [await store.size(user_id, "s") for user_id in idle[:3]] == [0, 0, 0]
    assert [m.content for m in await store.get_messages("b-0001", "s")] == ["new"]


async def test_prune_rejects_a_negative_age(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.prune_inactive(timedelta(seconds=-1))


# --- ids --------------------------------------------------------------------------------------

BAD_IDS = ["", "   ", "x" * 256, "nul\x00byte", "new\nline", "esc\x1b[0m", "del\x7f", "\ud800"]


def _calls(store: Store, *, user: str | None, session: str | None) -> list[Any]:
    m = Message.user("x")
    calls = [
        store.add(m, user_id=user, session_id=session),
        store.add_many([m], user_id=user, session_id=session),
        store.get_messages(user, session),
        store.snapshot(user, session),
        store.size(user, session),
        store.get_state(user, session),
        store.set_state({}, user_id=user, session_id=session),
    ]
    if session is None:
        calls += [store.clear(user), store.list_sessions(user)]
    else:
        calls.append(store.clear("ok", session))
    return calls


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_every_call_rejects_a_bad_user_id(store: Store, bad: str) -> None:
    for call in _calls(store, user=bad, session=None):
        with pytest.raises(InvalidUserId):
            await call
    with pytest.raises(InvalidUserId):
        async with store.lock(bad):
            pass
    assert await store.list_users() == []


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_every_call_rejects_a_bad_session_id(store: Store, bad: str) -> None:
    for call in _calls(store, user="ok", session=bad):
        with pytest.raises(InvalidSessionId):
            await call
    assert await store.list_users() == []


async def test_ids_errors_say_what_is_wrong(store: Store) -> None:
    with pytest.raises(InvalidUserId, match="at most 255 characters"):
        await store.size("x" * 256)
    with pytest.raises(InvalidSessionId, match="control characters"):
        await store.size("u", "a\nb")
    with pytest.raises(InvalidUserId, match="must be a string"):
        await store.size(42)  # type: ignore[arg-type]


HOSTILE_IDS = [
    "x" * 255,
    "'; DROP TABLE messages; --",
    "a:b{c}*?[d]",
    "user/../../etc",
    "ユーザー🙂",
    "%s %d {0}",
    "spaces inside are fine",
    "\u200b\u200dzero-width",
]


async def test_unusual_but_valid_ids_are_stored_separately(store: Store) -> None:
    for i, user in enumerate(HOSTILE_IDS):
        await store.add(Message.user(f"msg {i}"), user_id=user, session_id=user)
    assert await store.list_users() == sorted(HOSTILE_IDS)
    for i, user in enumerate(HOSTILE_IDS):
        assert [m.content for m in await store.get_messages(user, user)] == [f"msg {i}"]
        assert await store.list_sessions(user) == [user]


# --- locks ------------------------------------------------------------------------------------


async def test_the_turn_lock_serialises_one_scope(store: Store) -> None:
    inside = 0
    most = 0

    async def turn() -> None:
        nonlocal inside, most
        async with store.lock("u", "s"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(turn() for _ in range(50)))
    assert most == 1


async def test_the_turn_lock_lets_other_scopes_run_in_parallel(store: Store) -> None:
    both_inside = asyncio.Barrier(2)

    async def turn(user: str) -> None:
        async with store.lock(user):
            await asyncio.wait_for(both_inside.wait(), timeout=5)

    await asyncio.gather(turn("a"), turn("b"))


async def test_waiting_too_long_for_the_lock_raises_scope_busy(store: Store) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def holder() -> None:
        async with store.lock("u"):
            entered.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await entered.wait()
    with pytest.raises(ScopeBusy, match="busy"):
        async with store.lock("u", timeout=0.05):
            pass
    release.set()
    await task
    async with store.lock("u", timeout=1):
        pass


# --- lifecycle --------------------------------------------------------------------------------


async def test_a_closed_store_refuses_calls(make_store: MakeStore) -> None:
    store = make_store()
    await store.add(Message.user("x"), user_id="u")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreClosed):
        await store.size("u")
    with pytest.raises(StoreClosed):
        await store.list_users()


async def test_closing_while_a_turn_holds_its_lock_is_clean(make_store: MakeStore) -> None:
    store = make_store()
    await store.add(Message.user("x"), user_id="u")
    async with store.lock("u"):
        await store.close()
    with pytest.raises(StoreClosed):
        await store.size("u")
    with pytest.raises(StoreClosed):
        async with store.lock("u"):
            pass


async def test_ping_succeeds_on_an_open_store(store: Store) -> None:
    await store.ping()


async def test_data_survives_reopening(make_store: MakeStore, backend: str) -> None:
    if backend not in PERSISTENT:
        pytest.skip(f"{backend} keeps nothing after close, by design")
    first = make_store()
    await first.add_many([Message.user("q"), Message.assistant("a")], user_id="u", state={"k": 1})
    await first.close()
    second = make_store()
    assert [m.content for m in await second.get_messages("u")] == ["q", "a"]
    assert await second.get_state("u") == {"k": 1}
    assert await second.list_users() == ["u"]


def test_the_sync_facade_mirrors_the_async_api(make_store: MakeStore) -> None:
    with SyncStore(make_store(max_messages=3)) as sync:
        assert sync.max_messages == 3
        sync.add(Message.user("Hello from Alice"), user_id="user-a")
        sync.add_many([Message.user("1"), Message.user("2"), Message.user("3")], user_id="b")
        assert sync.size("user-a") == 1
        assert [m.content for m in sync.get_messages("b", limit=2)] == ["2", "3"]
        assert sync.snapshot("b", limit=1).messages[0].content == "3"
        sync.set_state({"x": 1}, user_id="b")
        assert sync.get_state("b") == {"x": 1}
        assert sync.list_users() == ["b", "user-a"]
        assert sync.list_sessions("b") == ["default"]
        sync.clear("b")
        assert sync.list_users() == ["user-a"]
        assert sync.prune_inactive(timedelta(days=1)) == 0
        sync.clear_all()
        assert sync.list_users() == []
