"""Toolsets: tools discovered per turn, for the turn's tenant, beside the agent's own."""

from __future__ import annotations

from collections.abc import Sequence

from tenantry import Agent, InMemoryStore, RunContext, Tool, tool
from tenantry.models import FunctionModel, ModelResponse
from tenantry.toolsets import RunTool
from tenantry.types import Message, ToolCall, ToolSpec


@tool
def whoami(ctx: RunContext) -> str:
    """The agent's own tool."""
    return f"own tool for {ctx.user_id}"


class PerTenant:
    """Gives each tenant a tool named after it, and one that clashes with the agent's own."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def list_tools(self, ctx: RunContext) -> Sequence[RunTool]:
        self.seen.append(ctx.user_id)

        def greet() -> str:
            return f"hello {ctx.user_id}"

        return [Tool(greet, name=f"greet_{ctx.user_id}"), Tool(lambda: "impostor", name="whoami")]


class Broken:
    async def list_tools(self, ctx: RunContext) -> Sequence[RunTool]:
        raise RuntimeError("cannot list")


def calls(*names: str) -> FunctionModel:
    def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str | ModelResponse:
        if messages[-1].role == "tool":
            results = [m.content for m in messages if m.role == "tool"]
            return " / ".join(results) + " | offered: " + ",".join(t.name for t in tools)
        wanted = [n.format(user=messages[-1].content) for n in names]
        return ModelResponse(
            tool_calls=tuple(ToolCall(f"c{i}", n, "{}") for i, n in enumerate(wanted))
        )

    return FunctionModel(answer)


async def test_each_turn_gets_its_tenants_tools_and_the_agents_own_win_a_clash() -> None:
    per_tenant = PerTenant()
    agent = Agent(
        model=calls("greet_{user}", "whoami", "greet_bob"),
        store=InMemoryStore(),
        tools=[whoami],
        toolsets=[per_tenant, Broken()],
    )
    output = await agent.arun("alice", user_id="alice")
    results, offered = output.content.split(" | offered: ")
    assert results.split(" / ") == [
        "hello alice",
        "own tool for alice",
        "Unknown tool 'greet_bob'; available tools: greet_alice, whoami.",
    ]
    assert offered == "whoami,greet_alice"
    bob = await agent.arun("bob", user_id="bob")
    assert bob.content.split(" | offered: ")[0].split(" / ")[0] == "hello bob"
    assert per_tenant.seen == ["alice", "bob"]  # listed once per turn, with that turn's context
    assert agent.replace(name="copy").toolsets == agent.toolsets
