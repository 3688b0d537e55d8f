"""Idempotent turns: a turn run with an idempotency key is run once, whatever the retries.

Every test runs on every store backend. The model counts its calls, so "no second model
call" is an observed fact, not a claim."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest

from tenantry import (
    Agent,
    FunctionModel,
    IdempotencyKeyReused,
    InMemoryStore,
    InvalidIdempotencyKey,
    Message,
    RunContext,
    RunOutput,
    tool,
)
from tenantry.errors import InvalidInput, ModelError
from tenantry.storage.base import Store, TurnWrite
from tenantry.tenancy import Scope
from tenantry.types import ToolSpec
from tests.conftest import FakeClock, MakeStore


class CountingModel(FunctionModel):
    """Echoes the user's last message and counts the calls; `gate`, when set, holds each
    call until it is opened."""

    def __init__(self) -> None:
        super().__init__(self._answer, name="counting")
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def _answer(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        last = next(m.content for m in reversed(messages) if m.role == "user")
        return f"reply {self.calls} to {last}"


def _agent(store: Store, **options: object) -> tuple[Agent, CountingModel]:
    model = CountingModel()
    return Agent(model=model, store=store, **options), model  # type: ignore[arg-type]


async def _stream(agent: Agent, text: str, **kwargs: object) -> tuple[list[str], RunOutput]:
    deltas: list[str] = []
    output: RunOutput | None = None
    async for item in agent.astream(text, **kwargs):  # type: ignore[arg-type]
        if isinstance(item, str):
            deltas.append(item)
        else:
            output = item
    assert output is not None
    return deltas, output


async def test_a_retry_with_the_key_gets_the_stored_reply_without_a_model_call(
    store: Store,
) -> None:
    agent, model = _agent(store)
    first = await agent.arun("hello", user_id="u", session_id="s", idempotency_key="k1")
    again = await agent.arun("hello", user_id="u", session_id="s", idempotency_key="k1")
    assert model.calls == 1
    assert not first.replayed
    assert again.replayed
    assert again.content == first.content == "reply 1 to hello"
    assert (again.run_id, again.usage, again.messages) == (
        first.run_id,
        first.usage,
        first.messages,
    )
    assert (again.user_id, again.session_id, again.state) == ("u", "s", {})
    assert [m.content for m in await store.get_messages("u", "s")] == ["hello", "reply 1 to hello"]


async def test_without_a_key_every_run_is_a_new_turn(store: Store) -> None:
    agent, model = _agent(store)
    await agent.arun("hello", user_id="u")
    await agent.arun("hello", user_id="u")
    assert model.calls == 2
    assert await store.size("u") == 4


async def test_a_streamed_retry_of_a_completed_turn_streams_the_stored_reply(
    store: Store,
) -> None:
    agent, model = _agent(store)
    first = await agent.arun("hi", user_id="u", idempotency_key="k")
    deltas, again = await _stream(agent, "hi", user_id="u", idempotency_key="k")
    assert deltas == [first.content]
    assert again.replayed
    assert again.run_id == first.run_id
    streamed_deltas, streamed = await _stream(agent, "other", user_id="u", idempotency_key="k2")
    plain = await agent.arun("other", user_id="u", idempotency_key="k2")
    assert plain.replayed
    assert plain.content == "".join(streamed_deltas) == streamed.content
    assert model.calls == 2
    assert await store.size("u") == 4


async def test_a_retry_while_the_first_still_runs_waits_for_it(store: Store) -> None:
    agent, model = _agent(store)
    model.gate = asyncio.Event()
    first = asyncio.ensure_future(agent.arun("slow", user_id="u", idempotency_key="k"))
    await asyncio.wait_for(model.entered.wait(), 10)
    retry = asyncio.ensure_future(agent.arun("slow", user_id="u", idempotency_key="k"))
    await asyncio.sleep(0.05)
    assert not retry.done()  # it waits on the scope's turn lock
    model.gate.set()
    a, b = await asyncio.wait_for(asyncio.gather(first, retry), 10)
    assert model.calls == 1
    assert (a.replayed, b.replayed) == (False, True)
    assert b.content == a.content
    assert b.run_id == a.run_id
    assert await store.size("u") == 2


async def test_the_same_key_with_another_message_or_session_is_refused(store: Store) -> None:
    agent, model = _agent(store)
    await agent.arun("one", user_id="u", session_id="s", idempotency_key="k")
    with pytest.raises(IdempotencyKeyReused, match="different request"):
        await agent.arun("two", user_id="u", session_id="s", idempotency_key="k")
    with pytest.raises(IdempotencyKeyReused):
        await agent.arun("one", user_id="u", session_id="other", idempotency_key="k")
    with pytest.raises(IdempotencyKeyReused):
        await _stream(agent, "two", user_id="u", session_id="s", idempotency_key="k")
    assert model.calls == 1
    assert await store.size("u", "s") == 2
    assert await store.size("u", "other") == 0


async def test_keys_of_one_tenant_never_match_another_tenants(store: Store) -> None:
    agent, model = _agent(store)
    a = await agent.arun("same words", user_id="user-a", idempotency_key="k")
    b = await agent.arun("same words", user_id="user-b", idempotency_key="k")
    assert model.calls == 2
    assert not b.replayed
    assert b.run_id != a.run_id
    assert b.user_id == "user-b"
    assert (
        await agent.arun("same words", user_id="user-a", idempotency_key="k")
    ).run_id == a.run_id
    assert [m.content for m in await store.get_messages("user-b")] == [
        "same words",
        "reply 2 to same words",
    ]


async def test_a_failed_turn_stores_no_key_and_its_retry_runs(store: Store) -> None:
    calls = 0

    def flaky(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("provider down")
        return "fine"

    agent = Agent(model=FunctionModel(flaky), store=store)
    with pytest.raises(ModelError):
        await agent.arun("hi", user_id="u", idempotency_key="k")
    assert await store.get_idempotency_record("k", user_id="u") is None
    assert (await agent.arun("hi", user_id="u", idempotency_key="k")).content == "fine"
    assert calls == 2
    assert await store.size("u") == 2


async def test_the_stored_reply_keeps_tool_messages_and_state(store: Store) -> None:
    @tool
    def remember(ctx: RunContext, value: str) -> str:
        """Remember a value."""
        ctx.state["value"] = value
        return "ok"

    from tenantry.types import ToolCall

    def model(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> object:
        from tenantry.models import ModelResponse

        if messages[-1].role == "tool":
            return "stored it"
        return ModelResponse("", (ToolCall("c1", "remember", '{"value": "v"}'),))

    agent = Agent(model=FunctionModel(model), store=store, tools=[remember])  # type: ignore[arg-type]
    first = await agent.arun("keep v", user_id="u", idempotency_key="k")
    again = await agent.arun("keep v", user_id="u", idempotency_key="k")
    assert again.replayed
    assert again.messages == first.messages
    assert len(first.messages) == 4
    assert again.state == first.state == {"value": "v"}


async def test_a_key_expires_after_the_agents_ttl(make_store: MakeStore, clock: FakeClock) -> None:
    agent, model = _agent(make_store(clock=clock), idempotency_ttl=timedelta(minutes=1))
    await agent.arun("hi", user_id="u", idempotency_key="k")
    clock.advance(59)
    assert (await agent.arun("hi", user_id="u", idempotency_key="k")).replayed
    clock.advance(2)
    assert not (await agent.arun("hi", user_id="u", idempotency_key="k")).replayed
    assert model.calls == 2


@pytest.mark.parametrize("bad", ["", "a" * 256, "new\nline"])
async def test_a_bad_key_is_refused_before_the_model_is_called(store: Store, bad: str) -> None:
    agent, model = _agent(store)
    with pytest.raises(InvalidIdempotencyKey):
        await agent.arun("hi", user_id="u", idempotency_key=bad)
    assert model.calls == 0
    assert await store.size("u") == 0


@pytest.mark.parametrize("bad", [0, -1, timedelta(0)])
def test_a_ttl_that_is_not_positive_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInput, match="idempotency_ttl"):
        Agent(store=InMemoryStore(), idempotency_ttl=bad)  # type: ignore[arg-type]


def test_the_sync_run_takes_a_key_too(store: Store) -> None:
    agent, model = _agent(store)
    assert agent.run("hi", user_id="u", idempotency_key="k").content == "reply 1 to hi"
    assert agent.run("hi", user_id="u", idempotency_key="k").replayed
    assert model.calls == 1


# --- the commit checkpoint --------------------------------------------------------------------


class SlowWrites(InMemoryStore):
    """Holds each turn write until `release` is set (after `writing` says it started)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    async def _append(self, scope: Scope, write: TurnWrite) -> None:
        if write.messages:
            self.writing.set()
            await self.release.wait()
        await super()._append(scope, write)


