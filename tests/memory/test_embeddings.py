"""Memory with an embedder: learned memories are stored with their vectors and recall ranks
by meaning; an embedder that fails leaves keyword search, never a failed turn."""

from __future__ import annotations

from collections.abc import Sequence

from tenantry import Agent
from tenantry.memory import MemoryConfig
from tenantry.models.tasks import MEMORY_OPEN
from tenantry.storage.base import Store
from tests.memory.conftest import Recording, system_of

TOPICS = ("drink", "pet", "city")
WORDS = {
    "drink": ("tea", "coffee", "beverage", "drink"),
    "pet": ("cat", "dog", "pet", "animal"),
    "city": ("paris", "berlin", "city", "live"),
}


class TopicEmbedder:
    """Embeds a text as how many words of each topic it holds: "beverage" lands next to
    "tea" although they share no word."""

    name = "topics"
    dimensions = len(TOPICS)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            words = text.casefold().replace(".", " ").replace("?", " ").split()
            vector = [float(sum(w in WORDS[t] for w in words)) for t in TOPICS]
            vectors.append([v + 0.01 for v in vector])
        return vectors


class BrokenEmbedder:
    name = "broken"
    dimensions = 3

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise ConnectionError("embeddings API down")


async def test_recall_by_meaning_with_an_embedder(store: Store) -> None:
    model = Recording()
    config = MemoryConfig(embedder=TopicEmbedder(), recall_limit=1)
    agent = Agent(model=model, store=store, memory=config)
    await agent.arun("My name is Alice", user_id="alice", session_id="s1")
    await agent.arun("I live in Paris", user_id="alice", session_id="s1")
    await agent.aflush()
    question = "Which city is my home?"  # no word in common with the memory
    assert await store.search_memories(question, user_id="alice") == []
    await agent.arun(question, user_id="alice", session_id="s2")
    system = system_of(model.chats[-1])
    assert MEMORY_OPEN in system
    assert "- The user lives in Paris." in system
    assert "Alice" not in system  # recall_limit=1: the nearest only


async def test_a_failing_embedder_leaves_keyword_search(store: Store) -> None:
    model = Recording()
    agent = Agent(model=model, store=store, memory=MemoryConfig(embedder=BrokenEmbedder()))
    await agent.arun("My name is Alice", user_id="alice", session_id="s1")
    await agent.aflush()
    assert [m.text for m in await store.list_memories(user_id="alice")] == [
        "The user's name is Alice."
    ]
    reply = await agent.arun("What's my name?", user_id="alice", session_id="s2")
    assert reply.content == "Your name is Alice."
