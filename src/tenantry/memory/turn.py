"""`TurnMemory`: one turn's view of its user's long-term memory.

Made per turn by the agent, with the scope of the turn, and handed to the turn's tools in
`RunContext.memory`. Every read and write it does names that scope's user and no other; the
memory tools take no user id, so nothing a prompt says can point them at another user.
Memories are shown to the model under local ids (1, 2, 3 ... in the order this turn first
showed them), never under storage ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tenantry.errors import MemoryNotFound
from tenantry.memory.config import MemoryConfig
from tenantry.memory.recall import MAX_QUERY_CHARS, embed_one
from tenantry.models.tasks import memory_block, summary_block
from tenantry.storage.base import Store
from tenantry.tenancy import Scope
from tenantry.types import Memory, Summary


@dataclass(slots=True)
class TurnMemory:
    """The memories recalled for one turn, the session summary, and what the memory tools
    may do in that turn (for its user only)."""

    store: Store
    config: MemoryConfig
    scope: Scope
    run_id: str
    window: int = 0
    """How many messages of history the turn read (its history window's length)."""
    recalled: list[Memory] = field(default_factory=list)
    summary: Summary | None = None
    _shown: dict[int, Memory] = field(default_factory=dict)

    def system_prompt(self, instructions: str) -> str:
        """Give the turn's system prompt: the instructions, then the facts about the user and
        the summary of what fell out of the window, each in its delimited block."""
        parts = [instructions] if instructions else []
        if self.recalled:
            parts.append(memory_block([m.text for m in self.recalled]))
        if self.summary is not None:
            parts.append(summary_block(self.summary.text))
        return "\n\n".join(parts)

    def _local_id(self, memory: Memory) -> int:
        for local, shown in self._shown.items():
            if shown.id == memory.id:
                self._shown[local] = memory
                return local
        local = len(self._shown) + 1
        self._shown[local] = memory
        return local

    async def remember(self, text: str) -> Memory:
        """Store `text` as a memory of the turn's user."""
        embedding = await embed_one(self.config.embedder, text)
        memory = await self.store.add_memory(
            text,
            user_id=self.scope.user_id,
            session_id=self.scope.session_id,
            run_id=self.run_id,
            embedding=embedding,
        )
        self._local_id(memory)
        return memory

    async def search(self, query: str, limit: int = 5) -> list[tuple[int, Memory]]:
        """Give the user's memories best matching `query`, with their local ids."""
        query = query[:MAX_QUERY_CHARS]
        embedding = await embed_one(self.config.embedder, query)
        found = await self.store.search_memories(
            query, user_id=self.scope.user_id, limit=limit, embedding=embedding
        )
        return [(self._local_id(m), m) for m in found]

    async def forget(self, reference: str) -> Memory | None:
        """Delete a memory of the user: the one with local id `reference` if it is one this
        turn has shown, else the best match for `reference` as text. Give what was deleted."""
        text = reference.strip()
        target = self._shown.get(int(text)) if text.isdigit() else None
        if target is None:
            matches = await self.search(text, limit=1) if text else []
            target = matches[0][1] if matches else None
        if target is None:
            return None
        try:
            await self.store.delete_memory(target.id, user_id=self.scope.user_id)
        except MemoryNotFound:
            return None
        return target


__all__ = ["TurnMemory"]
