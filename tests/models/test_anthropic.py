"""AnthropicModel against a local fake Messages API (never the network): what goes on the wire,
tool use round trips, streaming, usage with cache tokens, typed errors, selection by settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tenantry import Agent, AnthropicModel, InMemoryStore, RunContext, tool
from tenantry.errors import ModelError, ModelHTTPError, ModelUnreachable
from tenantry.models import model_from_settings
from tenantry.settings import Settings
from tenantry.types import Message, ToolCall
from tests.support.fake_anthropic import AnthropicReply, FakeAnthropic
from tests.support.servers import free_port, serve


@pytest.fixture
def fake() -> Iterator[tuple[FakeAnthropic, str]]:
    api = FakeAnthropic()
    with serve(api.app()) as url:
        yield api, url


def _model(base_url: str) -> AnthropicModel:
    return AnthropicModel("claude-test", api_key="sk-ant-test", base_url=base_url, max_retries=0)


@tool
def lookup_order(ctx: RunContext, order_id: int) -> dict[str, object]:
    """Look up one of the user's orders."""
    return {"order": order_id, "owner": ctx.user_id}


async def test_system_prompt_messages_and_usage_on_the_wire(
    fake: tuple[FakeAnthropic, str],
) -> None:
    api, url = fake
    api.replies.append(AnthropicReply(text="Hello Alice"))
    model = _model(url)
    response = await model.complete(
        [Message.system("be brief"), Message.system("be kind"), Message.user("hi")]
    )
    assert response.content == "Hello Alice"
    assert response.tool_calls == ()
    # 11 uncached + 3 read from the cache + 2 written to it
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens) == (16, 7)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (3, 2)
    sent = api.requests[0]
    assert sent["model"] == "claude-test"
    assert sent["system"] == "be brief\n\nbe kind"
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert sent["max_tokens"] == 4096
    assert "tools" not in sent
    sent_headers = api.headers[0]
    assert "sk-ant-test" in sent_headers.get("x-api-key", sent_headers.get("authorization", ""))
    await model.aclose()


async def test_several_tool_uses_in_one_answer_round_trip_through_the_agent(
    fake: tuple[FakeAnthropic, str],
) -> None:
    api, url = fake
    api.replies += [
        AnthropicReply(
            text="Checking both.",
            tool_uses=[
                ("toolu_1", "lookup_order", {"order_id": 42}),
                ("toolu_2", "lookup_order", {"order_id": 43}),
            ],
        ),
        AnthropicReply(text="Both are yours."),
    ]
    store = InMemoryStore()
    agent = Agent(model=_model(url), store=store, tools=[lookup_order], instructions="Help.")
    output = await agent.arun("Where are orders 42 and 43?", user_id="alice")

    assert output.content == "Both are yours."
    assert [m.role for m in output.messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert [c.id for c in output.messages[1].tool_calls] == ["toolu_1", "toolu_2"]
    first, second = api.requests
    assert first["system"] == "Help."
    assert first["tools"] == [
        {
            "name": "lookup_order",
            "description": "Look up one of the user's orders.",
            "input_schema": lookup_order.parameters,
        }
    ]
    assistant, results = second["messages"][-2:]
    use = {"type": "tool_use", "name": "lookup_order"}
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking both."},
            {**use, "id": "toolu_1", "input": {"order_id": 42}},
            {**use, "id": "toolu_2", "input": {"order_id": 43}},
        ],
    }
    # both results in ONE user turn, each naming its tool_use
    assert results["role"] == "user"
    assert [(b["type"], b["tool_use_id"]) for b in results["content"]] == [
        ("tool_result", "toolu_1"),
        ("tool_result", "toolu_2"),
    ]
    assert json.loads(results["content"][1]["content"]) == {"order": 43, "owner": "alice"}
    assert output.usage.requests == 2
    assert await store.size("alice") == 5


