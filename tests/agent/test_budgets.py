"""Usage counted with the turn and budgets checked before the model, on every backend.

A turn's usage lands in the user's counters in the turn's own commit: what is stored equals
the sum of the turns' `RunOutput.usage` exactly; a refused or failed turn stores and counts
nothing; a budget refuses once the counter reached it, and the next UTC day admits again.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tenantry import Agent, FunctionModel, OfflineModel, RunContext, tool
from tenantry.errors import BudgetExceeded, ToolError
from tenantry.models import ModelResponse
from tenantry.storage.base import Store
from tenantry.storage.usage import usage_day
from tenantry.types import Budget, Message, ToolCall, ToolSpec, Usage
from tenantry.usage import Budgets, day_end
from tests.conftest import FakeClock, MakeStore

TURN = Usage(requests=1, input_tokens=30, output_tokens=10)
"""What each turn of `_model` uses: 40 tokens, as a provider would report them."""


def _model() -> FunctionModel:
    return FunctionModel(lambda messages, tools: ModelResponse("ok", usage=TURN))


async def _today(store: Store, user: str, clock: FakeClock) -> Usage:
    today = usage_day(clock())
    return await store.usage_total(user, start=today, end=today)


async def test_turns_run_until_the_counter_reaches_the_budget_then_the_next_day_again(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    budgets = Budgets(Budget(tokens_per_day=100), clock=clock)
    agent = Agent(model=_model(), store=store, budgets=budgets)
    outputs = [await agent.arun(f"turn {n}", user_id="alice") for n in range(3)]  # 0, 40, 80
    with pytest.raises(BudgetExceeded) as refused:
        await agent.arun("one too many", user_id="alice")  # 120 >= 100
    error = refused.value
    assert (error.limit, error.used, error.allowed) == ("tokens_per_day", 120, 100)
    assert error.retry_after == pytest.approx(day_end(clock()) - clock())
    summed = outputs[0].usage + outputs[1].usage + outputs[2].usage
    assert await _today(store, "alice", clock) == summed
    assert await store.size("alice", "default") == 6  # nothing of the refused turn
    assert (await agent.arun("bob is fine", user_id="bob")).content == "ok"
    clock.advance(error.retry_after)  # midnight UTC
    assert (await agent.arun("a new day", user_id="alice")).content == "ok"
    assert await _today(store, "alice", clock) == TURN


async def test_a_refused_turn_never_calls_the_model(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    calls: list[int] = []

    def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        calls.append(1)
        return ModelResponse("ok", usage=TURN)

    budgets = Budgets(Budget(requests_per_day=1), clock=clock)
    agent = Agent(model=FunctionModel(answer), store=store, budgets=budgets)
    await agent.arun("one", user_id="alice")

    async def stream() -> None:
        async for _ in agent.astream("two", user_id="alice"):
            pass

    with pytest.raises(BudgetExceeded):
        await agent.arun("two", user_id="alice")
    with pytest.raises(BudgetExceeded):
        await stream()
    assert calls == [1]


async def test_a_users_own_budget_wins_over_the_default(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    agent = Agent(
        model=_model(), store=store, budgets=Budgets(Budget(tokens_per_day=1), clock=clock)
    )
    await store.set_budget("vip", Budget(tokens_per_day=1000))
    for _ in range(3):
        await agent.arun("hi", user_id="vip")
    await agent.arun("hi", user_id="plain")
    with pytest.raises(BudgetExceeded):
        await agent.arun("hi", user_id="plain")


async def test_stored_usage_is_the_sum_of_the_turns_with_tool_calls(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)

    @tool
    def lookup(ctx: RunContext, key: str) -> str:
        """Look a key up."""
        return key.upper()

    def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        if messages[-1].role == "user":
            calls = (ToolCall("c1", "lookup", '{"key": "a"}'), ToolCall("c2", "lookup", "{}"))
            return ModelResponse("", calls)
        return ModelResponse("done")  # no usage of its own: estimated

    agent = Agent(
        model=FunctionModel(answer), store=store, tools=[lookup], budgets=Budgets(clock=clock)
    )
    first = await agent.arun("look", user_id="alice", session_id="s1")
    second = await agent.arun("again", user_id="alice", session_id="s2")
    assert first.usage.requests == 2
    assert first.usage.tool_calls == 2
    assert first.usage.estimated
    assert first.usage.total_tokens > 0
    stored = await _today(store, "alice", clock)
    assert stored == first.usage + second.usage


async def test_a_failed_turn_counts_nothing(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock=clock)

    @tool
    def broken() -> str:
        """Fail."""
        raise RuntimeError("boom")

    def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        return ModelResponse("", (ToolCall("c1", "broken", "{}"),), usage=TURN)

    agent = Agent(
        model=FunctionModel(answer), store=store, tools=[broken], budgets=Budgets(clock=clock)
    )
    with pytest.raises(ToolError):
        await agent.arun("go", user_id="alice")
    assert await _today(store, "alice", clock) == Usage()


async def test_accounting_off_stores_no_usage_and_checks_no_budget(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    budgets = Budgets(Budget(requests_per_day=0), clock=clock)
    agent = Agent(model=_model(), store=store, accounting=False, budgets=budgets)
    assert (await agent.arun("hi", user_id="alice")).usage == TURN
    assert await _today(store, "alice", clock) == Usage()


async def test_memory_jobs_count_their_model_calls_after_the_turn(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    agent = Agent(model=OfflineModel(), store=store, memory=True, budgets=Budgets(clock=clock))
    output = await agent.arun("My name is Alice", user_id="alice")
    await agent.aflush()
    stored = await _today(store, "alice", clock)
    assert stored.requests == output.usage.requests + 1  # the learning job's extraction
    assert stored.total_tokens > output.usage.total_tokens
    assert stored.estimated
