"""OpenAIChatModel against a local fake Chat Completions server (never the network)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tenantry import Agent, InMemoryStore, OpenAIChatModel, RunContext, tool
from tenantry.errors import ModelError, ModelHTTPError, ModelUnreachable
from tenantry.types import Message
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.servers import free_port, serve


@pytest.fixture
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    api = FakeOpenAI()
    with serve(api.app()) as url:
        yield api, f"{url}/v1"


def _model(base_url: str) -> OpenAIChatModel:
    return OpenAIChatModel("test-model", api_key="sk-test", base_url=base_url, max_retries=0)


@tool
def lookup_order(ctx: RunContext, order_id: int) -> dict[str, object]:
    """Look up one of the user's orders."""
    return {"order": order_id, "owner": ctx.user_id}


def _tool_call(call_id: str, args: dict[str, object]) -> dict[str, object]:
    return {"id": call_id, "function": {"name": "lookup_order", "arguments": json.dumps(args)}}


async def test_a_plain_reply_and_what_was_sent(fake: tuple[FakeOpenAI, str]) -> None:
    api, url = fake
    api.replies.append(Reply(content="Hello Alice"))
    model = _model(url)
    response = await model.complete([Message.system("be brief"), Message.user("hi")])
    assert response.content == "Hello Alice"
    assert response.tool_calls == ()
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
    sent = api.requests[0]
    assert sent["model"] == "test-model"
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert "tools" not in sent
    await model.aclose()


async def test_tool_calls_go_round_trip_through_the_agent(fake: tuple[FakeOpenAI, str]) -> None:
    api, url = fake
    api.replies += [
        Reply(tool_calls=[_tool_call("call-1", {"order_id": 42})]),
        Reply(content="Order 42 is yours."),
    ]
    store = InMemoryStore()
    agent = Agent(model=_model(url), store=store, tools=[lookup_order], instructions="Help.")
    output = await agent.arun("Where is order 42?", user_id="alice")

    assert output.content == "Order 42 is yours."
    assert [m.role for m in output.messages] == ["user", "assistant", "tool", "assistant"]
    assert json.loads(output.messages[2].content) == {"order": 42, "owner": "alice"}
    assert output.usage.requests == 2
    first, second = api.requests
    assert first["tools"][0]["function"]["name"] == "lookup_order"
    assert first["tools"][0]["function"]["parameters"]["required"] == ["order_id"]
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call-1"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call-1",
        "content": output.messages[2].content,
    }
    assert await store.size("alice") == 4


async def test_streaming_gives_deltas_and_assembles_tool_calls(
    fake: tuple[FakeOpenAI, str],
) -> None:
    api, url = fake
    api.replies += [
        Reply(content="Let me look.", tool_calls=[_tool_call("call-9", {"order_id": 7})]),
        Reply(content="Order 7 is on its way."),
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
    assert final.messages[1].tool_calls[0].arguments == '{"order_id": 7}'
    assert json.loads(final.messages[2].content)["owner"] == "bob"
    assert "".join(deltas) == "Let me look. Order 7 is on its way. "
    assert final.content == "Order 7 is on its way. "
    assert final.usage.input_tokens == 10
    assert all(r["stream"] is True for r in api.requests)


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
async def test_http_errors_become_typed_errors_and_store_nothing(
    fake: tuple[FakeOpenAI, str], status: int
) -> None:
    api, url = fake
    api.replies.append(Reply(status=status, error="something is wrong"))
    store = InMemoryStore()
    agent = Agent(model=_model(url), store=store)
    with pytest.raises(ModelHTTPError) as caught:
        await agent.arun("hi", user_id="alice")
    assert caught.value.status_code == status
    assert "something is wrong" in str(caught.value)
    assert await store.size("alice") == 0


async def test_streaming_http_errors_are_typed_too(fake: tuple[FakeOpenAI, str]) -> None:
    api, url = fake
    api.replies.append(Reply(status=500, error="boom"))
    with pytest.raises(ModelHTTPError):
        async for _ in _model(url).stream([Message.user("hi")]):
            pass


async def test_an_unreachable_server_is_a_typed_error() -> None:
    model = OpenAIChatModel(
        "m", api_key="k", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0
    )
    with pytest.raises(ModelUnreachable):
        await model.complete([Message.user("hi")])


def test_settings_are_passed_and_local_servers_need_no_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = OpenAIChatModel(
        "llama3.2",
        base_url="http://127.0.0.1:11434/v1",
        temperature=0.2,
        max_tokens=99,
        extra_body={"top_k": 5},
    )
    request = model._request([Message.user("x")], [])
    assert request["temperature"] == 0.2
    assert request["max_tokens"] == 99
    assert request["extra_body"] == {"top_k": 5}
    with pytest.raises(ModelError, match="OPENAI_API_KEY"):
        OpenAIChatModel("gpt-4o-mini")


def test_cached_prompt_tokens_are_reported_as_cache_reads() -> None:
    from types import SimpleNamespace

    from tenantry.models.openai import _usage

    raw = SimpleNamespace(
        prompt_tokens=120,
        completion_tokens=8,
        prompt_tokens_details=SimpleNamespace(cached_tokens=96),
    )
    usage = _usage(raw)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (120, 8, 96)
    assert usage.cache_write_tokens == 0


async def test_an_empty_choice_list_is_an_error(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    model = _model(url)

    class NoChoices:
        choices = ()
        usage = None

    async def create(**_: object) -> NoChoices:
        return NoChoices()

    model.client.chat.completions.create = create  # type: ignore[method-assign,assignment]
    with pytest.raises(ModelError, match="no choices"):
        await model.complete([Message.user("hi")])


async def test_with_only_a_base_url_the_servers_only_model_is_used(
    fake: tuple[FakeOpenAI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, url = fake
    for name in ("OPENAI_API_KEY", "TENANTRY_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", url)  # what an Ollama user sets, and nothing else
    api.models = ["llama3.2"]
    api.replies += [Reply(content="Hi"), Reply(content="Hi again")]
    agent = Agent(store=InMemoryStore())
    assert agent.model.name == "auto"
    assert (await agent.arun("hello", user_id="u")).content == "Hi"
    chunks = [item async for item in agent.astream("again", user_id="u")]
    assert chunks[-1].content.strip() == "Hi again"
    assert [sent["model"] for sent in api.requests] == ["llama3.2", "llama3.2"]
    assert agent.model.name == "llama3.2"
    assert api.listings == 1  # asked once, not per turn


@pytest.mark.parametrize("served", [[], ["llama3.2", "qwen2.5"]], ids=["none", "two"])
async def test_with_only_a_base_url_and_not_one_model_the_error_names_tenantry_model(
    fake: tuple[FakeOpenAI, str], served: list[str]
) -> None:
    api, url = fake
    api.models = served
    store = InMemoryStore()
    agent = Agent(store=store, model=OpenAIChatModel(None, base_url=url, max_retries=0))
    with pytest.raises(ModelError, match="set TENANTRY_MODEL") as caught:
        await agent.arun("hello", user_id="u")
    assert f"serves {len(served)} models" in str(caught.value)
    assert all(name in str(caught.value) for name in served)
    assert api.requests == []
    assert await store.size("u") == 0
