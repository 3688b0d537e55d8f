"""`tenantry serve`, serving an agent with a tool that counts the turns in session state.

    python -m tests.support.reliability.counting_server [tenantry serve options]

This runs the real `tenantry serve` command (settings from flags and TENANTRY_*, logging,
uvicorn, the app's lifespan, the store opened from --store); the only difference is the agent
it serves. `tenantry serve` has no option to name an agent, so this swaps the factory that
builds the default one for `counting_agent`.

Each turn of the counting agent is: the user message, an assistant message calling
`count_turn`, the tool's result (the session's new turn count) and the reply
`"turn {count}: {message}"`. The tool adds one to `state["turns"]`, which the agent stores in
the same atomic write as the turn's messages, so a session's state must always equal the
number of its stored turns, and each reply says where its turn sits in the session.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from tenantry import Agent, FunctionModel, RunContext
from tenantry.models.base import ModelResponse
from tenantry.server.config import ServerSettings
from tenantry.storage.url import open_store
from tenantry.types import Message, ToolCall, ToolSpec

STATE_KEY = "turns"
TOOL_NAME = "count_turn"


async def count_turn(ctx: RunContext) -> str:
    """Count this turn in the session's state; give the new count."""
    ctx.state[STATE_KEY] = int(ctx.state.get(STATE_KEY, 0)) + 1
    return str(ctx.state[STATE_KEY])


def reply_text(count: int | str, message: str) -> str:
    """What the counting agent answers to `message`, the session's turn number `count`."""
    return f"turn {count}: {message}"


async def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
    """Call the tool once per turn, then reply with the count it gave."""
    await asyncio.sleep(0)  # let other turns run between the model's steps, as a real one would
    last = messages[-1]
    if last.role == "user":
        return ModelResponse(tool_calls=(ToolCall(id="count", name=TOOL_NAME),))
    asked = next(m.content for m in reversed(messages) if m.role == "user")
    return ModelResponse(content=reply_text(last.content, asked))


def counting_agent(settings: ServerSettings) -> Agent:
    """The agent `tenantry serve` builds here instead of its default one."""
    return Agent(
        name="counting",
        model=FunctionModel(answer, name="counting"),
        store=open_store(settings.store_url),
        tools=[count_turn],
    )


def main(argv: list[str]) -> None:
    import tenantry.server.app as server_app
    from tenantry.cli import app

    if not hasattr(server_app, "_default_agent"):
        raise SystemExit("tenantry.server.app._default_agent is gone; update counting_server")
    server_app._default_agent = counting_agent  # type: ignore[attr-defined]
    app(["serve", *argv], prog_name="tenantry")


if __name__ == "__main__":
    main(sys.argv[1:])
