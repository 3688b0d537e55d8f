"""Every backend against a plain-dict model, under random interleavings of every operation.

Hypothesis drives the store through its synchronous facade; after each step the answers of the
store and of the model must agree. Users include ids with separators and unicode. Memories
(per user, capped, compare-and-swap) and summaries (per session) are part of the model: a
user's memories survive the deletion of a session and pruning, not the deletion of the user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tenantry import Memory, MemoryConflict, MemoryNotFound, Message, Summary, SyncStore
from tenantry.storage.base import Store
from tenantry.storage.search import query_terms, tokens
from tests.conftest import CLUSTER_BACKEND, FakeClock, MakeStore

USERS = st.sampled_from(["u0", "u1", "u2", "a:b", "ü{*}", "default"])
SESSIONS = st.sampled_from(["default", "s1", "s:2"])
TEXTS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=12
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
STATES = st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3)
CAP = 6
MEMORY_CAP = 4
WORDS = st.sampled_from(["tea", "green", "Berlin", "cats", "name", "Alice", "ü{*}", "a:b"])
MEMORY_TEXTS = st.builds(
    lambda words, tail: " ".join(words) + tail,
    st.lists(WORDS, min_size=1, max_size=4),
    st.sampled_from(["", ".", " 'quoted' \"x\" %s", "\nsecond line"]),
)

Key = tuple[str, str]


class _ScopeModel:
    def __init__(self, now: float) -> None:
        self.messages: list[Message] = []
        self.state: dict[str, Any] = {}
        self.summary: Summary | None = None
        self.updated = now


def machine_for(make_store: MakeStore) -> type[RuleBasedStateMachine]:
    class StoreMachine(RuleBasedStateMachine):
        store: SyncStore
        clock: FakeClock
        model: dict[Key, _ScopeModel]
        memories: dict[str, list[Memory]]
        """Per user, least recently updated first."""

        @initialize()
        def open(self) -> None:
            self.clock = FakeClock()
            backend: Store = make_store(max_messages=CAP, max_memories=MEMORY_CAP, clock=self.clock)
            self.store = SyncStore(backend)
            self.store.clear_all()
            self.model = {}
            self.memories = {}

        def teardown(self) -> None:
            if hasattr(self, "store"):
                self.store.close()

        def _touch(self, key: Key) -> _ScopeModel:
            scope = self.model.setdefault(key, _ScopeModel(self.clock()))
            scope.updated = self.clock()
            return scope

        @rule(user=USERS, session=SESSIONS, text=TEXTS)
        def add(self, user: str, session: str, text: str) -> None:
            message = Message.user(text)
            self.store.add(message, user_id=user, session_id=session)
            scope = self._touch((user, session))
            scope.messages = ([*scope.messages, message])[-CAP:]

        @rule(
            user=USERS,
            session=SESSIONS,
            texts=st.lists(TEXTS, max_size=8),
            state=st.none() | STATES,
        )
        def add_many(
            self, user: str, session: str, texts: list[str], state: dict[str, Any] | None
        ) -> None:
            batch = [
                Message.assistant(t) if i % 2 else Message.user(t) for i, t in enumerate(texts)
            ]
            self.store.add_many(batch, user_id=user, session_id=session, state=state)
            if not batch and state is None:
                return
            scope = self._touch((user, session))
            scope.messages = (scope.messages + batch)[-CAP:]
            if state is not None:
                scope.state = state

        @rule(user=USERS, session=SESSIONS, state=STATES)
        def set_state(self, user: str, session: str, state: dict[str, Any]) -> None:
            self.store.set_state(state, user_id=user, session_id=session)
            self._touch((user, session)).state = state

        @rule(
            user=USERS,
            session=SESSIONS,
            limit=st.none() | st.integers(0, CAP + 2),
            offset=st.integers(0, CAP),
        )
        def get_messages(self, user: str, session: str, limit: int | None, offset: int) -> None:
            got = self.store.get_messages(user, session, limit=limit, offset=offset)
            scope = self.model.get((user, session))
            expected = [] if scope is None else scope.messages
            end = len(expected) - offset
            expected = (
                expected[max(0, end - limit) : max(0, end)]
                if limit is not None
                else (expected[: max(0, end)])
            )
            assert got == expected

        @rule(user=USERS, session=SESSIONS)
        def snapshot_and_size(self, user: str, session: str) -> None:
            scope = self.model.get((user, session))
            snap = self.store.snapshot(user, session, limit=3)
            assert snap.messages == ([] if scope is None else scope.messages[-3:])
            assert snap.state == ({} if scope is None else scope.state)
            assert self.store.size(user, session) == (0 if scope is None else len(scope.messages))
            assert self.store.get_state(user, session) == snap.state

        @rule(user=USERS, session=SESSIONS)
        def clear_session(self, user: str, session: str) -> None:
            self.store.clear(user, session)
            self.model.pop((user, session), None)

        @rule(user=USERS)
        def clear_user(self, user: str) -> None:
            self.store.clear(user)
            for key in [k for k in self.model if k[0] == user]:
                del self.model[key]
            self.memories.pop(user, None)

        @precondition(lambda self: len(self.model) > 3)
        @rule()
        def clear_all(self) -> None:
            self.store.clear_all()
            self.model.clear()
            self.memories.clear()

        # --- memories and summaries -------------------------------------------------------

        @rule(user=USERS, text=MEMORY_TEXTS, session=st.none() | SESSIONS)
        def add_memory(self, user: str, text: str, session: str | None) -> None:
            memory = self.store.add_memory(text, user_id=user, session_id=session)
            assert (memory.text, memory.version, memory.session_id) == (text, 1, session)
            mine = self.memories.setdefault(user, [])
            mine.append(memory)
            del mine[:-MEMORY_CAP]

        @rule(
            user=USERS,
            pick=st.integers(0, MEMORY_CAP - 1),
            text=MEMORY_TEXTS,
            version=st.sampled_from(["any", "current", "stale"]),
        )
        def update_memory(self, user: str, pick: int, text: str, version: str) -> None:
            mine = self.memories.get(user)
            if not mine:
                return
            old = mine[pick % len(mine)]
            expected = {"any": None, "current": old.version, "stale": old.version + 1}[version]
            if version == "stale":
                with pytest.raises(MemoryConflict):
                    self.store.update_memory(old.id, text, user_id=user, expected_version=expected)
                return
            new = self.store.update_memory(old.id, text, user_id=user, expected_version=expected)
            assert (new.id, new.text, new.version) == (old.id, text, old.version + 1)
            assert (new.created_at, new.updated_at) == (old.created_at, self.clock())
            mine.remove(old)
            mine.append(new)

        @rule(user=USERS, pick=st.integers(0, MEMORY_CAP - 1))
        def delete_memory(self, user: str, pick: int) -> None:
            mine = self.memories.get(user)
            if not mine:
                return
            gone = mine.pop(pick % len(mine))
            self.store.delete_memory(gone.id, user_id=user)
            with pytest.raises(MemoryNotFound):
                self.store.get_memory(gone.id, user_id=user)

        @rule(user=USERS)
        def clear_memories(self, user: str) -> None:
            assert self.store.clear_memories(user_id=user) == len(self.memories.pop(user, []))

        @rule(user=USERS, other=USERS, pick=st.integers(0, MEMORY_CAP - 1))
        def another_users_id_is_not_found(self, user: str, other: str, pick: int) -> None:
            theirs = self.memories.get(other)
            if user == other or not theirs:
                return
            target = theirs[pick % len(theirs)]
            with pytest.raises(MemoryNotFound):
                self.store.get_memory(target.id, user_id=user)
            with pytest.raises(MemoryNotFound):
                self.store.update_memory(target.id, "hijacked", user_id=user)
            with pytest.raises(MemoryNotFound):
                self.store.delete_memory(target.id, user_id=user)

        @rule(user=USERS, query=MEMORY_TEXTS, limit=st.integers(1, MEMORY_CAP + 1))
        def search_memories(self, user: str, query: str, limit: int) -> None:
            found = self.store.search_memories(query, user_id=user, limit=limit)
            terms = set(query_terms(query))
            matching = {m.id: m for m in self.memories.get(user, []) if terms & set(tokens(m.text))}
            assert len(found) == min(limit, len(matching))
            assert all(matching[m.id] == m for m in found)

        @rule(user=USERS, session=SESSIONS, text=MEMORY_TEXTS)
        def set_summary(self, user: str, session: str, text: str) -> None:
            summary = Summary(text, "m-1", self.clock())
            self.store.set_summary(summary, user_id=user, session_id=session)
            scope = self.model.get((user, session))
            if scope is not None:  # a session that does not exist gets no summary
                scope.summary = summary

        @rule(user=USERS, limit=st.none() | st.integers(1, MEMORY_CAP))
        def list_memories(self, user: str, limit: int | None) -> None:
            newest_first = self.memories.get(user, [])[::-1]
            expected = newest_first if limit is None else newest_first[:limit]
            assert self.store.list_memories(user_id=user, limit=limit) == expected

        @rule(user=USERS, session=SESSIONS)
        def get_summary(self, user: str, session: str) -> None:
            scope = self.model.get((user, session))
            expected = None if scope is None else scope.summary
            assert self.store.get_summary(user, session) == expected

        @invariant()
        def users_and_sessions_agree(self) -> None:
            if not hasattr(self, "store"):
                return
            users = sorted({u for u, _ in self.model})
            assert self.store.list_users() == users
            for user in users:
                sessions = sorted(s for u, s in self.model if u == user)
                assert self.store.list_sessions(user) == sessions

    return StoreMachine


def test_store_behaves_like_a_dict_under_random_operations(
    make_store: MakeStore, backend: str
) -> None:
    machine: Callable[[], RuleBasedStateMachine] = machine_for(make_store)
    run_state_machine_as_test(
        machine,
        settings=settings(
            # On Redis Cluster each step's list_users reads every slot's bucket: fewer runs.
            max_examples=6 if backend == CLUSTER_BACKEND else 60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
