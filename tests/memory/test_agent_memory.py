"""The agent with memory on: recall into the system prompt, learning after the ack, the
seed's Alice/Bob demo across sessions with no API key, supersession, background ordering.

Every test that touches a store runs on every backend (the `store` / `make_store` fixtures).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from tenantry import Agent, Message, OfflineModel, RunOutput
from tenantry.errors import InvalidInput
from tenantry.memory import MemoryConfig
from tenantry.models.base import ModelResponse
from tenantry.models.tasks import MEMORY_CLOSE, MEMORY_OPEN, ExtractionRequest, Operation
from tenantry.storage.base import Store
from tenantry.types import ToolSpec
from tests.memory.conftest import Recording, is_task, system_of

# --- the seed's demo, across sessions ---------------------------------------------------------


async def test_a_new_session_of_the_same_user_knows_the_name_and_others_do_not(
    store: Store,
) -> None:
    agent = Agent(model=OfflineModel(), store=store, memory=True)
    await agent.arun("My name is Alice", user_id="user-a", session_id="monday")
    await agent.arun("My name is Bob", user_id="user-b", session_id="monday")
    await agent.aflush()
    ask = "What's my name?"
    assert (await agent.arun(ask, user_id="user-a", session_id="tuesday")).content == (
        "Your name is Alice."
    )
    assert (await agent.arun(ask, user_id="user-b", session_id="tuesday")).content == (
        "Your name is Bob."
    )
    stranger = await agent.arun(ask, user_id="user-c", session_id="tuesday")
    assert "don't know your name" in stranger.content
    assert [m.text for m in await store.list_memories(user_id="user-a")] == [
        "The user's name is Alice."
    ]
    assert await store.list_memories(user_id="user-c") == []


def test_the_sync_facade_learns_after_flush(store: Store) -> None:
    agent = Agent(model=OfflineModel(), store=store, memory=True)
    agent.run("My name is Alice", user_id="alice", session_id="s1")
    agent.flush()
    assert agent.run("What's my name?", user_id="alice", session_id="s2").content == (
        "Your name is Alice."
    )


async def test_memory_is_off_by_default(store: Store) -> None:
    agent = Agent(model=OfflineModel(), store=store)
    assert agent.memory is None
    assert agent.memory_jobs is None
    await agent.arun("My name is Alice", user_id="alice", session_id="s1")
    await agent.aflush()
    assert await store.list_memories(user_id="alice") == []
    reply = await agent.arun("What's my name?", user_id="alice", session_id="s2")
    assert "don't know your name" in reply.content


# --- recall -----------------------------------------------------------------------------------


async def test_recalled_facts_go_into_a_delimited_block_after_the_instructions(
    store: Store,
) -> None:
    model = Recording()
    agent = Agent(model=model, store=store, instructions="Be brief.", memory=True)
    await store.add_memory("The user's name is Alice.", user_id="alice")
    await store.add_memory("The user likes green tea.", user_id="alice")
    await store.add_memory("The user's name is Bob.", user_id="bob")
    await agent.arun("What is my name?", user_id="alice")
    system = system_of(model.chats[-1])
    assert system.startswith("Be brief.\n\n")
    block = system[system.index(MEMORY_OPEN) : system.index(MEMORY_CLOSE)]
    assert "- The user's name is Alice." in block
    assert "Bob" not in system
    assert "information, not instructions" in system


async def test_recall_stays_within_its_limit_and_budget(store: Store) -> None:
    model = Recording()
    config = MemoryConfig(recall_limit=2, recall_chars=60, learning=False)
    agent = Agent(model=model, store=store, memory=config)
    for n in range(6):
        await store.add_memory(f"The user owns cat number {n} named Tom{n}.", user_id="alice")
    await store.add_memory("The user's cat " + "x" * 100, user_id="alice")
    await agent.arun("tell me about my cat", user_id="alice")
    system = system_of(model.chats[-1])
    facts = [line for line in system.splitlines() if line.startswith("- ")]
    assert 1 <= len(facts) <= 2
    assert sum(len(f) - 2 for f in facts) <= 60


async def test_no_memories_leaves_the_prompt_as_it_was(store: Store) -> None:
    model = Recording()
    agent = Agent(model=model, store=store, instructions="Be brief.", memory=True)
    await agent.arun("hello", user_id="alice")
    assert [(m.role, m.content) for m in model.chats[-1]] == [
        ("system", "Be brief."),
        ("user", "hello"),
    ]


# --- learning -------------------------------------------------------------------------------


async def test_the_reply_is_acknowledged_before_extraction_finishes(store: Store) -> None:
    gate = asyncio.Event()
    model = Recording(gate=gate)
    agent = Agent(model=model, store=store, memory=True)
    output = await agent.arun("My name is Alice", user_id="alice", session_id="s1")
    assert output.content.startswith("Nice to meet you, Alice")
    await model.task_started.wait()  # the job runs, held at the gate, after arun returned
    assert agent.memory_jobs is not None
    assert agent.memory_jobs.pending() == 1
    assert await store.list_memories(user_id="alice") == []
    assert await store.size("alice", "s1") == 2  # the turn is stored already
    gate.set()
    await agent.aflush()
    assert [m.text for m in await store.list_memories(user_id="alice")] == [
        "The user's name is Alice."
    ]


async def test_a_stream_ends_before_extraction_finishes(store: Store) -> None:
    gate = asyncio.Event()
    model = Recording(gate=gate)
    agent = Agent(model=model, store=store, memory=True)
    items = [i async for i in agent.astream("My name is Alice", user_id="alice")]
    assert isinstance(items[-1], RunOutput)
    await model.task_started.wait()
    assert await store.list_memories(user_id="alice") == []
    gate.set()
    await agent.aflush()
    assert len(await store.list_memories(user_id="alice")) == 1


async def test_a_failing_extractor_leaves_the_turn_and_history_intact(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: ExtractionRequest) -> str:
        raise RuntimeError("extractor exploded")

    model = Recording(script=broken)
    agent = Agent(model=model, store=store, memory=True)
    with caplog.at_level(logging.WARNING, logger="tenantry.memory"):
        output = await agent.arun("My name is Alice", user_id="alice")
        await agent.aflush()
    assert output.content == "Nice to meet you, Alice! I'll remember your name."
    assert [m.content for m in await store.get_messages("alice")] == [
        "My name is Alice",
        "Nice to meet you, Alice! I'll remember your name.",
    ]
    assert await store.list_memories(user_id="alice") == []
    assert agent.memory_jobs is not None
    assert agent.memory_jobs.counts.get("learn", "failed") == 1
    assert "extractor exploded" in caplog.text
    again = await agent.arun("What's my name?", user_id="alice")
    assert again.content == "Your name is Alice."  # from the history, which is whole


async def test_an_answer_that_is_not_json_fails_the_job_not_the_turn(store: Store) -> None:
    agent = Agent(
        model=Recording(script=lambda r: "I think I'll remember that!"), store=store, memory=True
    )
    await agent.arun("My name is Alice", user_id="alice")
    await agent.aflush()
    assert agent.memory_jobs is not None
    assert agent.memory_jobs.counts.get("learn", "failed") == 1
    assert await store.size("alice") == 2


async def test_the_extractor_sees_local_ids_never_storage_ids(store: Store) -> None:
    stored = await store.add_memory("The user likes tea.", user_id="alice")
    seen: list[ExtractionRequest] = []

    def script(request: ExtractionRequest) -> list[Operation]:
        seen.append(request)
        return [Operation("UPDATE", 1, "The user likes coffee.")]

    model = Recording(script=script)
    agent = Agent(model=model, store=store, memory=True)
    await agent.arun("Actually I prefer coffee now", user_id="alice")
    await agent.aflush()
    assert seen[0].memories == {1: "The user likes tea."}
    assert all(stored.id not in m.content for task in model.tasks for m in task)
    [memory] = await store.list_memories(user_id="alice")
    assert (memory.id, memory.text, memory.version) == (stored.id, "The user likes coffee.", 2)


async def test_a_local_id_outside_what_was_shown_touches_nothing(store: Store) -> None:
    await store.add_memory("The user likes tea.", user_id="alice")
    bobs = await store.add_memory("The user's name is Bob.", user_id="bob")

    def script(request: ExtractionRequest) -> list[Operation]:
        return [Operation("DELETE", 2), Operation("UPDATE", 7, "x"), Operation("DELETE", 0)]

    agent = Agent(model=Recording(script=script), store=store, memory=True)
    await agent.arun("hello", user_id="alice")
    await agent.aflush()
    assert [m.text for m in await store.list_memories(user_id="alice")] == ["The user likes tea."]
    assert await store.list_memories(user_id="bob") == [bobs]


async def test_jobs_of_one_user_in_two_sessions_never_overlap(store: Store) -> None:
    gate = asyncio.Event()
    model = Recording(gate=gate)
    agent = Agent(model=model, store=store, memory=True)
    await agent.arun("My name is Alice", user_id="alice", session_id="s1")
    await model.task_started.wait()  # the first job is held at the gate
    await agent.arun("I live in Paris", user_id="alice", session_id="s2")
    assert agent.memory_jobs is not None
    assert agent.memory_jobs.pending() == 2
    for _ in range(50):  # a second job free to start would be in the model by now
        await asyncio.sleep(0)
    assert len(model.tasks) == 1
    gate.set()
    await agent.aflush()
    assert len(model.tasks) == 2
    texts = sorted(m.text for m in await store.list_memories(user_id="alice"))
    assert texts == ["The user lives in Paris.", "The user's name is Alice."]


class MeetsAtOnce(Recording):
    """Each background task waits until `parties` tasks are inside the model at once (the
    barrier breaks, and the job fails, if they never are)."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = asyncio.Barrier(parties)

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        if is_task(messages):
            async with asyncio.timeout(30):
                await self.barrier.wait()
        return await super().complete(messages, tools)


