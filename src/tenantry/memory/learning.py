"""Learning: after a turn was acknowledged, ask the model what to remember about its user.

The model is shown the user's memories most relevant to the turn under local ids 1, 2, 3 ...
(never storage ids; the job maps them back) and answers with ADD / UPDATE / DELETE
operations (`tenantry.models.tasks`). An UPDATE is a compare-and-swap on the version the
model was shown: if another writer changed or deleted that memory meanwhile (another replica's
job, a memory tool, the API), the job starts again from a fresh read, up to
`MemoryConfig.max_attempts` times. Every store call names the turn's user, so nothing the
model answers can reach another user's memories.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from tenantry.errors import InvalidMemory, MemoryConflict, MemoryNotFound
from tenantry.memory.config import MemoryConfig
from tenantry.memory.recall import MAX_QUERY_CHARS, embed_one
from tenantry.models.base import Model
from tenantry.models.tasks import Operation, extraction_messages, parse_operations
from tenantry.storage.base import Store
from tenantry.tenancy import Scope
from tenantry.types import Memory, Message

logger = logging.getLogger("tenantry.memory")


def _query(turn: Sequence[Message]) -> str:
    """The text the turn's relevant memories are searched with: what the user said, then
    the reply (which often restates the fact: "Nice to meet you, Bob")."""
    said = [m.content for m in turn if m.role == "user"]
    reply = [m.content for m in turn if m.role == "assistant" and m.content][-1:]
    return " ".join(said + reply)[:MAX_QUERY_CHARS]


async def candidates(store: Store, config: MemoryConfig, user_id: str, query: str) -> list[Memory]:
    """Give the memories shown to the extraction task: the most relevant to `query`, then
    the most recently updated, at most `config.candidates`."""
    if config.candidates == 0:
        return []
    embedding = await embed_one(config.embedder, query)
    found = await store.search_memories(
        query, user_id=user_id, limit=config.candidates, embedding=embedding
    )
    if len(found) < config.candidates:
        seen = {m.id for m in found}
        recent = await store.list_memories(user_id=user_id, limit=config.candidates)
        found += [m for m in recent if m.id not in seen][: config.candidates - len(found)]
    return found


@dataclass(frozen=True, slots=True)
class LearningJob:
    """One turn to learn from; run it (`await job()`) after the turn was stored."""

    store: Store
    model: Model
    config: MemoryConfig
    scope: Scope
    run_id: str
    turn: tuple[Message, ...]

    async def __call__(self) -> None:
        query = _query(self.turn)
        for attempt in range(1, self.config.max_attempts + 1):
            shown = await candidates(self.store, self.config, self.scope.user_id, query)
            task = extraction_messages(self.turn, [m.text for m in shown])
            answer = await self.model.complete(task)
            operations = parse_operations(answer.content)
            try:
                await self._apply(operations, shown)
                return
            except (MemoryConflict, MemoryNotFound) as exc:
                if attempt == self.config.max_attempts:
                    raise
                logger.debug("a memory changed while learning (%s); trying again", exc)

    async def _apply(self, operations: Sequence[Operation], shown: Sequence[Memory]) -> None:
        """Carry out the model's operations; updates and deletes first (a conflict then stops
        the job before it adds anything), adds last, skipping a text the user already has."""
        alive = dict(enumerate(shown, start=1))
        added: set[str] = set()
        vectors = await self._embed([op.text for op in operations if op.text is not None])
        for op in sorted(operations, key=lambda o: o.op == "ADD"):
            if op.op == "ADD":
                assert op.text is not None
                held = added | {m.text.casefold() for m in alive.values()}
                if op.text.casefold() not in held and await self._add(
                    op.text, vectors.get(op.text)
                ):
                    added.add(op.text.casefold())
                continue
            target = alive.get(op.id) if op.id is not None else None
            if target is None or op.id is None:
                logger.debug("%s of a local id not shown (%s) ignored", op.op, op.id)
            elif op.op == "DELETE":
                await self._delete(target)
                del alive[op.id]
            elif op.text is not None and op.text != target.text:
                alive[op.id] = await self._update(target, op.text, vectors.get(op.text))

    async def _add(self, text: str, embedding: list[float] | None) -> Memory | None:
        try:
            return await self.store.add_memory(
                text,
                user_id=self.scope.user_id,
                session_id=self.scope.session_id,
                run_id=self.run_id,
                embedding=embedding,
            )
        except InvalidMemory as exc:
            logger.info("the model's memory was not stored: %s", exc)
            return None

    async def _update(self, target: Memory, text: str, embedding: list[float] | None) -> Memory:
        """Compare-and-swap `target` to `text`; MemoryConflict if it changed since shown."""
        try:
            return await self.store.update_memory(
                target.id,
                text,
                user_id=self.scope.user_id,
                expected_version=target.version,
                embedding=embedding,
            )
        except InvalidMemory as exc:
            logger.info("the model's memory update was not stored: %s", exc)
            return target

    async def _delete(self, target: Memory) -> None:
        with contextlib.suppress(MemoryNotFound):  # already gone: what the model asked for
            await self.store.delete_memory(target.id, user_id=self.scope.user_id)

    async def _embed(self, texts: Sequence[str]) -> dict[str, list[float]]:
        embedder = self.config.embedder
        if embedder is None or not texts:
            return {}
        try:
            return dict(zip(texts, await embedder.embed(list(texts)), strict=True))
        except Exception as exc:
            logger.warning(
                "embedder %s failed (%s); memories stored without vectors", embedder.name, exc
            )
            return {}


__all__ = ["LearningJob", "candidates"]
