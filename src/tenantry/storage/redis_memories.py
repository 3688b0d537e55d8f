"""`RedisMemories`: the memories of `RedisStore`, in four keys per user.

Keys (the user id percent-encoded, as in every key of the store; on Redis Cluster it is the
keys' hash tag, `{prefix}:memories:{{user}}`, so a user's memories share the user's slot):

    {prefix}:memories:{user}      hash  id -> the memory as JSON (times as text: exact)
    {prefix}:memorder:{user}      zset  id -> stamp, the user's count of memory writes at its
                                        last write: listing, the cap, the order of ties
    {prefix}:memterms:{user}      hash  id -> "id stamp token token ...", what search reads
    {prefix}:memvectors:{user}    hash  id -> the vector, float32 bytes
    {prefix}:memory_users         set of the users that have had memories, for clear_all
                                  (on Redis Cluster one bucket per slot, see `redis_keys`)

Every write is one Lua script (`redis_lua`) over the user's four keys only — add with its
cap, compare-and-swap update, delete, clear — so it is atomic and one user's memory call
never touches another user's keys (nor needs KEYS or SCAN). The one exception is the user's
first memory, after which the user is added to `memory_users` (one SADD), so that clear_all
can find users who have memories but no session.

Search: BM25 in process over the user's own terms hash (its values joined into one reply
by a script: ids and tokens, not texts), then one HMGET of the best memories. Its cost is
that user's memory count, never anyone else's; semantic search reads the user's vectors
hash, O(memories x dimensions).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tenantry.storage.codec import encode_vector
from tenantry.storage.memories import conflict, not_found
from tenantry.storage.redis_client import RedisParts
from tenantry.storage.search import bm25, tokens
from tenantry.types import Memory

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class MemoryKeys:
    """The keys of one user's memories (see the module's docstring)."""

    memories: str
    order: str
    terms: str
    vectors: str

    def all(self) -> list[str]:
        return [self.memories, self.order, self.terms, self.vectors]


def _encode(memory: Memory) -> str:
    data = {
        "text": memory.text,
        "created_at": repr(memory.created_at),
        "updated_at": repr(memory.updated_at),
        "version": memory.version,
        "session_id": memory.session_id,
        "run_id": memory.run_id,
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _decode(memory_id: str, user_id: str, doc: bytes | str) -> Memory:
    data = json.loads(doc)
    return Memory(
        memory_id,
        user_id,
        data["text"],
        float(data["created_at"]),
        float(data["updated_at"]),
        int(data["version"]),
        data["session_id"],
        data["run_id"],
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisMemories(RedisParts[P]):
    """The memory primitives of `RedisStore`, on its client and scripts."""

    @abstractmethod
    def _memory_keys(self, user_id: str) -> MemoryKeys: ...

    @abstractmethod
    def _registry_key(self, user_id: str) -> str:
        """Give the key of the `memory_users` bucket that lists the user."""

    @abstractmethod
    async def _registered_users(self) -> list[str]:
        """Give every user in the `memory_users` registry (all its buckets)."""

    async def _call(self, name: str, user_id: str, args: list[Any]) -> Any:
        keys = self._memory_keys(user_id).all()
        return await self._run(lambda: self._script(name, keys, args))

    async def _add_memory(self, memory: Memory, vector: Sequence[float] | None) -> None:
        args: list[Any] = [
            memory.id,
            _encode(memory),
            " ".join(tokens(memory.text)),
            b"" if vector is None else encode_vector(vector),
            self._max_memories or 0,
        ]
        stamp = await self._call("add_memory", memory.user_id, args)
        if int(stamp) == 1:
            user = memory.user_id
            await self._run(lambda: self._ready().sadd(self._registry_key(user), user))

    async def _memories_by_id(self, user_id: str, memory_ids: Sequence[str]) -> list[Memory]:
        key = self._memory_keys(user_id).memories
        docs = await self._run(lambda: self._ready().hmget(key, list(memory_ids)))
        return [_decode(i, user_id, doc) for i, doc in zip(memory_ids, docs, strict=True) if doc]

    async def _list_memories(self, user_id: str, limit: int | None) -> list[Memory]:
        ids, docs = await self._call("list_memories", user_id, [-1 if limit is None else limit - 1])
        return [_decode(_text(i), user_id, doc) for i, doc in zip(ids, docs, strict=True) if doc]

    async def _search_memories(
        self, user_id: str, terms: Sequence[str], limit: int
    ) -> list[Memory]:
        stored = _text(await self._call("memory_terms", user_id, []))
        documents = []
        for value in stored.split("\n") if stored else ():
            memory_id, stamp, *words = value.split(" ")
            documents.append((int(stamp), memory_id, words))
        documents.sort()  # least recently updated first: ties go to the more recent
        best = bm25(terms, {memory_id: words for _, memory_id, words in documents}, limit)
        if not best:
            return []
        found = {m.id: m for m in await self._memories_by_id(user_id, best)}
        return [found[i] for i in best if i in found]

    async def _memory_vectors(self, user_id: str) -> list[tuple[str, bytes]]:
        keys = self._memory_keys(user_id)

        async def read() -> list[Any]:
            async with self._ready().pipeline(transaction=True) as pipe:
                pipe.hgetall(keys.vectors)
                pipe.zrange(keys.order, 0, -1)
                return list(await pipe.execute())

        vectors, order = await self._run(read)
        return [(_text(i), vectors[i]) for i in order if i in vectors]

    async def _update_memory(
        self,
        user_id: str,
        memory_id: str,
        text: str,
        expected: int | None,
        vector: Sequence[float] | None,
        now: float,
    ) -> Memory:
        args: list[Any] = [
            memory_id,
            "" if expected is None else expected,
            text,
            repr(now),
            " ".join(tokens(text)),
            b"" if vector is None else encode_vector(vector),
        ]
        outcome, *detail = await self._call("update_memory", user_id, args)
        if outcome == 0:
            raise not_found(memory_id)
        if outcome == -1:
            assert expected is not None
            raise conflict(memory_id, expected, int(detail[0]))
        return _decode(memory_id, user_id, detail[0])

    async def _delete_memory(self, user_id: str, memory_id: str) -> bool:
        return bool(await self._call("delete_memory", user_id, [memory_id]))

    async def _clear_memories(self, user_id: str) -> int:
        return int(await self._call("clear_memories", user_id, []))

    async def _forget_user(self, user_id: str) -> None:
        """Delete the user's memories and take the user out of the registry."""
        await self._clear_memories(user_id)
        await self._run(lambda: self._ready().srem(self._registry_key(user_id), user_id))

    async def _forget_every_user(self) -> None:
        """Delete the memories of every user in the registry (one at a time: a user who gets
        a first memory meanwhile is registered again, not lost)."""
        for user in await self._registered_users():
            await self._forget_user(user)


__all__ = ["MemoryKeys", "RedisMemories"]
