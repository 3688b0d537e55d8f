"""The store contract, long-term half: memories per user and a summary per session.

Part of the contract suite (test_contract.py holds the conversation half): every backend must
pass every test here, unchanged. Isolation cases are the ones long-term memory libraries got
wrong (mem0 #3928, #2170): another user's memory id is never readable, writable or deletable.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tenantry import (
    InvalidMemory,
    InvalidUserId,
    MemoryConflict,
    MemoryNotFound,
    Message,
    Summary,
    SyncStore,
)
from tenantry.errors import InvalidInput, InvalidSessionId, StoreClosed
from tenantry.storage.base import Store
from tenantry.types import MAX_MEMORY_CHARS
from tests.conftest import PERSISTENT, FakeClock, MakeStore
from tests.storage.test_contract import BAD_IDS, HOSTILE_IDS

# --- adding and reading -----------------------------------------------------------------------


async def test_a_memory_round_trips_with_every_field(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    added = await store.add_memory(
        "The user's name is Alice", user_id="alice", session_id="s1", run_id="run-1"
    )
    assert (added.user_id, added.text, added.version) == ("alice", "The user's name is Alice", 1)
    assert (added.session_id, added.run_id) == ("s1", "run-1")
    assert added.created_at == added.updated_at == clock.now
    assert await store.get_memory(added.id, user_id="alice") == added
    assert await store.list_memories(user_id="alice") == [added]
    bare = await store.add_memory("no source", user_id="alice")
    assert (bare.session_id, bare.run_id) == (None, None)
    assert bare.id != added.id


async def test_memories_are_listed_most_recently_updated_first(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    first = await store.add_memory("first", user_id="u")
    clock.advance(1)
    await store.add_memory("second", user_id="u")
    clock.advance(1)
    await store.add_memory("third", user_id="u")
    assert [m.text for m in await store.list_memories(user_id="u")] == ["third", "second", "first"]
    assert [m.text for m in await store.list_memories(user_id="u", limit=2)] == ["third", "second"]
    assert await store.list_memories(user_id="u", limit=0) == []
    clock.advance(1)
    await store.update_memory(first.id, "first, edited", user_id="u")
    texts = [m.text for m in await store.list_memories(user_id="u")]
    assert texts == ["first, edited", "third", "second"]


async def test_the_order_holds_when_the_clock_does_not_move(store: Store) -> None:
    for i in range(5):
        await store.add_memory(f"memory {i}", user_id="u")
    texts = [m.text for m in await store.list_memories(user_id="u")]
    assert texts == [f"memory {i}" for i in reversed(range(5))]


async def test_an_unknown_user_has_no_memories(store: Store) -> None:
    assert await store.list_memories(user_id="nobody") == []
    assert await store.search_memories("anything", user_id="nobody") == []
    assert await store.clear_memories(user_id="nobody") == 0
    with pytest.raises(MemoryNotFound):
        await store.get_memory("no-such-id", user_id="nobody")


# --- updating ---------------------------------------------------------------------------------


async def test_an_update_replaces_the_text_and_adds_one_to_the_version(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    old = await store.add_memory("The user lives in Paris", user_id="u", session_id="s")
    clock.advance(60)
    new = await store.update_memory(old.id, "The user lives in Berlin", user_id="u")
    assert (new.id, new.text, new.version) == (old.id, "The user lives in Berlin", 2)
    assert (new.created_at, new.updated_at) == (old.created_at, old.created_at + 60)
    assert (new.session_id, new.user_id) == ("s", "u")
    assert await store.get_memory(old.id, user_id="u") == new
    assert [m.text for m in await store.list_memories(user_id="u")] == ["The user lives in Berlin"]
    assert await store.search_memories("Paris", user_id="u") == []
    assert await store.search_memories("Berlin", user_id="u") == [new]


async def test_compare_and_swap_refuses_a_stale_version(store: Store) -> None:
    memory = await store.add_memory("v1", user_id="u")
    second = await store.update_memory(memory.id, "v2", user_id="u", expected_version=1)
    assert second.version == 2
    with pytest.raises(MemoryConflict, match="version 2, not 1"):
        await store.update_memory(memory.id, "lost update", user_id="u", expected_version=1)
    assert (await store.get_memory(memory.id, user_id="u")).text == "v2"
    third = await store.update_memory(memory.id, "v3", user_id="u", expected_version=2)
    assert (third.text, third.version) == ("v3", 3)


async def test_two_updates_of_the_same_version_at_once_exactly_one_wins(
    make_store: MakeStore, backend: str
) -> None:
    store = make_store()
    memory = await store.add_memory("The user lives in Paris", user_id="u")
    # From two store objects where the backend allows it: two processes, two connections.
    other = make_store() if backend in PERSISTENT else store
    for round_ in range(5):
        expected = memory.version

        async def update(target: Store, city: str, memory_id: str, version: int) -> Any:
            try:
                return await target.update_memory(
                    memory_id, f"The user lives in {city}", user_id="u", expected_version=version
                )
            except MemoryConflict as exc:
                return exc

        results = await asyncio.gather(
            *(
                update(store if i % 2 else other, f"city {round_}.{i}", memory.id, expected)
                for i in range(6)
            )
        )
        winners = [r for r in results if not isinstance(r, MemoryConflict)]
        assert len(winners) == 1, results
        stored = await store.get_memory(memory.id, user_id="u")
        assert stored == winners[0]
        assert stored.version == expected + 1
        memory = stored


async def test_an_update_without_a_version_always_applies(store: Store) -> None:
    memory = await store.add_memory("one", user_id="u")
    for i in range(3):
        memory = await store.update_memory(memory.id, f"edit {i}", user_id="u")
    assert (memory.text, memory.version) == ("edit 2", 4)


# --- deleting ---------------------------------------------------------------------------------


async def test_deleting_a_memory_and_clearing_a_user_s_memories(store: Store) -> None:
    keep = await store.add_memory("keep", user_id="u")
    gone = await store.add_memory("gone", user_id="u")
    await store.delete_memory(gone.id, user_id="u")
    assert await store.list_memories(user_id="u") == [keep]
    with pytest.raises(MemoryNotFound):
        await store.delete_memory(gone.id, user_id="u")
    with pytest.raises(MemoryNotFound):
        await store.get_memory(gone.id, user_id="u")
    with pytest.raises(MemoryNotFound):
        await store.update_memory(gone.id, "back?", user_id="u")
    await store.add_memory("other user", user_id="v")
    await store.add_memory("another", user_id="u")
    assert await store.clear_memories(user_id="u") == 2
    assert await store.list_memories(user_id="u") == []
    assert [m.text for m in await store.list_memories(user_id="v")] == ["other user"]
    assert await store.clear_memories(user_id="u") == 0
    await store.add_memory("after clearing", user_id="u")  # still usable
    assert len(await store.list_memories(user_id="u")) == 1


# --- the cap ----------------------------------------------------------------------------------


async def test_the_cap_drops_the_least_recently_updated_memories(make_store: MakeStore) -> None:
    store = make_store(max_memories=3)
    assert store.max_memories == 3
    first = await store.add_memory("m0", user_id="u")
    for i in range(1, 3):
        await store.add_memory(f"m{i}", user_id="u")
    await store.update_memory(first.id, "m0, updated", user_id="u")  # now the most recent
    await store.add_memory("m3", user_id="u")
    await store.add_memory("m4", user_id="u")
    texts = [m.text for m in await store.list_memories(user_id="u")]
    assert texts == ["m4", "m3", "m0, updated"]
    assert await store.search_memories("m1 m2", user_id="u") == []
    for i in range(5):
        await store.add_memory(f"other {i}", user_id="v")
    assert len(await store.list_memories(user_id="v")) == 3
    assert len(await store.list_memories(user_id="u")) == 3


async def test_the_default_cap_is_a_thousand_and_none_means_no_cap(make_store: MakeStore) -> None:
    assert make_store().max_memories == 1000
    store = make_store(max_memories=None)
    assert store.max_memories is None
    for i in range(30):
        await store.add_memory(f"memory {i}", user_id="u")
    assert len(await store.list_memories(user_id="u")) == 30


async def test_concurrent_adds_past_the_cap_keep_exactly_the_cap(make_store: MakeStore) -> None:
    store = make_store(max_memories=10)
    await asyncio.gather(*(store.add_memory(f"fact {i}", user_id="u") for i in range(40)))
    assert len(await store.list_memories(user_id="u")) == 10
    assert await store.clear_memories(user_id="u") == 10


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_a_bad_cap_is_refused(make_store: MakeStore, bad: Any) -> None:
    with pytest.raises(InvalidInput, match="max_memories"):
        make_store(max_memories=bad)


# --- search -----------------------------------------------------------------------------------

FACTS = [
    "The user's name is Alice",
    "The user likes green tea in the morning",
    "The user lives in Berlin",
    "The user's favourite colour is green",
    "The user has two cats called Tom and Jerry",
]


async def _facts(store: Store, user: str = "u") -> dict[str, str]:
    return {(await store.add_memory(f, user_id=user)).text: f for f in FACTS}


async def test_search_finds_the_memory_a_question_is_about(store: Store) -> None:
    await _facts(store)

    async def best(query: str) -> list[str]:
        return [m.text for m in await store.search_memories(query, user_id="u")]

    assert (await best("What's my name?"))[0] == "The user's name is Alice"
    assert (await best("where do I live"))[0] == "The user lives in Berlin"
    assert (await best("BERLIN!!!")) == ["The user lives in Berlin"]
    assert (await best("cats")) == ["The user has two cats called Tom and Jerry"]
    green = await best("green tea")
    assert green[:2] == ["The user likes green tea in the morning", FACTS[3]]
    assert len(green) == 2


async def test_search_without_a_matching_word_finds_nothing(store: Store) -> None:
    await _facts(store)
    assert await store.search_memories("What is my ... ?", user_id="u") == []  # stop words only
    assert await store.search_memories("", user_id="u") == []
    assert await store.search_memories("quantum chromodynamics", user_id="u") == []
    assert await store.search_memories("green", user_id="u", limit=0) == []


async def test_search_gives_at_most_limit_memories(store: Store) -> None:
    for i in range(12):
        await store.add_memory(f"coffee fact number {i}", user_id="u")
    assert len(await store.search_memories("coffee", user_id="u")) == 5
    assert len(await store.search_memories("coffee", user_id="u", limit=3)) == 3
    assert len(await store.search_memories("coffee", user_id="u", limit=50)) == 12


async def test_search_tells_apart_letters_digits_and_unicode(store: Store) -> None:
    await store.add_memory("Die Nutzerin heißt Jürgen-Maria", user_id="u")
    await store.add_memory("ユーザーの猫は 2 匹", user_id="u")
    await store.add_memory("Room 101 on floor 7", user_id="u")
    assert [m.text for m in await store.search_memories("JÜRGEN", user_id="u")] == [
        "Die Nutzerin heißt Jürgen-Maria"
    ]
    assert [m.text for m in await store.search_memories("HEISST", user_id="u")] == [
        "Die Nutzerin heißt Jürgen-Maria"  # casefolding: ß is ss
    ]
    assert [m.text for m in await store.search_memories("101", user_id="u")] == [
        "Room 101 on floor 7"
    ]
    assert [m.text for m in await store.search_memories("匹", user_id="u")] == [
        "ユーザーの猫は 2 匹"
    ]


async def test_snapshot_and_search_reads_what_the_two_reads_give(store: Store) -> None:
    await _facts(store)
    history = [Message.user(f"question {i}") for i in range(6)]
    await store.add_many(history, user_id="u", session_id="s", state={"step": 2})
    for query, limit, wanted in [("green tea", 4, 5), ("where do I live", None, 1), ("x", 0, 3)]:
        snapshot, found = await store.snapshot_and_search(
            query, user_id="u", session_id="s", limit=limit, search_limit=wanted
        )
        assert snapshot == await store.snapshot("u", "s", limit=limit)
        assert found == await store.search_memories(query, user_id="u", limit=wanted)
    snapshot, found = await store.snapshot_and_search("green tea", user_id="u", search_limit=0)
    assert (snapshot.messages, found) == ([], [])  # the default session is empty
    snapshot, found = await store.snapshot_and_search("What is my ...?", user_id="u")
    assert found == []  # stop words only: nothing searched


async def test_snapshot_and_search_reads_one_user_only(store: Store) -> None:
    await store.add_memory("Alice's secret: the vault code is 1234", user_id="alice")
    await store.add(Message.user("alice's own words"), user_id="alice", session_id="s")
    snapshot, found = await store.snapshot_and_search(
        "vault code 1234", user_id="bob", session_id="s"
    )
    assert (snapshot.messages, snapshot.state, found) == ([], {}, [])
    with pytest.raises(InvalidInput):
        await store.snapshot_and_search("x", user_id="u", limit=-1)
    with pytest.raises(InvalidInput):
        await store.snapshot_and_search("x", user_id="u", search_limit=-1)


# --- isolation --------------------------------------------------------------------------------


async def test_user_b_never_sees_user_a_memories(store: Store) -> None:
    await store.add_memory("Alice's secret: the vault code is 1234", user_id="alice")
    await store.add_memory("Bob likes the vault too", user_id="bob")
    assert [m.user_id for m in await store.list_memories(user_id="bob")] == ["bob"]
    found = await store.search_memories("vault code secret", user_id="bob")
    assert [m.text for m in found] == ["Bob likes the vault too"]
    assert await store.search_memories("1234", user_id="bob") == []
    assert await store.search_memories("Alice", user_id="mallory") == []


async def test_user_b_cannot_read_update_or_delete_a_memory_of_a_even_knowing_its_id(
    store: Store,
) -> None:
    secret = await store.add_memory("Alice's secret", user_id="alice")
    await store.add_memory("Bob's own", user_id="bob")
    with pytest.raises(MemoryNotFound):
        await store.get_memory(secret.id, user_id="bob")
    with pytest.raises(MemoryNotFound):
        await store.update_memory(secret.id, "owned by bob", user_id="bob")
    with pytest.raises(MemoryNotFound):
        await store.update_memory(secret.id, "owned", user_id="bob", expected_version=1)
    with pytest.raises(MemoryNotFound):
        await store.delete_memory(secret.id, user_id="bob")
    assert await store.clear_memories(user_id="bob") == 1
    assert await store.get_memory(secret.id, user_id="alice") == secret
    assert await store.list_memories(user_id="alice") == [secret]


async def test_the_not_found_of_another_users_id_says_nothing_of_that_user(store: Store) -> None:
    secret = await store.add_memory("Alice's secret", user_id="alice")
    with pytest.raises(MemoryNotFound) as theirs:
        await store.get_memory(secret.id, user_id="bob")
    with pytest.raises(MemoryNotFound) as unknown:
        await store.get_memory("x" * len(secret.id), user_id="bob")
    assert str(theirs.value).replace(secret.id, "?") == str(unknown.value).replace(
        "x" * len(secret.id), "?"
    )
    assert "alice" not in str(theirs.value).lower()


async def test_the_cap_of_one_user_never_drops_another_users_memories(
    make_store: MakeStore,
) -> None:
    store = make_store(max_memories=2)
    kept = await store.add_memory("alice's only", user_id="alice")
    for i in range(10):
        await store.add_memory(f"bob {i}", user_id="bob")
    assert await store.list_memories(user_id="alice") == [kept]


HOSTILE_TEXTS = [
    "'; DROP TABLE memories; --",
    '"name" OR * NEAR(a b) AND NOT x:y^ {col}: -z',
    "%s %d {0} $1 ?1 :user_id",
    "redis.call('FLUSHALL') -- ]] [[ \\ \\\\",
    '{"json": [1, 2',
    "<script>alert(1)</script> &amp;",
    "line one\nline two\r\n\ttabbed",
    "ユーザー🙂 العربية עברית ‮reversed‬ \u200b\u200d",
    "x" * MAX_MEMORY_CHARS,
    "ü" * MAX_MEMORY_CHARS,
]


async def test_hostile_texts_round_trip_exactly_and_search_safely(store: Store) -> None:
    added = [await store.add_memory(text, user_id="u") for text in HOSTILE_TEXTS]
    for memory in added:
        assert (await store.get_memory(memory.id, user_id="u")).text == memory.text
    for text in HOSTILE_TEXTS:
        found = await store.search_memories(text, user_id="u", limit=20)
        assert all(m.user_id == "u" for m in found)
        assert any(m.text == text for m in found) or not found
    assert await store.search_memories("DROP TABLE", user_id="u") == [added[0]]
    assert len(await store.list_memories(user_id="u")) == len(HOSTILE_TEXTS)
    for text in HOSTILE_TEXTS:  # through an update too (Redis rewrites the stored JSON)
        updated = await store.update_memory(added[0].id, text, user_id="u")
        assert (await store.get_memory(added[0].id, user_id="u")) == updated
        assert updated.text == text


async def test_unusual_but_valid_user_ids_keep_their_memories_apart(store: Store) -> None:
    for i, user in enumerate(HOSTILE_IDS):
        await store.add_memory(f"shared word, memory {i}", user_id=user)
    for i, user in enumerate(HOSTILE_IDS):
        assert [m.text for m in await store.list_memories(user_id=user)] == [
            f"shared word, memory {i}"
        ]
        found = await store.search_memories("shared word", user_id=user)
        assert [m.text for m in found] == [f"shared word, memory {i}"]


# --- bad input --------------------------------------------------------------------------------


def _memory_calls(store: Store, user: Any, memory_id: str = "some-id") -> list[Any]:
    return [
        store.add_memory("x", user_id=user),
        store.get_memory(memory_id, user_id=user),
        store.list_memories(user_id=user),
        store.search_memories("x", user_id=user),
        store.update_memory(memory_id, "x", user_id=user),
        store.delete_memory(memory_id, user_id=user),
        store.clear_memories(user_id=user),
        store.snapshot_and_search("x", user_id=user),
    ]


@pytest.mark.parametrize("bad", [None, *BAD_IDS])
async def test_every_memory_call_needs_a_valid_user_id(store: Store, bad: Any) -> None:
    for call in _memory_calls(store, bad):
        with pytest.raises(InvalidUserId):
            await call


def test_the_user_id_of_a_memory_call_is_required_and_keyword_only(store: Store) -> None:
    with pytest.raises(TypeError):
        store.add_memory("x")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        store.list_memories("u")  # type: ignore[misc]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_a_bad_memory_id_is_refused(store: Store, bad: str) -> None:
    for call in (
        store.get_memory(bad, user_id="u"),
        store.update_memory(bad, "x", user_id="u"),
        store.delete_memory(bad, user_id="u"),
    ):
        with pytest.raises(InvalidMemory, match="memory id"):
            await call
    with pytest.raises(InvalidMemory, match="run id"):
        await store.add_memory("x", user_id="u", run_id=bad)
    with pytest.raises(InvalidSessionId):
        await store.add_memory("x", user_id="u", session_id=bad)
    assert await store.list_memories(user_id="u") == []


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("   \n\t", "empty or blank"),
        ("x" * (MAX_MEMORY_CHARS + 1), "at most 2,000"),
        ("nul\x00byte", "NUL"),
        ("lone \ud800 surrogate", "surrogate"),
        (42, "must be a str"),
        (None, "must be a str"),
    ],
)
async def test_bad_memory_text_is_refused_and_nothing_is_stored(
    store: Store, bad: Any, why: str
) -> None:
    memory = await store.add_memory("fine", user_id="u")
    with pytest.raises(InvalidMemory, match=why):
        await store.add_memory(bad, user_id="u")
    with pytest.raises(InvalidMemory, match=why):
        await store.update_memory(memory.id, bad, user_id="u")
    assert await store.list_memories(user_id="u") == [memory]


@pytest.mark.parametrize(
    "bad", [{"limit": -1}, {"limit": True}, {"limit": 1.5}, {"expected_version": 0}]
)
async def test_bad_numbers_are_refused(store: Store, bad: dict[str, Any]) -> None:
    memory = await store.add_memory("fine", user_id="u")
    call = (
        store.search_memories("fine", user_id="u", **bad)
        if "limit" in bad
        else store.update_memory(memory.id, "x", user_id="u", **bad)
    )
    with pytest.raises(InvalidInput):
        await call
    with pytest.raises(InvalidInput):
        await store.update_memory(memory.id, "x", user_id="u", expected_version=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await store.list_memories(user_id="u", limit=-1)


@pytest.mark.parametrize(
    "bad",
    [[], [0.0, 0.0], [1.0, float("nan")], [float("inf")], "text", [True, 1.0], [1] * 8193],
)
async def test_a_bad_embedding_is_refused(store: Store, bad: Any) -> None:
    with pytest.raises(InvalidMemory, match="embedding"):
        await store.add_memory("x", user_id="u", embedding=bad)
    with pytest.raises(InvalidMemory, match="embedding"):
        await store.search_memories("x", user_id="u", embedding=bad)
    assert await store.list_memories(user_id="u") == []


async def test_a_bad_query_is_refused(store: Store) -> None:
    with pytest.raises(InvalidMemory, match="str"):
        await store.search_memories(None, user_id="u")  # type: ignore[arg-type]
    with pytest.raises(InvalidMemory, match="at most"):
        await store.search_memories("x" * 10_001, user_id="u")


# --- semantic search --------------------------------------------------------------------------


async def test_with_an_embedding_the_nearest_vectors_come_first(store: Store) -> None:
    north = await store.add_memory("points north", user_id="u", embedding=[0.0, 1.0, 0.0])
    east = await store.add_memory("points east", user_id="u", embedding=[1.0, 0.0, 0.0])
    near_east = await store.add_memory("almost east", user_id="u", embedding=[0.9, 0.2, 0])
    await store.add_memory("east, no vector", user_id="u")
    await store.add_memory("another embedder", user_id="u", embedding=[1.0, 0.0])
    found = await store.search_memories("anything", user_id="u", embedding=[2.0, 0.1, 0.0])
    assert found[:3] == [east, near_east, north]
    assert len(found) == 3  # "anything" matches no keyword, and 2-d vectors are not compared
    mixed = await store.search_memories("east", user_id="u", embedding=[1, 0, 0], limit=5)
    assert [m.text for m in mixed] == [
        "points east",
        "almost east",
        "points north",
        "east, no vector",  # the places left go to keyword matches
    ]
    top = await store.search_memories("east", user_id="u", embedding=[0, 1, 0], limit=1)
    assert top == [north]


async def test_new_text_without_a_new_vector_drops_the_old_vector(store: Store) -> None:
    memory = await store.add_memory("old", user_id="u", embedding=[1.0, 0.0])
    assert await store.search_memories("zzz", user_id="u", embedding=[1, 0]) == [memory]
    await store.update_memory(memory.id, "new text", user_id="u")
    assert await store.search_memories("zzz", user_id="u", embedding=[1, 0]) == []
    newer = await store.update_memory(memory.id, "newer", user_id="u", embedding=[0.0, 1.0])
    assert await store.search_memories("zzz", user_id="u", embedding=[0, 1]) == [newer]


async def test_vectors_are_per_user_too(store: Store) -> None:
    await store.add_memory("alice's vector", user_id="alice", embedding=[1.0, 0.0])
    assert await store.search_memories("x", user_id="bob", embedding=[1.0, 0.0]) == []


# --- memories belong to the user, not to a session --------------------------------------------


async def test_deleting_a_session_or_pruning_keeps_memories_deleting_the_user_does_not(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    await store.add(Message.user("hello"), user_id="u", session_id="s")
    memory = await store.add_memory("durable fact", user_id="u", session_id="s")
    await store.add_memory("bob's fact", user_id="bob")
    await store.clear("u", "s")
    assert await store.list_memories(user_id="u") == [memory]
    await store.add(Message.user("again"), user_id="u", session_id="s")
    clock.advance(3600)
    assert await store.prune_inactive(timedelta(minutes=1)) == 1
    assert await store.list_memories(user_id="u") == [memory]
    await store.clear("u")
    assert await store.list_memories(user_id="u") == []
    assert len(await store.list_memories(user_id="bob")) == 1
    await store.clear_all()
    assert await store.list_memories(user_id="bob") == []


async def test_a_user_with_memories_only_is_deleted_by_clear(store: Store) -> None:
    await store.add_memory("fact", user_id="u")
    await store.clear("u")
    assert await store.list_memories(user_id="u") == []
    await store.add_memory("fact", user_id="v")
    await store.clear_all()
    assert await store.list_memories(user_id="v") == []


async def test_memories_survive_reopening(make_store: MakeStore, backend: str) -> None:
    if backend not in PERSISTENT:
        pytest.skip(f"{backend} keeps nothing after close, by design")
    first = make_store()
    memory = await first.add_memory("durable", user_id="u", embedding=[0.5, 0.5])
    await first.close()
    second = make_store()
    assert await second.list_memories(user_id="u") == [memory]
    assert await second.search_memories("durable", user_id="u") == [memory]
    assert await second.search_memories("x", user_id="u", embedding=[1, 1]) == [memory]


# --- summaries --------------------------------------------------------------------------------


def _summary(text: str = "They talked about tea.", through: str = "m-1") -> Summary:
    return Summary(text, through, 1_700_000_000.5)


async def test_a_summary_is_per_session(store: Store) -> None:
    await store.add(Message.user("hi"), user_id="u", session_id="s1")
    await store.add(Message.user("hi"), user_id="u", session_id="s2")
    assert await store.get_summary("u", "s1") is None
    await store.set_summary(_summary("about tea"), user_id="u", session_id="s1")
    assert await store.get_summary("u", "s1") == _summary("about tea")
    assert await store.get_summary("u", "s2") is None
    assert await store.get_summary("v", "s1") is None
    await store.set_summary(_summary("about coffee", "m-9"), user_id="u", session_id="s1")
    assert await store.get_summary("u", "s1") == _summary("about coffee", "m-9")


async def test_a_summary_of_a_session_that_does_not_exist_is_not_stored(store: Store) -> None:
    await store.set_summary(_summary(), user_id="ghost", session_id="gone")
    assert await store.get_summary("ghost", "gone") is None
    assert await store.list_users() == []


async def test_a_summary_goes_with_its_session(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock=clock)
    for user, session in (("a", "s1"), ("a", "s2"), ("b", "s1"), ("c", "s1")):
        await store.add(Message.user("x"), user_id=user, session_id=session)
        await store.set_summary(_summary(f"{user}/{session}"), user_id=user, session_id=session)
    await store.clear("a", "s1")
    await store.add(Message.user("x"), user_id="a", session_id="s1")
    assert await store.get_summary("a", "s1") is None  # a new session has no old summary
    assert await store.get_summary("a", "s2") == _summary("a/s2")
    await store.clear("b")
    assert await store.get_summary("b", "s1") is None
    clock.advance(3600)
    await store.set_summary(_summary("late"), user_id="c", session_id="s1")  # not activity
    assert await store.prune_inactive(timedelta(minutes=1)) == 3
    assert await store.get_summary("c", "s1") is None
    await store.add(Message.user("x"), user_id="d")
    await store.set_summary(_summary(), user_id="d")
    await store.clear_all()
    assert await store.get_summary("d") is None


@pytest.mark.parametrize(
    "bad",
    [
        "not a summary",
        Summary("", "m-1", 1.0),
        Summary("x" * 20_001, "m-1", 1.0),
        Summary("fine", "", 1.0),
        Summary("fine", "m-1", float("nan")),
    ],
)
async def test_a_bad_summary_is_refused(store: Store, bad: Any) -> None:
    await store.add(Message.user("x"), user_id="u")
    with pytest.raises(InvalidMemory):
        await store.set_summary(bad, user_id="u")
    assert await store.get_summary("u") is None


# --- lifecycle and facade ---------------------------------------------------------------------


async def test_a_closed_store_refuses_memory_calls(make_store: MakeStore) -> None:
    store = make_store()
    memory = await store.add_memory("x", user_id="u")
    await store.close()
    for call in _memory_calls(store, "u", memory.id):
        with pytest.raises(StoreClosed):
            await call
    with pytest.raises(StoreClosed):
        await store.get_summary("u")


def test_the_sync_facade_has_the_memory_calls(make_store: MakeStore) -> None:
    with SyncStore(make_store(max_memories=5)) as sync:
        assert sync.max_memories == 5
        memory = sync.add_memory("The user's name is Alice", user_id="alice")
        assert sync.get_memory(memory.id, user_id="alice") == memory
        assert sync.search_memories("name", user_id="alice") == [memory]
        assert sync.search_memories("x", user_id="alice", embedding=[1.0]) == []
        updated = sync.update_memory(memory.id, "Alice, again", user_id="alice", expected_version=1)
        assert sync.list_memories(user_id="alice", limit=1) == [updated]
        sync.add(Message.user("hi"), user_id="alice")
        sync.set_summary(_summary(), user_id="alice")
        assert sync.get_summary("alice") == _summary()
        sync.delete_memory(memory.id, user_id="alice")
        assert sync.clear_memories(user_id="alice") == 0
