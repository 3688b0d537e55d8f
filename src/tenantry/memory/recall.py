"""Recall: the user's memories most relevant to what they just said, within a budget."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tenantry.memory.config import MemoryConfig
from tenantry.models.embeddings import Embedder
from tenantry.storage.base import Store
from tenantry.types import Memory

logger = logging.getLogger("tenantry.memory")

MAX_QUERY_CHARS = 1000
"""Characters of a message searched with: a long message costs no more to recall for."""


async def embed_one(embedder: Embedder | None, text: str) -> list[float] | None:
    """Give `text`'s vector, or None without an embedder or when it fails (keyword search
    then ranks alone; a failing embedder never fails a turn)."""
    if embedder is None:
        return None
    try:
        return (await embedder.embed([text]))[0]
    except Exception as exc:
        logger.warning("embedder %s failed (%s); keyword search only", embedder.name, exc)
        return None


def within(memories: Sequence[Memory], limit: int, chars: int) -> list[Memory]:
    """Give the first memories (best first) that fit: at most `limit`, `chars` in all; one
    too long to fit is skipped so shorter ones after it still can."""
    kept: list[Memory] = []
    used = 0
    for memory in memories:
        if len(kept) == limit:
            break
        if used + len(memory.text) <= chars:
            kept.append(memory)
            used += len(memory.text)
    return kept


async def recall(store: Store, config: MemoryConfig, user_id: str, query: str) -> list[Memory]:
    """Give the user's memories to put in the system prompt for `query`, best first."""
    if config.recall_limit == 0 or config.recall_chars == 0 or not query.strip():
        return []
    query = query[:MAX_QUERY_CHARS]
    embedding = await embed_one(config.embedder, query)
    found = await store.search_memories(
        query, user_id=user_id, limit=config.recall_limit, embedding=embedding
    )
    return within(found, config.recall_limit, config.recall_chars)


__all__ = ["MAX_QUERY_CHARS", "embed_one", "recall", "within"]
