"""Session summaries: what fell out of the history window still reaches the model, offline."""

from __future__ import annotations

from tenantry import Agent
from tenantry.memory import MemoryConfig
from tenantry.memory.summaries import fallen_out, since
from tenantry.models.tasks import SUMMARY_CLOSE, SUMMARY_OPEN
from tenantry.storage.base import Store
from tenantry.types import Message, Summary
from tests.memory.conftest import Recording, system_of

WINDOW = 4
SUMMARIES = MemoryConfig(summaries=True, learning=False, recall_limit=0)


async def _long_conversation(agent: Agent, turns: int) -> None:
    await agent.arun("My name is Alice", user_id="alice", session_id="long")
    await agent.aflush()
    for n in range(turns):
        await agent.arun(f"Let us talk about topic {n}", user_id="alice", session_id="long")
        await agent.aflush()


async def test_after_ten_windows_the_model_still_receives_the_first_turn(store: Store) -> None:
    model = Recording()
    agent = Agent(model=model, store=store, history_window=WINDOW, memory=SUMMARIES)
    await _long_conversation(agent, 10 * WINDOW)
    reply = await agent.arun("What's my name?", user_id="alice", session_id="long")
    assert reply.content == "Your name is Alice."
    await agent.aflush()
    prompt = model.chats[-1]
    assert all("My name is Alice" not in m.content for m in prompt if m.role != "system")
    system = system_of(prompt)
    summary = system[system.index(SUMMARY_OPEN) : system.index(SUMMARY_CLOSE)]
    assert "The user's name is Alice." in summary
    assert len(prompt) <= WINDOW + 2  # the system prompt, the window, the new message
    stored = await store.get_summary("alice", "long")
    assert stored is not None
    window = await store.get_messages("alice", "long", limit=WINDOW)
    everything = await store.get_messages("alice", "long")
    assert stored.through_id == everything[-WINDOW - 1].id
    assert stored.through_id not in {m.id for m in window}


async def test_without_summaries_the_start_is_forgotten(store: Store) -> None:
    agent = Agent(model=Recording(), store=store, history_window=WINDOW)
    await _long_conversation(agent, 3 * WINDOW)
    reply = await agent.arun("What's my name?", user_id="alice", session_id="long")
    assert "don't know your name" in reply.content


async def test_no_summary_work_while_the_session_fits_the_window(store: Store) -> None:
    model = Recording()
    agent = Agent(model=model, store=store, history_window=WINDOW, memory=SUMMARIES)
    await agent.arun("hi", user_id="alice")
    await agent.aflush()
    assert model.tasks == []
    assert await store.get_summary("alice") is None


async def test_each_session_has_its_own_summary(store: Store) -> None:
    agent = Agent(model=Recording(), store=store, history_window=2, memory=SUMMARIES)
    for user, name in (("alice", "Alice"), ("bob", "Bob")):
        await agent.arun(f"My name is {name}", user_id=user, session_id="s")
        await agent.arun("filler one", user_id=user, session_id="s")
        await agent.arun("filler two", user_id=user, session_id="s")
    await agent.aflush()
    alice, bob = await store.get_summary("alice", "s"), await store.get_summary("bob", "s")
    assert alice is not None
    assert "Alice" in alice.text
    assert "Bob" not in alice.text
    assert bob is not None
    assert "Bob" in bob.text
    assert "Alice" not in bob.text
    assert await store.get_summary("alice", "other") is None


def test_what_fell_out_excludes_the_window_and_its_leading_replies() -> None:
    messages = [
        Message.user("u1"),
        Message.assistant("a1"),
        Message.user("u2"),
        Message.assistant("a2"),
    ]
    assert [m.content for m in fallen_out(messages, 2)] == ["u1", "a1"]
    assert [m.content for m in fallen_out(messages, 3)] == ["u1", "a1"]  # a1 opens no window
    assert fallen_out(messages, 4) == []
    summary = Summary("s", through_id=messages[0].id, updated_at=0.0)
    assert since(messages, summary) == messages[1:]
    assert since(messages, Summary("s", through_id="gone", updated_at=0.0)) == messages
