"""`InMemoryMemories`: the memories of `InMemoryStore`, per user in this process.

Each user with memories has one `_UserMemories`: the memories in a dict ordered from least
to most recently updated (an update moves the memory to the end, so the cap drops from the
front), each memory's tokens, its vector if any, and a `search.TermIndex` over the tokens,
so a search reads the postings of its terms in this user's index only. Guarded by the store's
mutex, like its sessions.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Sequence

from tenantry.storage.base import Store
from tenantry.storage.codec import encode_vector
from tenantry.storage.memories import conflict, not_found
from tenantry.storage.search import TermIndex, tokens
from tenantry.types import Memory


class _UserMemories:
    __slots__ = ("index", "memories", "stamps", "vectors", "words")

    def __init__(self) -> None:
        self.memories: dict[str, Memory] = {}
        """Least recently updated first."""
        self.words: dict[str, list[str]] = {}
        self.vectors: dict[str, bytes] = {}
        self.stamps: dict[str, int] = {}
        """When each memory was last written, in the store's own count (ties never happen)."""
        self.index = TermIndex()

    def put(self, memory: Memory, vector: Sequence[float] | None, stamp: int) -> None:
        self.forget(memory.id)
        self.memories[memory.id] = memory
        words = self.words[memory.id] = tokens(memory.text)
        self.index.add(memory.id, words)
        self.stamps[memory.id] = stamp
        if vector is not None:
            self.vectors[memory.id] = encode_vector(vector)

    def forget(self, memory_id: str) -> bool:
        if self.memories.pop(memory_id, None) is None:
            return False
        self.index.remove(memory_id, self.words.pop(memory_id))
        self.vectors.pop(memory_id, None)
        del self.stamps[memory_id]
        return True


class InMemoryMemories(Store):
    """The memory primitives of `InMemoryStore`, which creates `_mutex` and calls
    `_init_memories` when it is made."""

    _mutex: threading.Lock

    def _init_memories(self) -> None:
        self._memories: dict[str, _UserMemories] = {}
        self._stamps = itertools.count(1)

    async def _add_memory(self, memory: Memory, vector: Sequence[float] | None) -> None:
        with self._mutex:
            mine = self._memories.setdefault(memory.user_id, _UserMemories())
            mine.put(memory, vector, next(self._stamps))
            cap = self._max_memories
            if cap is not None and len(mine.memories) > cap:
                for oldest in list(itertools.islice(mine.memories, len(mine.memories) - cap)):
                    mine.forget(oldest)

    async def _memories_by_id(self, user_id: str, memory_ids: Sequence[str]) -> list[Memory]:
        with self._mutex:
            mine = self._memories.get(user_id)
            if mine is None:
                return []
            return [mine.memories[i] for i in memory_ids if i in mine.memories]

    async def _list_memories(self, user_id: str, limit: int | None) -> list[Memory]:
        with self._mutex:
            mine = self._memories.get(user_id)
            if mine is None:
                return []
            newest = reversed(mine.memories.values())
            return list(newest if limit is None else itertools.islice(newest, limit))

    async def _search_memories(
        self, user_id: str, terms: Sequence[str], limit: int
    ) -> list[Memory]:
        with self._mutex:
            mine = self._memories.get(user_id)
            if mine is None:
                return []
            return [mine.memories[i] for i in mine.index.search(terms, limit, mine.stamps)]

    async def _memory_vectors(self, user_id: str) -> list[tuple[str, bytes]]:
        with self._mutex:
            mine = self._memories.get(user_id)
            if mine is None:
                return []
            return [(i, mine.vectors[i]) for i in mine.memories if i in mine.vectors]

    async def _update_memory(
        self,
        user_id: str,
        memory_id: str,
        text: str,
        expected: int | None,
        vector: Sequence[float] | None,
        now: float,
    ) -> Memory:
        with self._mutex:
            mine = self._memories.get(user_id)
            old = None if mine is None else mine.memories.get(memory_id)
            if mine is None or old is None:
                raise not_found(memory_id)
            if expected is not None and old.version != expected:
                raise conflict(memory_id, expected, old.version)
            new = dataclasses.replace(old, text=text, updated_at=now, version=old.version + 1)
            mine.put(new, vector, next(self._stamps))
            return new

    async def _delete_memory(self, user_id: str, memory_id: str) -> bool:
        with self._mutex:
            mine = self._memories.get(user_id)
            if mine is None or not mine.forget(memory_id):
                return False
            if not mine.memories:
                del self._memories[user_id]
            return True

    async def _clear_memories(self, user_id: str) -> int:
        with self._mutex:
            mine = self._memories.pop(user_id, None)
            return 0 if mine is None else len(mine.memories)


__all__ = ["InMemoryMemories"]
