"""The contract every model passes: the offline model, FunctionModel, OpenAI and Anthropic (each
through its local fake API). A new provider is one more harness in HARNESSES.

A harness gives the model, can script what its next answers are (text, tool calls, an HTTP
error) and tells which tool results the model was sent. The offline model cannot be scripted
(it never calls tools and never fails), so the tests that need a script skip it, saying so."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest

from tenantry import Agent, InMemoryStore, RunContext, tool
from tenantry.errors import ModelError, ModelHTTPError, ModelUnreachable
from tenantry.models import FunctionModel, Model, ModelResponse, OfflineModel
from tenantry.types import Message, RunOutput, ToolCall, ToolSpec, Usage
from tests.support.fake_anthropic import AnthropicReply, FakeAnthropic
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.servers import free_port, serve


@dataclass
class Script:
    """One scripted answer: text, tool calls (id, name, arguments), or an HTTP error status."""

    text: str = ""
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    status: int = 0


@dataclass
class Harness:
    model: Model
    script: Callable[[Script], None] | None
    """Queue the model's next answer; None for a model that cannot be scripted."""
    tool_results: Callable[[int], list[tuple[str, str]]]
    """The (tool call id, content) pairs the model was sent in its n-th request."""
    unreachable: Callable[[], Model] | None = None
    """The same model pointed at a port nobody listens on (HTTP models only)."""


def _offline(stack: ExitStack) -> Harness:
    return Harness(OfflineModel(), None, lambda n: [])


def _function(stack: ExitStack) -> Harness:
    answers: list[Script] = []
    seen: list[Sequence[Message]] = []

    def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        seen.append(list(messages))
        script = answers.pop(0) if answers else Script(text="default reply")
        if script.status:
            raise RuntimeError(f"scripted failure {script.status}")
        calls = tuple(ToolCall(i, name, json.dumps(args)) for i, name, args in script.calls)
        return ModelResponse(
            script.text, calls, Usage(requests=1, input_tokens=11, output_tokens=7)
        )

    def results(n: int) -> list[tuple[str, str]]:
        return [(m.tool_call_id or "", m.content) for m in seen[n] if m.role == "tool"]

    return Harness(FunctionModel(answer), answers.append, results)


def _openai(stack: ExitStack) -> Harness:
    from tenantry import OpenAIChatModel

    api = FakeOpenAI()
    url = stack.enter_context(serve(api.app()))

    def model(base: str) -> Model:
        return OpenAIChatModel("test-model", api_key="sk-test", base_url=base, max_retries=0)

    def script(s: Script) -> None:
        calls = [
            {"id": i, "function": {"name": name, "arguments": json.dumps(args)}}
            for i, name, args in s.calls
        ]
        reply = Reply(content=s.text or None, tool_calls=calls, status=s.status or 200)
        api.replies.append(reply if not s.status else Reply(status=s.status, error="scripted"))

    def results(n: int) -> list[tuple[str, str]]:
        sent = api.requests[n]["messages"]
        return [(m["tool_call_id"], m["content"]) for m in sent if m["role"] == "tool"]

    dead = f"http://127.0.0.1:{free_port()}/v1"
    return Harness(model(f"{url}/v1"), script, results, lambda: model(dead))


def _anthropic(stack: ExitStack) -> Harness:
    from tenantry import AnthropicModel

    api = FakeAnthropic()
    url = stack.enter_context(serve(api.app()))

    def model(base: str) -> Model:
        return AnthropicModel("claude-test", api_key="sk-ant-test", base_url=base, max_retries=0)

    def script(s: Script) -> None:
        reply = AnthropicReply(text=s.text, tool_uses=list(s.calls), status=s.status or 200)
        api.replies.append(reply if not s.status else AnthropicReply(status=s.status, error="x"))

    def results(n: int) -> list[tuple[str, str]]:
        blocks = [b for m in api.requests[n]["messages"] for b in m["content"]]
        return [(b["tool_use_id"], b["content"]) for b in blocks if b["type"] == "tool_result"]

    dead = f"http://127.0.0.1:{free_port()}"
    return Harness(model(url), script, results, lambda: model(dead))


HARNESSES: dict[str, Callable[[ExitStack], Harness]] = {
    "offline": _offline,
    "function": _function,
    "openai": _openai,
    "anthropic": _anthropic,
}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with ExitStack() as stack:
        yield HARNESSES[request.param](stack)