async def test_a_run_cancelled_during_its_write_still_stores_the_whole_turn() -> None:
    store = SlowWrites()
    agent, model = _agent(store)
    run = asyncio.ensure_future(agent.arun("hi", user_id="u", idempotency_key="k"))
    await asyncio.wait_for(store.writing.wait(), 10)
    run.cancel()  # the client went away once the model had answered
    await asyncio.sleep(0.01)
    assert not run.done()  # the write is finishing first, holding the turn lock
    other = asyncio.ensure_future(agent.arun("next", user_id="u"))
    await asyncio.sleep(0.01)
    assert not other.done()
    assert model.calls == 1
    store.release.set()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.wait_for(other, 10)
    assert [m.content for m in await store.get_messages("u")][:2] == ["hi", "reply 1 to hi"]
    assert await store.size("u") == 4
    retried = await agent.arun("hi", user_id="u", idempotency_key="k")  # retrievable
    assert retried.replayed
    assert retried.content == "reply 1 to hi"
    assert model.calls == 2


async def test_a_run_cancelled_before_its_write_stores_nothing() -> None:
    store = SlowWrites()
    agent, model = _agent(store)
    model.gate = asyncio.Event()
    run = asyncio.ensure_future(agent.arun("hi", user_id="u", idempotency_key="k"))
    await asyncio.wait_for(model.entered.wait(), 10)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert await store.size("u") == 0
    assert await store.get_idempotency_record("k", user_id="u") is None
