"""MCPTools against a real MCP server started by the test, built with the same SDK
(tests/support/mcp_server.py): its `whoami` tool echoes the identity it received.

The model is a FunctionModel scripted to call the tool with the user's message as the note,
then to answer with what the tool said, so each reply shows who the server thought called."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tenantry import Agent, InMemoryStore, tool
from tenantry.errors import InvalidInput, ToolsetUnavailable
from tenantry.mcp import MCPTools
from tenantry.models import FunctionModel, ModelResponse
from tenantry.tenancy import Scope
from tenantry.tools import RunContext
from tenantry.types import Message, ToolCall, ToolSpec
from tests.support.mcp_server import ROOT, EchoServer, http_server_process
from tests.support.servers import free_port, serve


def calling(name: str, **arguments: Any) -> FunctionModel:
    """A model that calls `name` once (the user's text as `note` unless given), then answers
    with the tool's result, and records the tool names it was offered."""

    def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str | ModelResponse:
        offered.append([t.name for t in tools])
        last = messages[-1]
        if last.role == "tool":
            return last.content
        args = arguments or {"note": last.content}
        return ModelResponse(tool_calls=(ToolCall("call-1", name, json.dumps(args)),))

    offered: list[list[str]] = []
    model = FunctionModel(answer)
    model.offered = offered  # type: ignore[attr-defined]
    return model


def tenant_header(ctx: RunContext) -> dict[str, str]:
    return {"X-Tenant": f"token-of-{ctx.user_id}"}


@pytest.fixture
def echo() -> Iterator[tuple[EchoServer, str]]:
    server = EchoServer()
    with serve(server.app()) as url:
        yield server, f"{url}/mcp"


async def test_the_servers_tools_are_offered_with_their_schemas_and_called_as_the_tenant(
    echo: tuple[EchoServer, str],
) -> None:
    server, url = echo

    @tool
    def local_tool() -> str:
        """A plain Python tool beside the MCP ones."""
        return "local"

    async with MCPTools(url=url, headers=tenant_header) as mcp:
        model = calling("whoami")
        agent = Agent(model=model, store=InMemoryStore(), tools=[local_tool], toolsets=[mcp])
        output = await agent.arun("hello", user_id="alice")
        listed = await mcp.list_tools(RunContext(Scope.of("alice"), "run-x", {}))

    identity, note, _pid = output.content.split("|")
    assert (identity, note) == ("token-of-alice", "hello")
    assert server.calls == [("token-of-alice", "hello")]
    assert model.offered[0] == ["local_tool", "whoami", "fail", "slow"]  # type: ignore[attr-defined]
    whoami = next(t for t in listed if t.name == "whoami")
    assert whoami.spec.description == "Say who is calling, as the server sees it."
    assert whoami.spec.parameters["properties"]["note"]["type"] == "string"


@pytest.mark.slow
async def test_1000_concurrent_turns_over_100_tenants_each_call_carries_its_own_identity() -> None:
    with http_server_process() as url:
        # fewer connections than tenants: connections are closed and reopened under load, and
        # turns wait for a free one (for longer than the default 30 s on a loaded CI machine)
        mcp = MCPTools(url=url, headers=tenant_header, max_connections=50, timeout=180)
        async with mcp:
            agent = Agent(model=calling("whoami"), store=InMemoryStore(), toolsets=[mcp])
            most_open = 0
            pool_done = asyncio.Event()

            async def watch_pool() -> None:
                nonlocal most_open
                while not pool_done.is_set():
                    most_open = max(most_open, len(mcp._pool().connections))
                    await asyncio.sleep(0.005)

            watcher = asyncio.create_task(watch_pool())
            outputs = await asyncio.gather(
                *(
                    agent.arun(f"user-{i % 100}", user_id=f"user-{i % 100}", session_id=f"s{i}")
                    for i in range(1000)
                )
            )
            pool_done.set()
            await watcher
    assert len(outputs) == 1000
    for output in outputs:
        identity, note, _pid = output.content.split("|")
        assert note == output.user_id  # the turn really was this tenant's
        assert identity == f"token-of-{output.user_id}"  # and the server saw this tenant
    assert {o.user_id for o in outputs} == {f"user-{n}" for n in range(100)}
    assert 0 < most_open <= 50


async def test_an_error_result_is_a_tool_error_text_and_the_turn_completes(
    echo: tuple[EchoServer, str],
) -> None:
    _, url = echo
    store = InMemoryStore()
    async with MCPTools(url=url, headers=tenant_header) as mcp:
        agent = Agent(model=calling("fail", reason="x"), store=store, toolsets=[mcp])
        output = await agent.arun("do it", user_id="alice")
    assert output.content.startswith("Tool 'fail' reported an error:")
    assert await store.size("alice") == 4


async def test_a_server_that_is_down_gives_no_tools_and_the_turn_completes() -> None:
    model = calling("whoami")
    down = MCPTools(url=f"http://127.0.0.1:{free_port()}/mcp", timeout=5)
    agent = Agent(model=model, store=InMemoryStore(), toolsets=[down])
    output = await agent.arun("hello", user_id="alice")
    assert model.offered[0] == []  # type: ignore[attr-defined]
    assert output.content == "Unknown tool 'whoami'; available tools: none."
    with pytest.raises(ToolsetUnavailable, match="not retried yet"):  # no new connect attempt
        await down.list_tools(RunContext(Scope.of("alice"), "run-1", {}))
    with pytest.raises(ToolsetUnavailable, match="cannot connect"):  # bob's identity: tried
        await down.list_tools(RunContext(Scope.of("bob"), "run-2", {}))


async def test_a_server_that_goes_down_between_turns_gives_a_tool_error_text() -> None:
    server = EchoServer()
    store = InMemoryStore()
    with serve(server.app()) as url:
        mcp = MCPTools(url=f"{url}/mcp", headers=tenant_header, list_ttl=3600, timeout=5)
        agent = Agent(model=calling("whoami"), store=store, toolsets=[mcp])
        first = await agent.arun("one", user_id="alice")
    assert first.content.startswith("token-of-alice|one|")
    # the tool list is still cached, so the model calls the tool; the server is gone
    second = await agent.arun("two", user_id="alice")
    assert second.content.startswith("Tool 'whoami' failed: the MCP server 'mcp' did not answer")
    assert await store.size("alice") == 8
    await mcp.aclose()


async def test_a_slow_tool_times_out_as_a_tool_error_text(echo: tuple[EchoServer, str]) -> None:
    _, url = echo
    async with MCPTools(url=url, timeout=0.5) as mcp:
        agent = Agent(model=calling("slow", seconds=5), store=InMemoryStore(), toolsets=[mcp])
        output = await agent.arun("wait", user_id="alice")
    assert "did not answer (timed out)" in output.content


async def test_a_tool_bound_to_one_run_refuses_another_runs_context(
    echo: tuple[EchoServer, str],
) -> None:
    server, url = echo
    async with MCPTools(url=url, headers=tenant_header) as mcp:
        alice = RunContext(Scope.of("alice"), "run-a", {})
        bob = RunContext(Scope.of("bob"), "run-b", {})
        whoami = next(t for t in await mcp.list_tools(alice) if t.name == "whoami")
        assert await whoami.run('{"note": "x"}', bob) == (
            "Tool 'whoami' belongs to another run and was not called."
        )
        assert await whoami.run("[1, 2]", alice) == (
            "Invalid arguments for tool 'whoami': give a JSON object. Call again."
        )
        assert (await whoami.run('{"note": "x"}', alice)).startswith("token-of-alice|x|")
    assert server.calls == [("token-of-alice", "x")]


async def test_connections_are_per_identity_bounded_and_closed_when_idle(
    echo: tuple[EchoServer, str],
) -> None:
    server, url = echo

    def ctx(user: str) -> RunContext:
        return RunContext(Scope.of(user), f"run-{user}", {})

    async with MCPTools(url=url, headers=tenant_header, max_connections=2) as mcp:
        await mcp.list_tools(ctx("a"))
        await mcp.list_tools(ctx("a"))  # same identity: same connection, list still cached
        assert server.listings == 1
        await mcp.list_tools(ctx("b"))
        await mcp.list_tools(ctx("c"))  # the pool is full: the least recently used (a) goes
        pool = mcp._pool()
        assert [key[0] for key in pool.connections] == ["b", "c"]
        pool.idle_timeout = 0
        await mcp.list_tools(ctx("d"))
        assert [key[0] for key in pool.connections] == ["d"]
    assert server.listings == 4


async def test_one_tenants_two_credentials_never_share_a_connection(
    echo: tuple[EchoServer, str],
) -> None:
    _, url = echo
    tokens = iter(["first", "second"])
    async with MCPTools(url=url, headers=lambda ctx: {"X-Tenant": next(tokens)}) as mcp:
        for run in ("r1", "r2"):
            await mcp.list_tools(RunContext(Scope.of("alice"), run, {}))
        assert len(mcp._pool().connections) == 2


async def test_the_tool_list_is_cached_per_identity_for_its_ttl(
    echo: tuple[EchoServer, str],
) -> None:
    server, url = echo
    alice = RunContext(Scope.of("alice"), "r", {})
    async with MCPTools(url=url, list_ttl=0, prefix="crm_", allowed_tools=["whoami"]) as mcp:
        first = await mcp.list_tools(alice)
        await mcp.list_tools(alice)
    assert server.listings == 2
    assert [t.name for t in first] == ["crm_whoami"]
    assert (await first[0].run("{}", alice)).startswith("None||")  # no headers were given


async def test_a_stdio_server_runs_once_per_tenant_with_its_environment() -> None:
    command = [sys.executable, "-m", "tests.support.mcp_server"]
    mcp = MCPTools(command=command, cwd=str(ROOT), env=lambda ctx: {"TENANT": ctx.user_id})
    agent = Agent(model=calling("whoami"), store=InMemoryStore(), toolsets=[mcp])
    try:
        alice = (await agent.arun("hi", user_id="alice")).content.split("|")
        bob = (await agent.arun("hi", user_id="bob")).content.split("|")
        again = (await agent.arun("hi", user_id="alice")).content.split("|")
    finally:
        await mcp.aclose()
    assert alice[:2] == ["alice", "hi"]
    assert bob[:2] == ["bob", "hi"]
    assert alice[2] != bob[2]  # two processes: nothing of one tenant's server is the other's
    assert again[2] == alice[2]  # alice's connection was reused


def test_mcptools_needs_exactly_one_server() -> None:
    with pytest.raises(InvalidInput, match="either url"):
        MCPTools()
    with pytest.raises(InvalidInput, match="either url"):
        MCPTools(url="http://x", command=["y"])
    with pytest.raises(InvalidInput, match="non-empty list"):
        MCPTools(command="server --stdio")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="toolset"):
        Agent(model=calling("x"), toolsets=[object()])  # type: ignore[list-item]
