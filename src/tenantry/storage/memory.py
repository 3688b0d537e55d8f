"""`InMemoryStore`: every scope in a dict of the process. Fast; lost when the process ends.

Users map to their sessions, sessions to a list of immutable messages trimmed to
max_messages (for 10 messages a list costs a third of a deque's fixed 624 bytes), so reading
a scope's newest N messages is one slice that never touches another tenant's data. A
threading lock guards the maps, so the store is safe to share between event loops and
threads (the sync facade). A session's summary lives with its session; the users' memories
are kept by `InMemoryMemories` (memory_memories.py), and their usage and budgets by
`InMemoryUsage` (memory_usage.py), bases of the store, under the same lock. Idempotency
records are a dict per user, key -> record, written under the lock with the turn.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractAsyncContextManager

from tenantry.storage.base import Clock, Snapshot, TurnWrite
from tenantry.storage.codec import decode_state
from tenantry.storage.idempotency import IdempotencyRecord, reused
from tenantry.storage.locks import LocalScopeLocks
from tenantry.storage.memories import DEFAULT_MAX_MEMORIES
from tenantry.storage.memory_memories import InMemoryMemories
from tenantry.storage.memory_usage import InMemoryUsage
from tenantry.storage.usage import DEFAULT_USAGE_RETENTION_DAYS, usage_day
from tenantry.tenancy import Scope
from tenantry.types import Message


class _Session:
    __slots__ = ("messages", "state", "summary", "updated_at")

    def __init__(self, now: float) -> None:
        self.messages: list[Message] = []
        self.state: str | None = None
        self.summary: str | None = None
        self.updated_at = now


def _newest(history: list[Message], limit: int | None, offset: int = 0) -> list[Message]:
    """Give the newest `limit` messages of a history after skipping the newest `offset`,
    oldest first, touching only those."""
    stop = len(history) - offset
    if stop <= 0:
        return []
    return history[:stop] if limit is None else history[max(stop - limit, 0) : stop]


class InMemoryStore(InMemoryUsage, InMemoryMemories):
    """Every scope in this process's memory: `InMemoryStore(max_messages=100)` keeps each
    scope's newest 100 messages; nothing outlives the process or `close()`."""

    def __init__(
        self,
        max_messages: int | None = None,
        *,
        max_memories: int | None = DEFAULT_MAX_MEMORIES,
        usage_retention_days: int = DEFAULT_USAGE_RETENTION_DAYS,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(
            max_messages=max_messages,
            max_memories=max_memories,
            usage_retention_days=usage_retention_days,
            clock=clock,
        )
        self._users: dict[str, dict[str, _Session]] = {}
        self._records: dict[str, dict[str, IdempotencyRecord]] = {}
        self._mutex = threading.Lock()
        self._locks = LocalScopeLocks()
        self._init_memories()
        self._init_usage()

    def _session(self, scope: Scope) -> _Session | None:
        sessions = self._users.get(scope.user_id)
        return None if sessions is None else sessions.get(scope.session_id)

    async def _append(self, scope: Scope, write: TurnWrite) -> None:
        with self._mutex:
            record = write.idempotency
            if record is not None:  # first: a reused key changes nothing
                records = self._records.setdefault(scope.user_id, {})
                found = records.get(record.key)
                if found is not None and found.expires_at > write.now:
                    raise reused(record.key)
            if write.usage is not None:  # before the rest: if counting failed, nothing changed
                self._count(scope.user_id, usage_day(write.now), write.usage)
            if record is not None:
                self._records.setdefault(scope.user_id, {})[record.key] = record
            sessions = self._users.setdefault(scope.user_id, {})
            session = sessions.get(scope.session_id)
            if session is None:
                session = sessions[scope.session_id] = _Session(write.now)
            history = session.messages
            history.extend(write.messages)
            cap = self._max_messages
            if cap is not None and len(history) > cap:
                del history[:-cap]  # the oldest first
            if write.state is not None:
                session.state = write.state
            session.updated_at = write.now

    async def _get_record(self, user_id: str, key: str) -> IdempotencyRecord | None:
        with self._mutex:
            return self._records.get(user_id, {}).get(key)

    async def _read(self, scope: Scope, limit: int | None, offset: int) -> list[Message]:
        with self._mutex:
            session = self._session(scope)
            return [] if session is None else _newest(session.messages, limit, offset)

    async def _snapshot(self, scope: Scope, limit: int | None) -> Snapshot:
        with self._mutex:
            session = self._session(scope)
            if session is None:
                return Snapshot([], {})
            messages, state = _newest(session.messages, limit), session.state
        return Snapshot(messages, decode_state(state))

    async def _size(self, scope: Scope) -> int:
        with self._mutex:
            session = self._session(scope)
            return 0 if session is None else len(session.messages)

    async def _get_state(self, scope: Scope) -> str | None:
        with self._mutex:
            session = self._session(scope)
            return None if session is None else session.state

    async def _clear_scope(self, scope: Scope) -> None:
        with self._mutex:
            sessions = self._users.get(scope.user_id)
            if sessions is not None:
                sessions.pop(scope.session_id, None)
                if not sessions:
                    del self._users[scope.user_id]
            records = self._records.get(scope.user_id, {})
            for key in [k for k, r in records.items() if r.session_id == scope.session_id]:
                del records[key]

    async def _clear_user(self, user_id: str) -> None:
        with self._mutex:
            self._users.pop(user_id, None)
            self._memories.pop(user_id, None)
            self._records.pop(user_id, None)

    async def _clear_all(self) -> None:
        with self._mutex:
            self._users.clear()
            self._memories.clear()
            self._forget_usage()
            self._records.clear()

    async def _get_summary(self, scope: Scope) -> str | None:
        with self._mutex:
            session = self._session(scope)
            return None if session is None else session.summary

    async def _set_summary(self, scope: Scope, summary: str) -> None:
        with self._mutex:
            session = self._session(scope)
            if session is not None:
                session.summary = summary

    async def _list_users(self) -> list[str]:
        with self._mutex:
            return sorted(self._users)

    async def _list_sessions(self, user_id: str) -> list[str]:
        with self._mutex:
            return sorted(self._users.get(user_id, ()))

    async def _prune(self, cutoff: float) -> int:
        with self._mutex:
            idle = [
                (user_id, session_id)
                for user_id, sessions in self._users.items()
                for session_id, session in sessions.items()
                if session.updated_at < cutoff
            ]
            for user_id, session_id in idle:
                sessions = self._users[user_id]
                del sessions[session_id]
                if not sessions:
                    del self._users[user_id]
            now = self._clock()
            for user_id, records in list(self._records.items()):
                for key in [k for k, r in records.items() if r.expires_at <= now]:
                    del records[key]
                if not records:
                    del self._records[user_id]
        return len(idle)

    def _lock(self, scope: Scope, timeout: float) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(scope, timeout)

    async def _close(self) -> None:
        with self._mutex:
            self._users.clear()
            self._memories.clear()
            self._forget_usage()
            self._records.clear()


__all__ = ["InMemoryStore"]
