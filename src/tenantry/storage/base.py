"""The store contract: `Store`, the one abstract class every caller is typed against.

Its public methods are implemented once — id validation, message and state checks, the
closed check, `async with` — on top of a handful of scope-level primitives that each backend
provides (`_append`, `_read`, ...). So every backend rejects bad input the same way, and a
new backend is one module of primitives (a server-backed one starts from `remote`).
The long-term half of the contract — memories per user, a summary per session — is written
the same way in `memories` (`MemoryContract`, a base of `Store`).

Semantics shared by every backend:

- A scope is (user_id, session_id); None means the default user or the default session, except
  in `clear`, where `session_id=None` means every session of the user.
- `add_many` is atomic: all messages (and the state, if given) or nothing. When a scope holds
  more than `max_messages`, the oldest are dropped in the same transaction.
- Session state is a JSON-serialisable dict per scope; it round-trips through JSON, so callers
  always get a fresh copy and can never change what is stored by editing it.
- A scope's last activity is the time of its last write (add, add_many, set_state);
  `prune_inactive` deletes every scope idle for longer than the given age, with its summary
  but not the user's memories.
- `clear(user_id)` deletes the user: every session, summary and memory (their usage and
  budget stay: see `usage`). `clear(user_id, session_id)` deletes one session and its
  summary; the user's memories stay.
- A turn's usage (`add_many(..., usage=...)`) is counted in the same atomic write as its
  messages; the usage half of the contract is `usage` (`UsageContract`, a base of `Store`).
- A turn written with an idempotency record (`add_many(..., idempotency=...)`, see
  `idempotency`) stores the record in the same atomic write; `get_idempotency_record` finds
  it by (user, key) until it expires. Clearing its session or user deletes it;
  `prune_inactive` deletes expired ones.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date, timedelta
from types import TracebackType
from typing import Any, Self

from tenantry._checks import check_int
from tenantry.errors import InvalidInput, StoreClosed
from tenantry.storage.checks import check_age, check_messages, check_query
from tenantry.storage.codec import decode_state, encode_state
from tenantry.storage.idempotency import IdempotencyRecord, check_idempotency_key
from tenantry.storage.memories import DEFAULT_MAX_MEMORIES, MemoryContract
from tenantry.storage.search import query_terms
from tenantry.storage.usage import (
    DEFAULT_USAGE_RETENTION_DAYS,
    UNREAD_ADMISSION,
    UsageContract,
    check_usage,
    usage_day,
)
from tenantry.tenancy import Scope, validate_user_id
from tenantry.types import Admission, Memory, Message, Usage

DEFAULT_LOCK_TIMEOUT = 30.0
"""Seconds a turn waits for another turn of the same scope before giving up (ScopeBusy)."""

PRUNE_BATCH = 500
"""Scopes deleted per batch (one transaction each) by `prune_inactive`."""

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class TurnWrite:
    """What one atomic write stores in a scope, handed to the backend's `_append`.

    A value that must commit together with a turn's messages gets a field here, and every
    backend's `_append` writes it in the same atomic step."""

    messages: Sequence[Message]
    """The new messages, oldest first, already cut to the newest `max_messages`."""
    state: str | None
    """The new session state as JSON text; None keeps the stored one."""
    now: float
    """The time of the write: the scope's last activity."""
    usage: Usage | None = None
    """The turn's usage, added to the user's counters of the UTC day of `now`
    (`usage.usage_day`); None (or nothing to count) adds nothing."""
    idempotency: IdempotencyRecord | None = None
    """The turn's idempotency record, if it was sent with a key: stored with the turn, or
    neither is stored (IdempotencyKeyReused) when the user holds a live record of that key."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A scope's newest messages and its session state, read together."""

    messages: list[Message]
    state: dict[str, Any] = field(default_factory=dict)


