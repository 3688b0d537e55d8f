"""`snapshot_and_admission`: what a turn with accounting reads before its model call, on every
backend: exactly the two reads it stands for, and only the one user's."""

from __future__ import annotations

import pytest

from tenantry.errors import InvalidUserId
from tenantry.storage.base import Store
from tenantry.types import Budget, Message, Usage
from tests.conftest import FakeClock, MakeStore

TURN = Usage(requests=1, input_tokens=30, output_tokens=10)


async def test_it_reads_what_the_two_reads_give(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock=clock)
    turn = [Message.user("hi"), Message.assistant("hello")]
    await store.add_many(turn, user_id="alice", session_id="s1", state={"n": 1}, usage=TURN)
    clock.advance(86_400)
    await store.add_many(turn, user_id="alice", session_id="s1", usage=TURN)
    await store.set_budget("alice", Budget(tokens_per_day=100))
    snapshot, admission = await store.snapshot_and_admission("alice", "s1", limit=3)
    assert snapshot == await store.snapshot("alice", "s1", limit=3)
    assert admission == await store.read_admission("alice")
    assert admission.day == TURN
    assert admission.budget == Budget(tokens_per_day=100)
    empty, _ = await store.snapshot_and_admission("alice", "s1", limit=0)
    assert empty.messages == []
    assert empty.state == {"n": 1}


async def test_it_reads_one_user_only(store: Store) -> None:
    await store.add_many([Message.user("b")], user_id="bob", usage=TURN)
    await store.set_budget("bob", Budget(requests_per_day=1))
    snapshot, admission = await store.snapshot_and_admission("alice")
    assert snapshot.messages == []
    assert (admission.day, admission.month, admission.budget) == (Usage(), Usage(), None)


async def test_it_needs_an_explicit_user(store: Store) -> None:
    with pytest.raises(InvalidUserId):
        await store.snapshot_and_admission(None)  # type: ignore[arg-type]


async def test_budgeted_only_reads_the_usage_of_every_user_with_a_budget(
    make_store: MakeStore, clock: FakeClock
) -> None:
    """With `budgeted_only` (the default budget has no limits) a backend may skip the usage
    of a user without a budget of its own; a user with one gets the full admission, and the
    snapshot is the same either way."""
    store = make_store(clock=clock)
    turn = [Message.user("hi"), Message.assistant("hello")]
    for user in ("alice", "bob"):
        await store.add_many(turn, user_id=user, session_id="s1", usage=TURN)
    await store.set_budget("alice", Budget(tokens_per_day=100))

    snapshot, budgeted = await store.snapshot_and_admission(
        "alice", "s1", limit=3, budgeted_only=True
    )
    assert snapshot == await store.snapshot("alice", "s1", limit=3)
    assert budgeted == await store.read_admission("alice")
    assert budgeted.day == TURN

    snapshot, free = await store.snapshot_and_admission("bob", "s1", limit=3, budgeted_only=True)
    assert snapshot == await store.snapshot("bob", "s1", limit=3)
    assert free.budget is None
    full = await store.read_admission("bob")
    assert (free.day, free.month) in ((Usage(), Usage()), (full.day, full.month))
    # the override just removed: the next read sees that too
    await store.set_budget("alice", None)
    _, after = await store.snapshot_and_admission("alice", "s1", limit=3, budgeted_only=True)
    assert after.budget is None
