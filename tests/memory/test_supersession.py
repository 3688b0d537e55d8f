"""A fact that is updated or contradicted is replaced, not duplicated: with the offline model,
with a scripted FunctionModel, and when two replicas learn for one user at the same time
(compare-and-swap: the loser reads again and retries, nothing is lost)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tenantry import Agent, FunctionModel, Message, OfflineModel
from tenantry.memory import MemoryConfig
from tenantry.models.base import ModelResponse
from tenantry.models.function import AnswerFunction
from tenantry.models.offline import reply_to
from tenantry.models.tasks import (
    Operation,
    operations_json,
    read_extraction,
)
from tenantry.storage.base import Store
from tenantry.types import ToolSpec
from tests.conftest import PERSISTENT, MakeStore
from tests.memory.conftest import Recording


async def _texts(store: Store, user: str) -> list[str]:
    return sorted(m.text for m in await store.list_memories(user_id=user))


async def test_call_me_bob_after_alice_updates_the_name(store: Store) -> None:
    agent = Agent(model=OfflineModel(), store=store, memory=True)
    await agent.arun("My name is Alice", user_id="u", session_id="s1")
    await agent.aflush()
    await agent.arun("Please call me Bob from now on", user_id="u", session_id="s2")
    await agent.aflush()
    [memory] = await store.list_memories(user_id="u")
    assert (memory.text, memory.version) == ("The user's name is Bob.", 2)
    reply = await agent.arun("What's my name?", user_id="u", session_id="s3")
    assert reply.content == "Your name is Bob."


async def test_a_move_replaces_the_old_city(store: Store) -> None:
    agent = Agent(model=OfflineModel(), store=store, memory=True)
    for said in ("My name is Alice", "I live in Paris", "I moved from Paris to Berlin"):
        await agent.arun(said, user_id="u", session_id=said)
        await agent.aflush()
    assert await _texts(store, "u") == ["The user lives in Berlin.", "The user's name is Alice."]
    reply = await agent.arun("Where do I live?", user_id="u", session_id="new")
    assert reply.content == "You live in Berlin."


async def test_forgetting_deletes_the_fact(store: Store) -> None:
    agent = Agent(model=OfflineModel(), store=store, memory=True)
    await agent.arun("My name is Alice and I live in Rome", user_id="u")
    await agent.aflush()
    await agent.arun("Please forget my name", user_id="u", session_id="other")
    await agent.aflush()
    assert await _texts(store, "u") == ["The user lives in Rome."]


def _scripted(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
    """A model that keeps one fact about the drink the user prefers."""
    request = read_extraction(messages)
    if request is None:
        return "ok"
    said = " ".join(content for role, content in request.turn if role == "user")
    drink = next((d for d in ("tea", "coffee", "water") if d in said), None)
    if drink is None:
        return operations_json([])
    fact = f"The user drinks {drink}."
    same = [i for i, text in request.memories.items() if text.startswith("The user drinks")]
    if "no longer" in said and same:
        return operations_json([Operation("DELETE", same[0])])
    op = Operation("UPDATE", same[0], fact) if same else Operation("ADD", text=fact)
    return operations_json([op])


async def test_a_scripted_model_updates_and_deletes_instead_of_piling_up(store: Store) -> None:
    agent = Agent(model=FunctionModel(_scripted), store=store, memory=True)
    for said in ("I drink tea", "I switched to coffee", "coffee, always coffee"):
        await agent.arun(said, user_id="u", session_id=said)
        await agent.aflush()
    [memory] = await store.list_memories(user_id="u")
    assert (memory.text, memory.version) == ("The user drinks coffee.", 2)
    await agent.arun("I no longer drink coffee", user_id="u")
    await agent.aflush()
    assert await store.list_memories(user_id="u") == []


async def test_two_replicas_learning_for_one_user_at_once_lose_no_update(
    make_store: MakeStore, backend: str
) -> None:
    """Two agents (replicas, each with its own job queue; on a persistent backend each with
    its own store object over the same data) learn from two sessions of the same user at the same
    time. Both read version 1 of the fact and both answer UPDATE; the store's compare-and-swap
    lets one win, the other gets MemoryConflict, reads again (now seeing the winner's text)
    and updates on top of it: one fact, version 3, both updates applied in turn."""
    store = make_store()
    seed = await store.add_memory("The user's drinks: none.", user_id="u")
    both_read = asyncio.Barrier(2)
    shown: list[dict[int, str]] = []

    def make_script(drink: str) -> AnswerFunction:
        async def script(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
            request = read_extraction(messages)
            if request is None:
                return reply_to(messages)
            shown.append(dict(request.memories))
            if len(shown) <= 2:
                await both_read.wait()  # both jobs hold version 1 before either writes
            current = request.memories[1].removesuffix(".")
            new = f"{current.replace(': none', ':')} {drink}."
            return operations_json([Operation("UPDATE", 1, new)])

        return script

    replica_a = Agent(model=FunctionModel(make_script("tea")), store=store, memory=True)
    other = make_store() if backend in PERSISTENT else store
    replica_b = Agent(model=FunctionModel(make_script("coffee")), store=other, memory=True)
    await asyncio.gather(
        replica_a.arun("I like tea", user_id="u", session_id="kitchen"),
        replica_b.arun("I like coffee", user_id="u", session_id="office"),
    )
    await asyncio.gather(replica_a.aflush(), replica_b.aflush())
    [memory] = await store.list_memories(user_id="u")
    assert memory.id == seed.id
    assert memory.version == 3
    assert memory.text in ("The user's drinks: tea coffee.", "The user's drinks: coffee tea.")
    assert len(shown) == 3  # the loser read again
    assert shown[2][1] != "The user's drinks: none."
    jobs = [replica_a.memory_jobs, replica_b.memory_jobs]
    assert sum(j.counts.get("learn", "done") for j in jobs if j) == 2


async def test_conflicts_past_max_attempts_fail_the_job_and_leave_the_winner(
    store: Store,
) -> None:
    """A memory that changes under every attempt: the job gives up after max_attempts,
    counted as failed; what the other writer stored stays."""
    target = await store.add_memory("The user is 30.", user_id="u")

    state = {"n": 0}

    class Interfering(Recording):
        """Another writer changes the memory each time after the job read it."""

        async def complete(
            self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
        ) -> ModelResponse:
            if read_extraction(messages) is None:
                return await super().complete(messages, tools)
            state["n"] += 1
            latest = await store.get_memory(target.id, user_id="u")
            changed = f"The user is {30 + state['n']}."
            await store.update_memory(
                target.id, changed, user_id="u", expected_version=latest.version
            )
            return ModelResponse(operations_json([Operation("UPDATE", 1, "The user is 99.")]))

    agent = Agent(model=Interfering(), store=store, memory=MemoryConfig(max_attempts=2))
    await agent.arun("I am 99", user_id="u")
    await agent.aflush()
    assert state["n"] == 2
    assert agent.memory_jobs is not None
    assert agent.memory_jobs.counts.get("learn", "failed") == 1
    assert (await store.get_memory(target.id, user_id="u")).text == "The user is 32."