class Store(UsageContract, MemoryContract, ABC):
    """The store contract: what the agent, the server and the CLI need of a store.

    The public methods are written once, here, in `MemoryContract` and in `UsageContract`,
    on top of the backend primitives below (and those of the two contracts)."""

    def __init__(
        self,
        *,
        max_messages: int | None = None,
        max_memories: int | None = DEFAULT_MAX_MEMORIES,
        usage_retention_days: int = DEFAULT_USAGE_RETENTION_DAYS,
        clock: Clock = time.time,
    ) -> None:
        self._max_messages = check_int("max_messages", max_messages, or_none=True)
        self._max_memories = check_int("max_memories", max_memories, or_none=True)
        self._usage_retention_days = check_int("usage_retention_days", usage_retention_days)
        self._clock = clock
        self._closed = False

    # --- public API ---------------------------------------------------------------------------

    @property
    def max_messages(self) -> int | None:
        """The most messages a scope keeps; None for no limit."""
        return self._max_messages

    @property
    def clock(self) -> Clock:
        """The store's clock (seconds since the epoch): the time of its writes and expiries."""
        return self._clock

    async def add(
        self, message: Message, *, user_id: str | None = None, session_id: str | None = None
    ) -> None:
        """Append one message to the scope's history."""
        await self.add_many(check_messages([message]), user_id=user_id, session_id=session_id)

    async def add_many(
        self,
        messages: Iterable[Message],
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        state: Mapping[str, Any] | None = None,
        usage: Usage | None = None,
        idempotency: IdempotencyRecord | None = None,
    ) -> None:
        """Append messages, and replace the session state if given, in one atomic write that
        also adds `usage` (the turn's) to the user's counters of today (UTC); with
        `idempotency`, store that record in the same write, or raise IdempotencyKeyReused
        (and store nothing) if the user holds a live one of its key."""
        scope = self._scope(user_id, session_id)
        checked = check_messages(messages)
        state_text = None if state is None else encode_state(state)
        counted = None if usage is None or check_usage(usage).empty else usage
        now = self._clock()
        if idempotency is not None:
            _check_record(idempotency, scope)
        elif not checked and state_text is None:
            if counted is not None:  # nothing of the scope changes: no activity either
                await self._add_usage(scope.user_id, usage_day(now), counted)
            return
        write = TurnWrite(
            self._keep(checked), state_text, now, usage=counted, idempotency=idempotency
        )
        await self._append(scope, write)

    async def get_idempotency_record(
        self, key: str, *, user_id: str | None = None
    ) -> IdempotencyRecord | None:
        """Give the user's live record of idempotency key `key`, or None (none, or expired)."""
        self._check_open()
        user, checked = validate_user_id(user_id), check_idempotency_key(key)
        record = await self._get_record(user, checked)
        return record if record is not None and record.expires_at > self._clock() else None

    async def get_messages(
        self,
        user_id: str | None = None,
        session_id: str | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Message]:
        """Give the scope's messages, oldest first; with `limit`, only the newest `limit`.

        `offset` skips that many of the newest messages first, for paging backwards:
        `limit=50, offset=50` is the second-newest page of 50.
        """
        scope = self._scope(user_id, session_id)
        checked = check_int("limit", limit, minimum=0, or_none=True)
        skipped = check_int("offset", offset, minimum=0, or_none=True) or 0
        if checked == 0:
            return []
        return await self._read(scope, checked, skipped)

    async def snapshot(
        self, user_id: str | None = None, session_id: str | None = None, *, limit: int | None = None
    ) -> Snapshot:
        """Give the newest `limit` messages and the session state, read consistently."""
        scope = self._scope(user_id, session_id)
        return await self._snapshot(scope, check_int("limit", limit, minimum=0, or_none=True))

    async def snapshot_and_search(
        self,
        query: str,
        *,
        user_id: str,
        session_id: str | None = None,
        limit: int | None = None,
        search_limit: int = 5,
    ) -> tuple[Snapshot, list[Memory]]:
        """Give `snapshot(user_id, session_id, limit=limit)` and the user's memories that best
        match `query` by keyword (`search_memories(query, limit=search_limit)` without an
        embedding), read together: what a turn with memory recall reads before its model
        call, in one read where the backend can (SQLite: one read transaction on one
        reader thread) and both at once where it cannot."""
        user = self._memory_user(user_id)
        scope = self._scope(user, session_id)
        checked = check_int("limit", limit, minimum=0, or_none=True)
        wanted = check_int("search_limit", search_limit, minimum=0)
        terms = query_terms(check_query(query)) if wanted else []
        return await self._snapshot_and_search(scope, checked, terms, wanted)

    async def snapshot_and_admission(
        self,
        user_id: str,
        session_id: str | None = None,
        *,
        limit: int | None = None,
        now: float | None = None,
        budgeted_only: bool = False,
    ) -> tuple[Snapshot, Admission]:
        """Give `snapshot(user_id, session_id, limit=limit)` and `read_admission(user_id,
        now=now)`, read together: what a turn with accounting reads before its model call,
        in one read where the backend can (SQLite: one read transaction on one reader
        thread) and both at once where it cannot.

        `budgeted_only`: the caller needs the usage only of a user with a budget override
        (its default budget has no limits), so a backend may leave it unread (empty `Usage`)
        for a user without one; the override itself is always read."""
        user = self._usage_user(user_id)
        scope = self._scope(user, session_id)
        checked = check_int("limit", limit, minimum=0, or_none=True)
        day = usage_day(self._now(now))
        return await self._snapshot_and_admission(scope, checked, day, budgeted_only)

    async def size(self, user_id: str | None = None, session_id: str | None = None) -> int:
        """Give the number of messages the scope holds."""
        return await self._size(self._scope(user_id, session_id))

    async def clear(self, user_id: str | None = None, session_id: str | None = None) -> None:
        """Delete a session (messages, state, summary); with session_id None, the whole user:
        every session and every memory. Other users and sessions are untouched; deleting one
        session keeps the user's memories."""
        self._check_open()
        if session_id is None:
            await self._clear_user(validate_user_id(user_id))
        else:
            await self._clear_scope(Scope.of(user_id, session_id))

    async def clear_all(self) -> None:
        """Delete everything of every user, their usage and budgets too."""
        self._check_open()
        await self._clear_all()

    async def list_users(self) -> list[str]:
        """Give the ids of users that have at least one session, sorted."""
        self._check_open()
        return await self._list_users()

    async def list_sessions(self, user_id: str | None = None) -> list[str]:
        """Give the ids of the user's sessions, sorted."""
        self._check_open()
        return await self._list_sessions(validate_user_id(user_id))

    async def prune_inactive(self, older_than: timedelta) -> int:
        """Delete every scope idle for longer than `older_than` (messages, state, summary;
        memories stay, they are the user's), and usage older than `usage_retention_days`;
        give how many scopes were deleted."""
        self._check_open()
        now = self._clock()
        deleted = await self._prune(now - check_age(older_than))
        await self._prune_usage(self._usage_cutoff(now))
        return deleted

    async def get_state(
        self, user_id: str | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        """Give a copy of the scope's session state ({} when none was set)."""
        return decode_state(await self._get_state(self._scope(user_id, session_id)))

    async def set_state(
        self,
        state: Mapping[str, Any],
        *,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> None:
        """Replace the scope's session state."""
        scope = self._scope(user_id, session_id)
        await self._append(scope, TurnWrite((), encode_state(state), self._clock()))

    def lock(
        self,
        user_id: str | None = None,
        session_id: str | None = None,
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> AbstractAsyncContextManager[None]:
        """Hold the scope's turn lock: turns of one scope never overlap. Raises ScopeBusy
        after `timeout` seconds of waiting."""
        return self._lock(self._scope(user_id, session_id), timeout)

    async def ping(self) -> None:
        """Raise if the store cannot serve requests right now."""
        self._check_open()

    async def close(self) -> None:
        """Release connections and threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._close()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- shared helpers -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"{type(self).__name__} is closed; open a new store")

    def _scope(self, user_id: str | None, session_id: str | None) -> Scope:
        self._check_open()
        return Scope.of(user_id, session_id)

    def _keep(self, messages: Sequence[Message]) -> Sequence[Message]:
        """Give the tail of `messages` that fits max_messages (a batch larger than the cap)."""
        cap = self._max_messages
        return messages if cap is None or len(messages) <= cap else messages[-cap:]

    @staticmethod
    async def _in_batches(batch: Callable[[], Awaitable[int]]) -> int:
        """Run `batch` (which deletes up to PRUNE_BATCH scopes) until one deletes fewer; give
        the total deleted."""
        total = 0
        while True:
            deleted = await batch()
            total += deleted
            if deleted < PRUNE_BATCH:
                return total

    async def _snapshot(self, scope: Scope, limit: int | None) -> Snapshot:
        """Default: two reads. Backends override it to read both in one round trip."""
        messages = [] if limit == 0 else await self._read(scope, limit, 0)
        return Snapshot(messages, decode_state(await self._get_state(scope)))

    async def _snapshot_and_search(
        self, scope: Scope, limit: int | None, terms: list[str], wanted: int
    ) -> tuple[Snapshot, list[Memory]]:
        """Default: one read after the other, for backends in this process (nothing to wait
        for, so nothing to overlap). Server-backed ones overlap the two (`remote`)."""
        snapshot = await self._snapshot(scope, limit)
        if not terms or wanted == 0:
            return snapshot, []
        return snapshot, await self._search_memories(scope.user_id, terms, wanted)

    async def _snapshot_and_admission(
        self, scope: Scope, limit: int | None, day: date, budgeted_only: bool
    ) -> tuple[Snapshot, Admission]:
        """Default: one read after the other, for backends in this process (nothing to wait
        for, so nothing to overlap), the usage only when `budgeted_only` allows no less.
        Server-backed ones overlap the two and read the usage in the same round trip anyway
        (`remote`)."""
        snapshot = await self._snapshot(scope, limit)
        if budgeted_only:
            budget = await self._get_budget(scope.user_id)
            if budget is None:
                return snapshot, UNREAD_ADMISSION
        return snapshot, await self._read_admission(scope.user_id, day)

    # --- backend primitives -------------------------------------------------------------------

    @abstractmethod
    async def _append(self, scope: Scope, write: TurnWrite) -> None:
        """Atomically append `write.messages`, trim the scope to max_messages, set
        `write.state` if not None, mark the scope active at `write.now` and add
        `write.usage` (if not None) to the user's counters of `usage_day(write.now)`."""

    @abstractmethod
    async def _read(self, scope: Scope, limit: int | None, offset: int) -> list[Message]:
        """Give the scope's messages oldest first: the newest `limit` (all when None) after
        skipping the newest `offset`."""

    @abstractmethod
    async def _size(self, scope: Scope) -> int: ...

    @abstractmethod
    async def _get_record(self, user_id: str, key: str) -> IdempotencyRecord | None:
        """Give the user's record of `key`, expired or not, or None."""

    @abstractmethod
    async def _get_state(self, scope: Scope) -> str | None: ...

    @abstractmethod
    async def _clear_scope(self, scope: Scope) -> None: ...

    @abstractmethod
    async def _clear_user(self, user_id: str) -> None:
        """Delete every session of the user, their summaries and the user's memories."""

    @abstractmethod
    async def _clear_all(self) -> None: ...

    @abstractmethod
    async def _list_users(self) -> list[str]: ...

    @abstractmethod
    async def _list_sessions(self, user_id: str) -> list[str]: ...

    @abstractmethod
    async def _prune(self, cutoff: float) -> int:
        """Delete scopes last active before `cutoff`, in batches, and the idempotency
        records expired by now; give how many scopes."""

    @abstractmethod
    def _lock(self, scope: Scope, timeout: float) -> AbstractAsyncContextManager[None]: ...

    @abstractmethod
    async def _close(self) -> None: ...


def _check_record(record: IdempotencyRecord, scope: Scope) -> None:
    if not isinstance(record, IdempotencyRecord):
        raise InvalidInput(f"idempotency must be an IdempotencyRecord, got {record!r}")
    check_idempotency_key(record.key)
    if record.session_id != scope.session_id:
        raise InvalidInput(
            f"the idempotency record names session {record.session_id!r}, but the turn is "
            f"written to {scope.session_id!r}"
        )


__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_MAX_MEMORIES",
    "DEFAULT_USAGE_RETENTION_DAYS",
    "PRUNE_BATCH",
    "Clock",
    "Snapshot",
    "Store",
    "TurnWrite",
]
