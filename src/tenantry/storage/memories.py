"""The long-term half of the store contract: memories per user, a summary per session.

`MemoryContract` is a base of `base.Store`, so every store has these methods; like the rest
of the contract they are written once, here, with their checks, on top of a few backend
primitives (`_add_memory`, `_search_memories`, ...). Semantics shared by every backend:

- A memory belongs to a user, across sessions. `user_id` is required and keyword-only: a
  memory call that forgot its user fails loudly instead of landing in the default user.
  Another user's memory id is "not found", exactly like an id that never existed.
- `add_memory` keeps at most `max_memories` per user: adding one more drops the user's least
  recently updated memories in the same atomic write.
- `update_memory` is an atomic compare-and-swap when `expected_version` is given: a stale
  version raises MemoryConflict and changes nothing. Every update adds 1 to the version.
  New text without a new embedding drops the old vector (it described the old text).
- `search_memories` ranks the user's memories by keywords (BM25 or the database's own
  full-text ranking; see `search`), whose cost does not depend on other users' memories.
  With the query's `embedding` it ranks the user's memories that have vectors by cosine
  similarity, then fills any remaining places with keyword matches.
- Deleting a user (`clear(user_id)`) and `clear_all` delete memories; deleting one session
  (`clear(user_id, session_id)`) and `prune_inactive` leave them: they belong to the user,
  not to a session.
- A summary belongs to its session: `clear`, `prune_inactive` and `clear_all` delete it with
  the session. `set_summary` stores it only while the session exists (a background job that
  finishes after its session was deleted cannot bring the session back), and is not activity:
  it does not keep a session from being pruned.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from tenantry._checks import check_int
from tenantry.errors import InvalidUserId, MemoryConflict, MemoryNotFound
from tenantry.storage.checks import (
    check_embedding,
    check_memory_id,
    check_memory_text,
    check_query,
    check_summary,
    check_version,
)
from tenantry.storage.codec import decode_summary, decode_vector, encode_summary
from tenantry.storage.search import cosine, query_terms
from tenantry.tenancy import Scope, validate_session_id, validate_user_id
from tenantry.types import Memory, Summary, new_id

DEFAULT_MAX_MEMORIES = 1_000
"""Memories a user keeps unless the store is told otherwise (`max_memories`)."""


def not_found(memory_id: str) -> MemoryNotFound:
    """Give the error of a memory id the user does not have (or that is another user's)."""
    return MemoryNotFound(f"this user has no memory {memory_id!r}; list the memories for ids")


def conflict(memory_id: str, expected: int, found: int) -> MemoryConflict:
    """Give the error of a compare-and-swap whose expected version is stale."""
    return MemoryConflict(
        f"memory {memory_id!r} is at version {found}, not {expected}: it changed since it was "
        "read; read it again and retry with its current version"
    )


class MemoryContract(ABC):
    """Memories and session summaries: the methods every `Store` has beside conversations."""

    _max_memories: int | None
    _clock: Callable[[], float]

    @property
    def max_memories(self) -> int | None:
        """The most memories a user keeps (the least recently updated go first); None for no
        limit."""
        return self._max_memories

    async def add_memory(
        self,
        text: str,
        *,
        user_id: str,
        session_id: str | None = None,
        run_id: str | None = None,
        embedding: Sequence[float] | None = None,
    ) -> Memory:
        """Store a new memory of the user (learned in `session_id` / `run_id`, if given) and
        give it; with `max_memories` reached, the least recently updated one is dropped."""
        user = self._memory_user(user_id)
        checked = check_memory_text(text)
        session = None if session_id is None else validate_session_id(session_id)
        run = None if run_id is None else check_memory_id(run_id, "run id")
        vector = check_embedding(embedding)
        now = self._clock()
        memory = Memory(new_id(), user, checked, now, now, 1, session, run)
        await self._add_memory(memory, vector)
        return memory

    async def get_memory(self, memory_id: str, *, user_id: str) -> Memory:
        """Give one memory of the user; MemoryNotFound if the user has none with that id."""
        user = self._memory_user(user_id)
        checked = check_memory_id(memory_id)
        found = await self._memories_by_id(user, [checked])
        if not found:
            raise not_found(checked)
        return found[0]

    async def list_memories(self, *, user_id: str, limit: int | None = None) -> list[Memory]:
        """Give the user's memories, most recently updated first; at most `limit`."""
        user = self._memory_user(user_id)
        checked = check_int("limit", limit, minimum=0, or_none=True)
        if checked == 0:
            return []
        return await self._list_memories(user, checked)

    async def search_memories(
        self,
        query: str,
        *,
        user_id: str,
        limit: int = 5,
        embedding: Sequence[float] | None = None,
    ) -> list[Memory]:
        """Give the user's memories that best match `query`, best first, at most `limit`;
        with the query's `embedding`, nearest vectors first (see the module's docstring)."""
        user = self._memory_user(user_id)
        text = check_query(query)
        wanted = check_int("limit", limit, minimum=0)
        vector = check_embedding(embedding)
        if wanted == 0:
            return []
        found = [] if vector is None else await self._nearest_memories(user, vector, wanted)
        terms = query_terms(text)
        if len(found) >= wanted or not terms:
            return found
        seen = {memory.id for memory in found}
        extra = await self._search_memories(user, terms, wanted + len(found))
        return [*found, *[m for m in extra if m.id not in seen]][:wanted]

    async def update_memory(
        self,
        memory_id: str,
        text: str,
        *,
        user_id: str,
        expected_version: int | None = None,
        embedding: Sequence[float] | None = None,
    ) -> Memory:
        """Replace a memory's text (and vector) and give the new version; with
        `expected_version`, only if the memory is still at that version (MemoryConflict
        otherwise). MemoryNotFound if the user has no memory with that id."""
        user = self._memory_user(user_id)
        checked_id = check_memory_id(memory_id)
        checked = check_memory_text(text)
        expected = check_version(expected_version)
        vector = check_embedding(embedding)
        return await self._update_memory(user, checked_id, checked, expected, vector, self._clock())

    async def delete_memory(self, memory_id: str, *, user_id: str) -> None:
        """Delete one memory of the user; MemoryNotFound if the user has none with that id."""
        user = self._memory_user(user_id)
        checked = check_memory_id(memory_id)
        if not await self._delete_memory(user, checked):
            raise not_found(checked)

    async def clear_memories(self, *, user_id: str) -> int:
        """Delete every memory of the user; give how many there were."""
        return await self._clear_memories(self._memory_user(user_id))

    async def get_summary(
        self, user_id: str | None = None, session_id: str | None = None
    ) -> Summary | None:
        """Give the session's summary, or None if it has none."""
        return decode_summary(await self._get_summary(self._scope(user_id, session_id)))

    async def set_summary(
        self, summary: Summary, *, user_id: str | None = None, session_id: str | None = None
    ) -> None:
        """Replace the session's summary, if the session exists (see the module's docstring)."""
        scope = self._scope(user_id, session_id)
        await self._set_summary(scope, encode_summary(check_summary(summary)))

    # --- shared helpers -----------------------------------------------------------------------

    def _memory_user(self, user_id: str) -> str:
        """Give the user id of a memory call: required (None is refused, not the default)."""
        self._check_open()
        if user_id is None:
            raise InvalidUserId(
                "memories need an explicit user_id (there is no default user for memories)"
            )
        return validate_user_id(user_id)

    async def _nearest_memories(
        self, user_id: str, vector: Sequence[float], limit: int
    ) -> list[Memory]:
        """Give the user's memories whose vectors are nearest to `vector`, nearest first."""
        stored = await self._memory_vectors(user_id)
        ranked = cosine(vector, ((i, decode_vector(v)) for i, v in stored), limit)
        if not ranked:
            return []
        found = {memory.id: memory for memory in await self._memories_by_id(user_id, ranked)}
        return [found[i] for i in ranked if i in found]  # deleted meanwhile: left out

    @abstractmethod
    def _check_open(self) -> None: ...

    @abstractmethod
    def _scope(self, user_id: str | None, session_id: str | None) -> Scope: ...

    # --- backend primitives -------------------------------------------------------------------

    @abstractmethod
    async def _add_memory(self, memory: Memory, vector: Sequence[float] | None) -> None:
        """Atomically store `memory` (and its vector) as the user's most recently updated,
        then drop the user's least recently updated beyond max_memories."""

    @abstractmethod
    async def _memories_by_id(self, user_id: str, memory_ids: Sequence[str]) -> list[Memory]:
        """Give those of the user's memories whose ids are given (in any order)."""

    @abstractmethod
    async def _list_memories(self, user_id: str, limit: int | None) -> list[Memory]:
        """Give the user's memories, most recently updated first, the first `limit`."""

    @abstractmethod
    async def _search_memories(
        self, user_id: str, terms: Sequence[str], limit: int
    ) -> list[Memory]:
        """Give the `limit` memories of the user that best match the tokens `terms` (from
        `search.query_terms`), best first; only memories holding one of them."""

    @abstractmethod
    async def _memory_vectors(self, user_id: str) -> list[tuple[str, bytes]]:
        """Give (id, encoded vector) of each of the user's memories that has one, least
        recently updated first."""

    @abstractmethod
    async def _update_memory(
        self,
        user_id: str,
        memory_id: str,
        text: str,
        expected: int | None,
        vector: Sequence[float] | None,
        now: float,
    ) -> Memory:
        """Atomically: raise not_found / conflict, or set the text and vector (None: no
        vector), add 1 to the version, make it the user's most recently updated; give it."""

    @abstractmethod
    async def _delete_memory(self, user_id: str, memory_id: str) -> bool:
        """Delete one memory of the user; give whether there was one."""

    @abstractmethod
    async def _clear_memories(self, user_id: str) -> int:
        """Delete every memory of the user; give how many."""

    @abstractmethod
    async def _get_summary(self, scope: Scope) -> str | None: ...

    @abstractmethod
    async def _set_summary(self, scope: Scope, summary: str) -> None:
        """Set the session's summary (JSON text) if the session exists; else do nothing."""


__all__ = ["DEFAULT_MAX_MEMORIES", "MemoryContract", "conflict", "not_found"]