def _scripted(harness: Harness) -> Callable[[Script], None]:
    if harness.script is None:
        pytest.skip("this model cannot be scripted: it never calls tools and never fails")
    return harness.script


@tool
def lookup_order(ctx: RunContext, order_id: int) -> dict[str, object]:
    """Look up one of the user's orders."""
    return {"order": order_id, "owner": ctx.user_id}


HELLO = [Message.system("Be brief."), Message.user("Hello there, how are you")]


async def test_complete_answers_with_text_and_reports_usage(harness: Harness) -> None:
    if harness.script:
        harness.script(Script(text="Fine, thank you."))
    response = await harness.model.complete(HELLO)
    assert response.content
    if harness.script:
        assert response.content == "Fine, thank you."
    assert response.tool_calls == ()
    assert response.usage.requests == 1
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0


async def test_stream_ends_with_one_response_whose_content_is_the_deltas(
    harness: Harness,
) -> None:
    if harness.script:
        harness.script(Script(text="Fine, thank you. And you?"))
    items = [item async for item in harness.model.stream(HELLO)]
    *deltas, last = items
    assert isinstance(last, ModelResponse)
    assert deltas
    assert all(isinstance(d, str) and d for d in deltas)
    assert "".join(str(d) for d in deltas) == last.content
    assert last.usage.requests == 1
    assert last.usage.input_tokens > 0
    assert last.usage.output_tokens > 0


@pytest.mark.parametrize("streaming", [False, True], ids=["arun", "astream"])
async def test_several_tool_calls_round_trip_through_the_agent(
    harness: Harness, streaming: bool
) -> None:
    script = _scripted(harness)
    script(
        Script(
            calls=[
                ("call_a", "lookup_order", {"order_id": 1}),
                ("call_b", "lookup_order", {"order_id": 2}),
            ]
        )
    )
    script(Script(text="Both orders are yours."))
    agent = Agent(model=harness.model, store=InMemoryStore(), tools=[lookup_order])
    output: RunOutput | None = None
    deltas: list[str] = []
    if streaming:
        async for item in agent.astream("Where are my orders?", user_id="alice"):
            if isinstance(item, RunOutput):
                output = item
            else:
                deltas.append(item)
    else:
        output = await agent.arun("Where are my orders?", user_id="alice")
    assert output is not None
    # (the fake OpenAI stream sends each word with a trailing space)
    assert output.content.rstrip() == "Both orders are yours."
    assert [m.role for m in output.messages] == ["user", "assistant", "tool", "tool", "assistant"]
    calls = output.messages[1].tool_calls
    assert [(c.id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_a", "lookup_order", {"order_id": 1}),
        ("call_b", "lookup_order", {"order_id": 2}),
    ]
    sent = harness.tool_results(1)
    assert [call_id for call_id, _ in sent] == ["call_a", "call_b"]
    assert [json.loads(content) for _, content in sent] == [
        {"order": 1, "owner": "alice"},
        {"order": 2, "owner": "alice"},
    ]
    assert output.usage.requests == 2
    assert output.usage.input_tokens > 0
    if streaming:
        assert "".join(deltas) == output.content


@pytest.mark.parametrize("status", [400, 429, 500])
@pytest.mark.parametrize("streaming", [False, True], ids=["arun", "astream"])
async def test_a_failed_call_is_a_typed_error_and_stores_nothing(
    harness: Harness, status: int, streaming: bool
) -> None:
    script = _scripted(harness)
    script(Script(status=status))
    store = InMemoryStore()
    agent = Agent(model=harness.model, store=store)

    async def turn() -> None:
        if streaming:
            async for _ in agent.astream("hi", user_id="alice"):
                pass
        else:
            await agent.arun("hi", user_id="alice")

    with pytest.raises(ModelError) as caught:
        await turn()
    if harness.unreachable is not None:  # an HTTP API: the status is kept
        assert isinstance(caught.value, ModelHTTPError)
        assert caught.value.status_code == status
    assert await store.size("alice") == 0


async def test_an_unreachable_api_is_model_unreachable(harness: Harness) -> None:
    if harness.unreachable is None:
        pytest.skip("this model runs in-process: there is nothing to reach")
    model = harness.unreachable()
    with pytest.raises(ModelUnreachable):
        await model.complete(HELLO)
    with pytest.raises(ModelUnreachable):
        async for _ in model.stream(HELLO):
            pass
