"""The memory tools (`MemoryConfig(tools=True)`): remember, recall and forget.

None of them takes a user id: each acts on the memories of the user whose turn it runs in,
which it gets from its `RunContext` (`ctx.memory`, a `TurnMemory` made for that turn). A model
told "remember for user bob that ..." can only write to the current user's memories.
"""

from __future__ import annotations

import functools

from tenantry.errors import InvalidMemory
from tenantry.memory.turn import TurnMemory
from tenantry.tools import RunContext, Tool

_OFF = "Long-term memory is off for this agent."


def _memory_of(ctx: RunContext) -> TurnMemory | None:
    memory = ctx.memory
    return memory if isinstance(memory, TurnMemory) else None


async def remember(ctx: RunContext, text: str) -> str:
    """Remember a durable fact about the user you are talking to, for later conversations.

    Args:
        text: The fact, as one short sentence about the user, e.g. "The user is vegetarian."
    """
    memory = _memory_of(ctx)
    if memory is None:
        return _OFF
    try:
        await memory.remember(text)
    except InvalidMemory as exc:
        return f"Not remembered: {exc}"
    return f"Remembered: {text.strip()}"


async def recall(ctx: RunContext, query: str) -> str:
    """Search what is remembered about the user you are talking to.

    Args:
        query: What to look for, e.g. "diet" or "where the user lives".
    """
    memory = _memory_of(ctx)
    if memory is None:
        return _OFF
    found = await memory.search(query)
    if not found:
        return "Nothing remembered matches."
    return "\n".join(f"{local}. {m.text}" for local, m in found)


async def forget(ctx: RunContext, memory: str) -> str:
    """Forget one thing remembered about the user you are talking to.

    Args:
        memory: The number recall gave the memory, or its text.
    """
    turn = _memory_of(ctx)
    if turn is None:
        return _OFF
    forgotten = await turn.forget(memory)
    return f"Forgotten: {forgotten.text}" if forgotten else "Nothing remembered matches that."


def is_memory_tool(candidate: Tool) -> bool:
    """Tell whether `candidate` is one of the memory tools."""
    return candidate.function in (remember, recall, forget)


@functools.cache
def memory_tools() -> tuple[Tool, ...]:
    """Give the three tools, shared by every agent (they hold nothing but code); built on
    first use, since building a tool's schema costs a few milliseconds."""
    return (Tool(remember), Tool(recall), Tool(forget))


__all__ = ["forget", "is_memory_tool", "memory_tools", "recall", "remember"]
