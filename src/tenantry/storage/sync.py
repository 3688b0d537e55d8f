"""`SyncStore`: the store API without `await`, for scripts, notebooks and threads.

It wraps any async store and runs each call on tenantry's background loop, so calls from many
threads are safe and share the store's per-scope locks. Every public method of `Store` has its
twin here, with the same parameters (tests/storage/test_sync.py checks it), except `lock`: a
turn lock belongs to the task that holds it, and a blocking caller has no task of its own.

    store = SyncStore(InMemoryStore(max_messages=100))
    store.add(Message.user("Hello from Alice"), user_id="user-a")
    store.size("user-a")  # 1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from types import TracebackType
from typing import Any, Self

from tenantry._runner import run_sync
from tenantry.storage.base import Clock, Snapshot, Store
from tenantry.storage.idempotency import IdempotencyRecord
from tenantry.types import Admission, Budget, Memory, Message, Summary, Usage, UsageDay


class SyncStore:
    """Blocking twin of a `Store`; every method has the same meaning as the async one."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def max_messages(self) -> int | None:
        return self.store.max_messages

    @property
    def clock(self) -> Clock:
        return self.store.clock

    @property
    def max_memories(self) -> int | None:
        return self.store.max_memories

    @property
    def closed(self) -> bool:
        return self.store.closed

    @property
    def usage_retention_days(self) -> int:
        return self.store.usage_retention_days

    @property
    def shares_rate_limit(self) -> bool:
        return self.store.shares_rate_limit

    def add(
        self, message: Message, *, user_id: str | None = None, session_id: str | None = None
    ) -> None:
        run_sync(self.store.add(message, user_id=user_id, session_id=session_id))

    def add_many(
        self,
        messages: Iterable[Message],
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        state: Mapping[str, Any] | None = None,
        usage: Usage | None = None,
        idempotency: IdempotencyRecord | None = None,
    ) -> None:
        run_sync(
            self.store.add_many(
                messages,
                user_id=user_id,
                session_id=session_id,
                state=state,
                usage=usage,
                idempotency=idempotency,
            )
        )

    def get_idempotency_record(
        self, key: str, *, user_id: str | None = None
    ) -> IdempotencyRecord | None:
        return run_sync(self.store.get_idempotency_record(key, user_id=user_id))

    def get_messages(
        self,
        user_id: str | None = None,
        session_id: str | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Message]:
        return run_sync(self.store.get_messages(user_id, session_id, limit=limit, offset=offset))

    def snapshot(
        self, user_id: str | None = None, session_id: str | None = None, *, limit: int | None = None
    ) -> Snapshot:
        return run_sync(self.store.snapshot(user_id, session_id, limit=limit))

    def snapshot_and_search(
        self,
        query: str,
        *,
        user_id: str,
        session_id: str | None = None,
        limit: int | None = None,
        search_limit: int = 5,
    ) -> tuple[Snapshot, list[Memory]]:
        return run_sync(
            self.store.snapshot_and_search(
                query,
                user_id=user_id,
                session_id=session_id,
                limit=limit,
                search_limit=search_limit,
            )
        )

    def snapshot_and_admission(
        self,
        user_id: str,
        session_id: str | None = None,
        *,
        limit: int | None = None,
        now: float | None = None,
        budgeted_only: bool = False,
    ) -> tuple[Snapshot, Admission]:
        return run_sync(
            self.store.snapshot_and_admission(
                user_id, session_id, limit=limit, now=now, budgeted_only=budgeted_only
            )
        )

    def size(self, user_id: str | None = None, session_id: str | None = None) -> int:
        return run_sync(self.store.size(user_id, session_id))

    def clear(self, user_id: str | None = None, session_id: str | None = None) -> None:
        run_sync(self.store.clear(user_id, session_id))

    def clear_all(self) -> None:
        run_sync(self.store.clear_all())

    def list_users(self) -> list[str]:
        return run_sync(self.store.list_users())

    def list_sessions(self, user_id: str | None = None) -> list[str]:
        return run_sync(self.store.list_sessions(user_id))

    def prune_inactive(self, older_than: timedelta) -> int:
        return run_sync(self.store.prune_inactive(older_than))

    def get_state(
        self, user_id: str | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        return run_sync(self.store.get_state(user_id, session_id))

    def set_state(
        self,
        state: Mapping[str, Any],
        *,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> None:
        run_sync(self.store.set_state(state, user_id=user_id, session_id=session_id))

    def add_memory(
        self,
        text: str,
        *,
        user_id: str,
        session_id: str | None = None,
        run_id: str | None = None,
        embedding: Sequence[float] | None = None,
    ) -> Memory:
        return run_sync(
            self.store.add_memory(
                text, user_id=user_id, session_id=session_id, run_id=run_id, embedding=embedding
            )
        )

    def get_memory(self, memory_id: str, *, user_id: str) -> Memory:
        return run_sync(self.store.get_memory(memory_id, user_id=user_id))

    def list_memories(self, *, user_id: str, limit: int | None = None) -> list[Memory]:
        return run_sync(self.store.list_memories(user_id=user_id, limit=limit))

    def search_memories(
        self,
        query: str,
        *,
        user_id: str,
        limit: int = 5,
        embedding: Sequence[float] | None = None,
    ) -> list[Memory]:
        return run_sync(
            self.store.search_memories(query, user_id=user_id, limit=limit, embedding=embedding)
        )

    def update_memory(
        self,
        memory_id: str,
        text: str,
        *,
        user_id: str,
        expected_version: int | None = None,
        embedding: Sequence[float] | None = None,
    ) -> Memory:
        return run_sync(
            self.store.update_memory(
                memory_id,
                text,
                user_id=user_id,
                expected_version=expected_version,
                embedding=embedding,
            )
        )

    def delete_memory(self, memory_id: str, *, user_id: str) -> None:
        run_sync(self.store.delete_memory(memory_id, user_id=user_id))

    def clear_memories(self, *, user_id: str) -> int:
        return run_sync(self.store.clear_memories(user_id=user_id))

    def get_summary(
        self, user_id: str | None = None, session_id: str | None = None
    ) -> Summary | None:
        return run_sync(self.store.get_summary(user_id, session_id))

    def set_summary(
        self, summary: Summary, *, user_id: str | None = None, session_id: str | None = None
    ) -> None:
        run_sync(self.store.set_summary(summary, user_id=user_id, session_id=session_id))

    def add_usage(self, usage: Usage, *, user_id: str, now: float | None = None) -> None:
        run_sync(self.store.add_usage(usage, user_id=user_id, now=now))

    def get_usage(self, user_id: str, *, start: date, end: date) -> list[UsageDay]:
        return run_sync(self.store.get_usage(user_id, start=start, end=end))

    def usage_total(self, user_id: str, *, start: date, end: date) -> Usage:
        return run_sync(self.store.usage_total(user_id, start=start, end=end))

    def top_usage(self, *, start: date, end: date, limit: int = 10) -> list[tuple[str, Usage]]:
        return run_sync(self.store.top_usage(start=start, end=end, limit=limit))

    def read_admission(self, user_id: str, *, now: float | None = None) -> Admission:
        return run_sync(self.store.read_admission(user_id, now=now))

    def get_budget(self, user_id: str) -> Budget | None:
        return run_sync(self.store.get_budget(user_id))

    def set_budget(self, user_id: str, budget: Budget | None) -> None:
        run_sync(self.store.set_budget(user_id, budget))

    def rate_limit_hit(self, user_id: str, *, per_minute: int, now: float | None = None) -> float:
        return run_sync(self.store.rate_limit_hit(user_id, per_minute=per_minute, now=now))

    def ping(self) -> None:
        run_sync(self.store.ping())

    def close(self) -> None:
        run_sync(self.store.close())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
