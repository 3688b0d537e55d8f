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
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

from tenantry._runner import run_sync
from tenantry.storage.base import Clock, Snapshot, Store
from tenantry.storage.idempotency import IdempotencyRecord
from tenantry.types import Memory, Message, Summary


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
        idempotency: IdempotencyRecord | None = None,
    ) -> None:
        run_sync(
            self.store.add_many(
                messages,
                user_id=user_id,
                session_id=session_id,
                state=state,
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