async def test_the_next_turn_replays_the_stored_tool_turn_in_the_api_shape(
    fake: tuple[FakeAnthropic, str],
) -> None:
    api, url = fake
    api.replies += [
        AnthropicReply(tool_uses=[("toolu_1", "lookup_order", {"order_id": 7})]),
        AnthropicReply(text="Order 7 is yours."),
        AnthropicReply(text="You asked about order 7."),
    ]
    agent = Agent(model=_model(url), store=InMemoryStore(), tools=[lookup_order])
    await agent.arun("Where is order 7?", user_id="bob")
    await agent.arun("What did I ask?", user_id="bob")
    roles = [turn["role"] for turn in api.requests[-1]["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    # a tool call with no text has no empty text block (the API refuses those)
    assert api.requests[-1]["messages"][1]["content"][0]["type"] == "tool_use"


async def test_streaming_gives_text_deltas_then_the_whole_response(
    fake: tuple[FakeAnthropic, str],
) -> None:
    api, url = fake
    api.replies += [
        AnthropicReply(
            text="Let me look.", tool_uses=[("toolu_9", "lookup_order", {"order_id": 7})]
        ),
        AnthropicReply(text="Order 7 is on its way."),
    ]
    agent = Agent(model=_model(url), store=InMemoryStore(), tools=[lookup_order])
    deltas: list[str] = []
    final = None
    async for item in agent.astream("Where is order 7?", user_id="bob"):
        if isinstance(item, str):
            deltas.append(item)
        else:
            final = item
    assert final is not None
    assert deltas == ["Let", " me", " look.", "Order", " 7", " is", " on", " its", " way."]
    assert final.content == "Order 7 is on its way."
    assert json.loads(final.messages[1].tool_calls[0].arguments) == {"order_id": 7}
    assert json.loads(final.messages[2].content)["owner"] == "bob"
    assert final.usage.input_tokens == 32
    assert final.usage.cache_read_tokens == 6
    assert all(r["stream"] is True for r in api.requests)


@pytest.mark.parametrize("status", [401, 529])  # 400, 429, 500: tests/models/test_model_contract
async def test_auth_and_overloaded_errors_become_typed_errors_and_store_nothing(
    fake: tuple[FakeAnthropic, str], status: int
) -> None:
    api, url = fake
    api.replies.append(AnthropicReply(status=status, error="something is wrong"))
    store = InMemoryStore()
    agent = Agent(model=_model(url), store=store)
    with pytest.raises(ModelHTTPError) as caught:
        await agent.arun("hi", user_id="alice")
    assert caught.value.status_code == status
    assert "something is wrong" in str(caught.value)  # the provider's detail, for the log
    assert await store.size("alice") == 0


async def test_an_overloaded_error_in_the_middle_of_a_stream_is_a_529(
    fake: tuple[FakeAnthropic, str],
) -> None:
    api, url = fake
    api.replies.append(AnthropicReply(text="half an answer", stream_error="overloaded_error"))
    store = InMemoryStore()
    agent = Agent(model=_model(url), store=store)
    seen: list[str] = []

    async def consume() -> None:
        async for item in agent.astream("hi", user_id="alice"):
            if isinstance(item, str):
                seen.append(item)

    with pytest.raises(ModelHTTPError) as caught:
        await consume()
    assert caught.value.status_code == 529
    assert seen == ["half"]
    assert await store.size("alice") == 0


async def test_an_unreachable_server_is_a_typed_error() -> None:
    model = _model(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ModelUnreachable):
        await model.complete([Message.user("hi")])
    with pytest.raises(ModelUnreachable):
        async for _ in model.stream([Message.user("hi")]):
            pass


def test_without_a_key_the_error_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ANTHROPIC_CONFIG_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no credentials profile on disk either
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-test")
    with pytest.raises(ModelError, match="name the Anthropic model"):
        AnthropicModel("", api_key="k")
    # a local Anthropic-compatible server may need no key
    assert AnthropicModel("m", base_url="http://127.0.0.1:9").client.api_key == "no-key"
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="cannot configure the Anthropic client"):
        AnthropicModel("claude-test")


def test_history_from_other_models_still_makes_a_valid_request() -> None:
    model = AnthropicModel("m", api_key="k", temperature=0.3, extra_body={"top_k": 5})
    bad_call = ToolCall(id="c1", name="f", arguments="not json")
    request = model._request(
        [
            Message.user("a"),
            Message.assistant("", (bad_call,)),
            Message.tool("r", tool_call_id="c1"),
            Message.user("b"),
            Message.assistant(""),
            Message.user("c"),
        ],
        [],
    )
    assert request["temperature"] == 0.3
    assert request["extra_body"] == {"top_k": 5}
    turns = request["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [{"type": "tool_use", "id": "c1", "name": "f", "input": {}}]
    # the tool result and the next user messages share one user turn; the empty reply is gone
    assert [b["type"] for b in turns[2]["content"]] == ["tool_result", "text", "text"]


def test_tenantry_model_anthropic_selects_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_MODEL", "anthropic:claude-sonnet-4-6")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")  # the named provider wins
    model = model_from_settings()
    assert isinstance(model, AnthropicModel)
    assert model.name == "claude-sonnet-4-6"
    assert model.client.api_key == "sk-ant-from-env"
    explicit = model_from_settings(
        Settings(
            model="anthropic:claude-haiku-4-5",
            anthropic_api_key=SecretStr("sk-ant"),
            anthropic_base_url="http://127.0.0.1:9",
        )
    )
    assert isinstance(explicit, AnthropicModel)
    assert str(explicit.client.base_url).startswith("http://127.0.0.1:9")


def test_the_server_answers_with_claude_when_the_setting_names_it(
    fake: tuple[FakeAnthropic, str],
) -> None:
    import httpx

    from tenantry.server import ServerSettings, create_app

    api, url = fake
    api.replies.append(AnthropicReply(text="Hi from Claude"))
    settings = ServerSettings(
        _env_file=None,
        store_url="memory://",
        model="anthropic:claude-test",
        anthropic_api_key=SecretStr("sk-ant-test"),
        anthropic_base_url=url,
        rate_limit_per_minute=0,
    )
    with serve(create_app(settings=settings)) as server:
        reply = httpx.post(f"{server}/v1/chat", json={"message": "hi", "user_id": "alice"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["reply"] == "Hi from Claude"
    assert api.requests[0]["model"] == "claude-test"
