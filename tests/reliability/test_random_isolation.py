"""Randomised isolation: a random mix of every store call, memory call and agent turn over
1000 scopes of 250 users, from many concurrent tasks; no read may ever return another
scope's token, nor another user's memory, usage or budget."""

from __future__ import annotations

import pytest

from tests.conftest import BACKENDS, MakeStore
from tests.support.reliability.workloads import (
    MEMORY_KINDS,
    USAGE_KINDS,
    make_scopes,
    random_isolation,
)

OPERATIONS = 20_000


@pytest.mark.parametrize("backend", sorted(BACKENDS))  # Redis Cluster too
async def test_no_read_ever_returns_another_scopes_data(make_store: MakeStore) -> None:
    store = make_store(max_memories=5)  # the cap drops memories while others read them
    scopes = make_scopes(users=250, sessions_per_user=4)
    report = await random_isolation(store, scopes, operations=OPERATIONS, concurrency=64, seed=7)
    assert report.violations == []
    assert report.operations == OPERATIONS
    assert report.turns > 1000
    assert report.reads_checked > 5000
    assert set(report.by_kind) >= {
        "turn",
        "keyed_turn",
        "add",
        "add_many",
        "get_messages",
        "snapshot",
        "set_state",
        "get_state",
        "size",
        "list_sessions",
        "clear_session",
        "clear_user",
        "list_users",
        *MEMORY_KINDS,
        *USAGE_KINDS,
    }
    assert report.by_kind["foreign_memory"] > 300
    assert report.by_kind["counted_turn"] > 500
    assert report.by_kind["keyed_turn"] > 300  # keys every user uses: none ever matched another's
