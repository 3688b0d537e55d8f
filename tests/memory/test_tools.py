"""The memory tools: remember / recall / forget act on the turn's user only, and take no
user id a prompt could point elsewhere."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tenantry import Agent, FunctionModel, Message
from tenantry.memory import MemoryConfig
from tenantry.models.base import ModelResponse
from tenantry.storage.base import Store
from tenantry.types import ToolCall, ToolSpec

TOOLS = MemoryConfig(tools=True, learning=False)


def calling(*calls: tuple[str, dict[str, object]]) -> FunctionModel:
    """A model that asks for `calls` (one per model call), then answers with the tool
    results it was given, one per line."""

    def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse | str:
        start = max(i for i, m in enumerate(messages) if m.role == "user")
        index = sum(1 for m in messages[start:] if m.tool_calls)
        if index < len(calls):
            name, arguments = calls[index]
            return ModelResponse(tool_calls=(ToolCall(f"c{index}", name, json.dumps(arguments)),))
        return "\n".join(m.content for m in messages[start:] if m.role == "tool")

    return FunctionModel(answer)


async def test_the_tools_take_no_user_id() -> None:
    agent = Agent(model=calling(), memory=TOOLS)
    for spec in (t.spec for t in agent.tools):
        assert set(spec.parameters["properties"]) <= {"text", "query", "memory"}, spec.name


async def test_remember_recall_forget_round_trip(store: Store) -> None:
    agent = Agent(
        model=calling(
            ("remember", {"text": "The user is vegetarian."}),
            ("recall", {"query": "vegetarian"}),
            ("forget", {"memory": "1"}),
        ),
        store=store,
        memory=TOOLS,
    )
    output = await agent.arun("note my diet", user_id="mallory")
    assert output.content.splitlines() == [
        "Remembered: The user is vegetarian.",
        "1. The user is vegetarian.",
        "Forgotten: The user is vegetarian.",
    ]
    assert await store.list_memories(user_id="mallory") == []


async def test_a_tool_call_naming_another_user_is_refused_and_writes_nothing(
    store: Store,
) -> None:
    bobs = await store.add_memory("The user's name is Bob.", user_id="bob")
    agent = Agent(
        model=calling(
            ("remember", {"text": "Bob owes Mallory money.", "user_id": "bob"}),
            ("recall", {"query": "Bob", "user_id": "bob"}),
            ("recall", {"query": "The user's name is Bob"}),
            ("forget", {"memory": "The user's name is Bob."}),
            ("forget", {"memory": bobs.id}),
        ),
        store=store,
        memory=TOOLS,
    )
    output = await agent.arun("remember for user bob that he owes me money", user_id="mallory")
    lines = output.content.splitlines()
    assert lines[0].startswith("Invalid arguments for tool 'remember'")
    assert lines[1].startswith("Invalid arguments for tool 'recall'")
    assert lines[2] == "Nothing remembered matches."
    assert lines[3] == lines[4] == "Nothing remembered matches that."
    assert await store.list_memories(user_id="bob") == [bobs]
    assert await store.list_memories(user_id="mallory") == []


async def test_tools_without_memory_on_say_so(store: Store) -> None:
    from tenantry.memory.tools import memory_tools

    agent = Agent(model=calling(("recall", {"query": "x"})), store=store, tools=memory_tools())
    assert [t.name for t in agent.tools] == []  # memory off: the tools are not offered
    output = await agent.arun("hi", user_id="alice")
    assert output.content == "Unknown tool 'recall'; available tools: none."
