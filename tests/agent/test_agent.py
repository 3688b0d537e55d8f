"""The agent's promises: one shared instance, isolated tenants, atomic turns, bounded history.

Every test runs on every store backend (the `store` / `make_store` fixtures).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest

from tenantry import (
    Agent,
    FunctionModel,
    InMemoryStore,
    Message,
    OfflineModel,
    RunContext,
    RunOutput,
    tool,
)
from tenantry.errors import (
    BudgetExceeded,
    InvalidInput,
    InvalidMessage,
    InvalidUserId,
    MaxLoopsExceeded,
    ModelError,
    ScopeBusy,
    ToolError,
)
from tenantry.models import ModelResponse
from tenantry.storage.base import Store
from tenantry.types import Budget, ToolCall, ToolSpec
from tenantry.usage import Budgets


def _last_user(messages: Sequence[Message]) -> str:
    return next(m.content for m in reversed(messages) if m.role == "user")


async def _echo(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
    await asyncio.sleep(0)  # let other turns run in between
    return f"echo:{_last_user(messages)}"


# --- the seed's demo --------------------------------------------------------------------------


def test_the_seed_demo_through_one_shared_agent(store: Store) -> None:
    agent = Agent(name="customer-service", model=OfflineModel(), store=store)
    assert "Alice" in agent.run("My name is Alice", user_id="user-a").content
    assert agent.run("What's my name?", user_id="user-a").content == "Your name is Alice."
    agent.run("My name is Bob", user_id="user-b")
    assert agent.run("What's my name?", user_id="user-b").content == "Your name is Bob."
    assert agent.run("What's my name?", user_id="user-a").content == "Your name is Alice."
    assert agent.default_user_id == "default"


async def test_the_default_user_is_used_when_none_is_given(store: Store) -> None:
    agent = Agent(model=OfflineModel(), store=store, default_user_id="script-user")
    output = await agent.arun("My name is Carol")
    assert (output.user_id, output.session_id) == ("script-user", "default")
    assert await store.size("script-user") == 2


# --- isolation and ordering under concurrency -------------------------------------------------


async def test_1000_concurrent_turns_over_100_users_keep_every_history_whole(
    store: Store,
) -> None:
    agent = Agent(model=FunctionModel(_echo), store=store, history_window=0)

    async def turn(user: int, n: int) -> RunOutput:
        return await agent.arun(f"u{user}-t{n}", user_id=f"user-{user}")

    outputs = await asyncio.gather(*(turn(u, n) for n in range(10) for u in range(100)))

    for output in outputs:
        assert output.content == f"echo:{output.messages[0].content}"
        assert output.messages[0].content.startswith(f"u{output.user_id[5:]}-")
    for user in range(100):
        history = await store.get_messages(f"user-{user}")
        assert len(history) == 20
        pairs = [(history[i], history[i + 1]) for i in range(0, 20, 2)]
        sent = []
        for question, answer in pairs:
            assert (question.role, answer.role) == ("user", "assistant")
            assert question.content.startswith(f"u{user}-t")
            assert answer.content == f"echo:{question.content}"
            sent.append(question.content)
        assert sorted(sent) == sorted(f"u{user}-t{n}" for n in range(10))
    assert len(store._locks) == 0  # type: ignore[attr-defined]  # the lock table emptied


async def test_turns_of_one_scope_never_interleave(store: Store) -> None:
    seen: dict[str, list[int]] = {}

    async def record(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        text = _last_user(messages)
        user = text.split("|")[0]
        seen.setdefault(user, []).append(len(messages) - 1)  # history the turn was given
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return "ok"

    agent = Agent(model=FunctionModel(record), store=store, history_window=1000)
    await asyncio.gather(
        *(agent.arun(f"{u}|{n}", user_id=u) for n in range(10) for u in ("a", "b", "c"))
    )
    # Serialised turns: each one saw every earlier turn of its own user, and nothing else.
    for user in ("a", "b", "c"):
        assert seen[user] == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]


async def test_different_scopes_run_in_parallel(store: Store) -> None:
    inside = asyncio.Barrier(3)

    async def wait_for_others(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        await asyncio.wait_for(inside.wait(), timeout=5)
        return "together"

    agent = Agent(model=FunctionModel(wait_for_others), store=store)
    outputs = await asyncio.gather(
        agent.arun("x", user_id="a"),
        agent.arun("x", user_id="b"),
        agent.arun("x", user_id="a", session_id="second"),
    )
    assert [o.content for o in outputs] == ["together"] * 3


async def test_a_turn_waiting_too_long_for_its_scope_raises_scope_busy(store: Store) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        started.set()
        await release.wait()
        return "done"

    agent = Agent(model=FunctionModel(slow), store=store, lock_timeout=0.05)
    first = asyncio.create_task(agent.arun("one", user_id="u"))
    await started.wait()
    with pytest.raises(ScopeBusy):
        await agent.arun("two", user_id="u")
    release.set()
    assert (await first).content == "done"
    assert await store.size("u") == 2


# --- atomic turns -----------------------------------------------------------------------------


async def test_a_failing_model_leaves_no_half_turn(store: Store) -> None:
    def broken(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        raise RuntimeError("model exploded")

    await store.add_many([Message.user("before"), Message.assistant("kept")], user_id="u")
    agent = Agent(model=FunctionModel(broken), store=store)
    with pytest.raises(ModelError, match="model exploded") as caught:
        await agent.arun("lost", user_id="u")
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert [m.content for m in await store.get_messages("u")] == ["before", "kept"]


async def test_a_failure_after_a_tool_changed_state_stores_neither(store: Store) -> None:
    calls = 0

    @tool
    def remember(ctx: RunContext) -> str:
        ctx.state["remembered"] = True
        return "ok"

    def tool_then_fail(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            return ModelResponse(tool_calls=(ToolCall("c1", "remember"),))
        raise ConnectionError("lost the model mid-turn")

    agent = Agent(model=FunctionModel(tool_then_fail), store=store, tools=[remember])
    with pytest.raises(ModelError):
        await agent.arun("go", user_id="u")
    assert await store.size("u") == 0
    assert await store.get_state("u") == {}


async def test_a_failing_tool_raises_tool_error_and_stores_nothing(store: Store) -> None:
    @tool
    def explode() -> str:
        raise ValueError("no")

    def call_it(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        return ModelResponse(tool_calls=(ToolCall("c1", "explode"),))

    agent = Agent(model=FunctionModel(call_it), store=store, tools=[explode])
    with pytest.raises(ToolError):
        await agent.arun("go", user_id="u")
    assert await store.size("u") == 0


async def test_an_endless_tool_loop_stops_at_max_loops(store: Store) -> None:
    calls = 0

    @tool
    def again() -> str:
        return "call me again"

    def loop(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        nonlocal calls
        calls += 1
        return ModelResponse(tool_calls=(ToolCall(f"c{calls}", "again"),))

    agent = Agent(model=FunctionModel(loop), store=store, tools=[again], max_loops=3)
    with pytest.raises(MaxLoopsExceeded, match="max_loops=3"):
        await agent.arun("go", user_id="u")
    assert calls == 3
    assert await store.size("u") == 0


async def test_unknown_tools_and_bad_arguments_go_back_to_the_model(store: Store) -> None:
    @tool
    def double(n: int) -> int:
        return n * 2

    script = [
        ModelResponse(tool_calls=(ToolCall("c1", "triple", "{}"),)),
        ModelResponse(tool_calls=(ToolCall("c2", "double", '{"n": "many"}'),)),
        ModelResponse(tool_calls=(ToolCall("c3", "double", '{"n": 21}'),)),
        ModelResponse(content="42"),
    ]

    def scripted(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        return script.pop(0)

    agent = Agent(model=FunctionModel(scripted), store=store, tools=[double])
    output = await agent.arun("double 21", user_id="u")
    results = [m.content for m in output.messages if m.role == "tool"]
    assert "Unknown tool 'triple'" in results[0]
    assert "available tools: double" in results[0]
    assert "Invalid arguments" in results[1]
    assert results[2] == "42"
    assert output.content == "42"
    assert await store.size("u") == len(output.messages) == 8


# --- history window ---------------------------------------------------------------------------


async def test_only_the_history_window_reaches_the_model(store: Store) -> None:
    received: list[list[Message]] = []

    def record(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        received.append(list(messages))
        return "ok"

    history = [
        Message.user(f"q{i}") if i % 2 == 0 else Message.assistant(f"a{i}") for i in range(200)
    ]
    await store.add_many(history, user_id="u")
    agent = Agent(model=FunctionModel(record), store=store, history_window=6, instructions="Sys")
    await agent.arun("now", user_id="u")

    sent = received[0]
    assert (sent[0].role, sent[0].content) == ("system", "Sys")
    assert [m.content for m in sent[1:]] == ["q194", "a195", "q196", "a197", "q198", "a199", "now"]


async def test_a_window_never_opens_with_an_orphan_tool_result(store: Store) -> None:
    received: list[list[Message]] = []

    def record(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        received.append(list(messages))
        return "ok"

    await store.add_many(
        [
            Message.user("q"),
            Message.assistant("", tool_calls=(ToolCall("c1", "f"),)),
            Message.tool("r", tool_call_id="c1"),
            Message.assistant("a"),
            Message.user("q2"),
            Message.assistant("a2"),
        ],
        user_id="u",
    )
    agent = Agent(model=FunctionModel(record), store=store, history_window=4)
    await agent.arun("now", user_id="u")
    assert [m.content for m in received[0]] == ["q2", "a2", "now"]
    agent_none = agent.replace(history_window=0)
    await agent_none.arun("alone", user_id="u")
    assert [m.content for m in received[1]] == ["alone"]


# --- tools with run context under concurrency -------------------------------------------------


async def test_a_counter_tool_ends_at_exactly_10_per_user_after_1000_turns(
    store: Store,
) -> None:
    wrong_scope: list[str] = []

    @tool
    async def increment(ctx: RunContext, claimed_user: str) -> int:
        if claimed_user != ctx.user_id:
            wrong_scope.append(f"{claimed_user} ran as {ctx.user_id}")
        await asyncio.sleep(0)
        ctx.state["count"] = ctx.state.get("count", 0) + 1
        return int(ctx.state["count"])

    def counter_model(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        last = messages[-1]
        if last.role == "tool":
            return ModelResponse(content=f"count={last.content}")
        user = last.content.split("|")[0]
        args = json.dumps({"claimed_user": user})
        return ModelResponse(tool_calls=(ToolCall("c1", "increment", args),))

    agent = Agent(model=FunctionModel(counter_model), store=store, tools=[increment])
    await asyncio.gather(
        *(agent.arun(f"user-{u}|{n}", user_id=f"user-{u}") for n in range(10) for u in range(100))
    )
    assert wrong_scope == []
    for u in range(100):
        assert await store.get_state(f"user-{u}") == {"count": 10}
        replies = [
            m.content for m in await store.get_messages(f"user-{u}") if m.role == "assistant"
        ]
        assert sorted(r for r in replies if r) == sorted(f"count={n}" for n in range(1, 11))


async def test_state_changes_are_stored_with_the_turn_and_passed_to_the_next(
    store: Store,
) -> None:
    @tool
    def add_to_cart(ctx: RunContext, item: str) -> str:
        ctx.state.setdefault("cart", []).append(item)
        return f"cart: {ctx.state['cart']}"

    def shop(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        if messages[-1].role == "tool":
            return ModelResponse(content=messages[-1].content)
        args = json.dumps({"item": messages[-1].content})
        return ModelResponse(tool_calls=(ToolCall("c", "add_to_cart", args),))

    agent = Agent(model=FunctionModel(shop), store=store, tools=[add_to_cart])
    await agent.arun("apple", user_id="alice")
    output = await agent.arun("pear", user_id="alice")
    await agent.arun("plum", user_id="bob")
    assert output.state == {"cart": ["apple", "pear"]}
    assert await store.get_state("alice") == {"cart": ["apple", "pear"]}
    assert await store.get_state("bob") == {"cart": ["plum"]}


async def test_deps_reach_the_tools(store: Store) -> None:
    @tool
    def greet(ctx: RunContext) -> str:
        return f"{ctx.deps['greeting']}, {ctx.user_id} ({ctx.session_id})"

    def call(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        if messages[-1].role == "tool":
            return ModelResponse(content=messages[-1].content)
        return ModelResponse(tool_calls=(ToolCall("c", "greet"),))

    agent = Agent(model=FunctionModel(call), store=store, tools=[greet])
    output = await agent.arun("hi", user_id="ann", session_id="s9", deps={"greeting": "Hello"})
    assert output.content == "Hello, ann (s9)"


# --- streaming --------------------------------------------------------------------------------


async def test_streamed_deltas_add_up_to_the_stored_reply(store: Store) -> None:
    agent = Agent(model=OfflineModel(), store=store)
    await agent.arun("My name is Alice", user_id="a")
    deltas: list[str] = []
    final: RunOutput | None = None
    async for item in agent.astream("What's my name?", user_id="a"):
        if isinstance(item, RunOutput):
            final = item
        else:
            deltas.append(item)
    assert len(deltas) > 1
    assert final is not None
    assert "".join(deltas) == final.content == "Your name is Alice."
    assert (await store.get_messages("a"))[-1].content == final.content


async def test_a_stream_without_a_response_is_a_model_error(store: Store) -> None:
    class Mute(OfflineModel):
        async def stream(self, messages, tools=()):  # type: ignore[no-untyped-def,override]
            yield "partial"

    agent = Agent(model=Mute(), store=store)
    with pytest.raises(ModelError, match="without a response"):
        async for _ in agent.astream("hi", user_id="u"):
            pass
    assert await store.size("u") == 0


async def test_a_stream_that_fails_midway_stores_nothing(store: Store) -> None:
    class Flaky(OfflineModel):
        async def stream(self, messages, tools=()):  # type: ignore[no-untyped-def,override]
            yield "half a reply"
            raise OSError("connection reset")

    agent = Agent(model=Flaky(), store=store)
    with pytest.raises(ModelError, match="connection reset"):
        async for _ in agent.astream("hi", user_id="u"):
            pass
    assert await store.size("u") == 0


async def test_on_start_is_called_once_after_admission_before_the_model(store: Store) -> None:
    seen: list[str] = []

    def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        seen.append(f"model sees {len(messages)} messages")
        return ModelResponse("ok")

    agent = Agent(model=FunctionModel(answer), store=store)
    await agent.arun("one", user_id="u", session_id="s")

    def started() -> None:
        seen.append("started")

    kinds = [
        type(item).__name__
        async for item in agent.astream("two", user_id="u", session_id="s", on_start=started)
    ]
    # after the history was read (the model sees it), before the model was called
    assert seen == ["model sees 1 messages", "started", "model sees 3 messages"]
    assert kinds[-1] == "RunOutput"
    # a replay calls no model, so it does not start
    seen.clear()
    async for _ in agent.astream("k", user_id="u", idempotency_key="key-1"):
        pass
    async for _ in agent.astream("k", user_id="u", idempotency_key="key-1", on_start=started):
        pass
    assert seen == ["model sees 1 messages"]
    # nor does a turn refused before the model
    refusing = Agent(model=FunctionModel(answer), store=store, budgets=Budgets(Budget(0)))
    with pytest.raises(BudgetExceeded):
        async for _ in refusing.astream("three", user_id="u", on_start=started):
            pass
    assert seen == ["model sees 1 messages"]


# --- the agent itself -------------------------------------------------------------------------


def test_the_agent_is_immutable(store: Store) -> None:
    agent = Agent(model=OfflineModel(), store=store)
    with pytest.raises(AttributeError, match="pass user_id"):
        agent.user_id = "user-a"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="pass user_id"):
        agent.default_user_id = "user-a"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="replace"):
        agent.instructions = "new"  # type: ignore[misc]
    derived = agent.replace(instructions="new", history_window=3)
    assert (derived.instructions, derived.history_window) == ("new", 3)
    assert (agent.instructions, agent.history_window) == ("", 50)
    assert "Agent(name='agent'" in repr(agent)


async def test_bad_input_is_rejected_before_anything_is_stored(store: Store) -> None:
    agent = Agent(model=OfflineModel(), store=store)
    with pytest.raises(InvalidMessage):
        await agent.arun("   ", user_id="u")
    with pytest.raises(InvalidMessage):
        await agent.arun(None, user_id="u")  # type: ignore[arg-type]
    with pytest.raises(InvalidUserId):
        await agent.arun("hi", user_id="")
    assert await store.list_users() == []


@pytest.mark.parametrize(
    "bad",
    [{"max_loops": 0}, {"history_window": -1}, {"max_loops": True}, {"default_user_id": ""}],
)
def test_bad_settings_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises((InvalidInput, InvalidUserId)):
        Agent(model=OfflineModel(), **bad)  # type: ignore[arg-type]


async def test_the_old_user_id_keyword_still_sets_the_default_user_with_a_warning() -> None:
    store = InMemoryStore()
    with pytest.warns(DeprecationWarning, match="default_user_id"):
        agent = Agent(model=OfflineModel(), store=store, user_id="script-user")
    assert agent.default_user_id == "script-user"
    assert (await agent.arun("My name is Carol")).user_id == "script-user"
    with pytest.warns(DeprecationWarning, match="Agent.default_user_id"):
        assert agent.user_id == "script-user"
    with pytest.warns(DeprecationWarning, match=r"Agent\.replace\(user_id=\.\.\.\) is deprecated"):
        derived = agent.replace(user_id="other")
    assert (derived.default_user_id, agent.default_user_id) == ("other", "script-user")
    assert agent.replace(default_user_id="third").default_user_id == "third"


def test_the_old_user_id_keyword_is_checked_and_cannot_contradict_the_new_one() -> None:
    with pytest.warns(DeprecationWarning, match="user_id"), pytest.raises(InvalidUserId):
        Agent(model=OfflineModel(), user_id="")
    with pytest.raises(TypeError, match="drop user_id"):
        Agent(model=OfflineModel(), default_user_id="a", user_id="b")
    with pytest.raises(TypeError, match="drop user_id"):
        Agent(model=OfflineModel()).replace(default_user_id="a", user_id="b")


def test_duplicate_tool_names_are_rejected() -> None:
    def f() -> str:
        return ""

    with pytest.raises(InvalidInput, match="share the name"):
        Agent(model=OfflineModel(), tools=[f, tool(f)])


def test_defaults_are_the_offline_model_and_an_in_memory_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("TENANTRY_MODEL", raising=False)
    agent = Agent()
    assert isinstance(agent.model, OfflineModel)
    assert agent.run("My name is Dana", user_id="d").user_id == "d"