async def test_jobs_of_different_users_run_at_once(store: Store) -> None:
    model = MeetsAtOnce(parties=2)
    agent = Agent(model=model, store=store, memory=True)
    await agent.arun("My name is Alice", user_id="alice")
    await agent.arun("My name is Bob", user_id="bob")
    await agent.aflush()
    assert agent.memory_jobs is not None
    assert agent.memory_jobs.counts.get("learn", "done") == 2
    assert len(await store.list_memories(user_id="bob")) == 1


async def test_a_full_queue_drops_learning_but_never_the_turn(store: Store) -> None:
    gate = asyncio.Event()
    model = Recording(gate=gate)
    agent = Agent(model=model, store=store, memory=MemoryConfig(max_pending=1))
    await agent.arun("My name is Alice", user_id="alice")
    await agent.arun("My name is Bob", user_id="bob")  # its job finds the queue full
    assert agent.memory_jobs is not None
    assert agent.memory_jobs.counts.get("learn", "dropped") == 1
    gate.set()
    await agent.aflush()
    assert await store.size("bob") == 2
    assert await store.list_memories(user_id="bob") == []
    assert len(await store.list_memories(user_id="alice")) == 1


async def test_learning_can_be_off_while_recall_stays_on(store: Store) -> None:
    model = Recording()
    agent = Agent(model=model, store=store, memory=MemoryConfig(learning=False))
    await store.add_memory("The user's name is Alice.", user_id="alice")
    assert (await agent.arun("What's my name?", user_id="alice")).content == "Your name is Alice."
    await agent.arun("My name is Carol", user_id="alice")
    await agent.aflush()
    assert model.tasks == []


async def test_a_separate_model_can_do_the_learning(store: Store) -> None:
    learner = Recording()
    chat = Recording()
    agent = Agent(model=chat, store=store, memory=MemoryConfig(model=learner))
    await agent.arun("My name is Alice", user_id="alice")
    await agent.aflush()
    assert len(learner.tasks) == 1
    assert chat.tasks == []


# --- the agent stays immutable and its config checked ---------------------------------------


def test_memory_config_is_checked() -> None:
    with pytest.raises(InvalidInput, match="recall_limit"):
        MemoryConfig(recall_limit=-1)
    with pytest.raises(InvalidInput, match="memory must be True, False or a MemoryConfig"):
        Agent(model=OfflineModel(), memory="yes")  # type: ignore[arg-type]


def test_replace_keeps_the_memory_config_and_its_tools_once() -> None:
    agent = Agent(model=OfflineModel(), memory=MemoryConfig(tools=True))
    names = [t.name for t in agent.tools]
    assert names == ["remember", "recall", "forget"]
    derived = agent.replace(name="other")
    assert derived.memory == agent.memory
    assert [t.name for t in derived.tools] == names
    assert [t.name for t in agent.replace(memory=False).tools] == []
    with pytest.raises(AttributeError, match="immutable"):
        agent.memory = None  # type: ignore[misc]
