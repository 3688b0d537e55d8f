"""The official `openai` client against a real running server: the seed's Alice/Bob exchange
through `/v1/chat/completions`, streaming and not, in open mode and with API keys."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncOpenAI

from tenantry import Agent
from tests.server.conftest import Tenants


def _client(url: str, key: str = "unused") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def _new(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def _ask(client: AsyncOpenAI, text: str, **options: object) -> str:
    completion = await client.chat.completions.create(
        model="tenantry",
        messages=_new(text),
        **options,  # type: ignore[arg-type]
    )
    assert completion.object == "chat.completion"
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0
    return completion.choices[0].message.content or ""


async def _ask_streaming(client: AsyncOpenAI, text: str, **options: object) -> str:
    stream = await client.chat.completions.create(
        model="tenantry",
        messages=_new(text),
        stream=True,
        stream_options={"include_usage": True},
        **options,  # type: ignore[arg-type]
    )
    parts, usage = [], None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
    assert usage is not None
    return "".join(parts)


@pytest.mark.parametrize("ask", [_ask, _ask_streaming])
async def test_the_seed_demo_through_the_openai_client_in_open_mode(
    live_open: str, agent: Agent, ask: object
) -> None:
    client = _client(live_open)
    run = ask  # type: ignore[assignment]
    assert "Alice" in await run(client, "My name is Alice", user="user-a")
    assert await run(client, "What's my name?", user="user-a") == "Your name is Alice."
    await run(client, "My name is Bob", user="user-b")
    assert await run(client, "What's my name?", user="user-b") == "Your name is Bob."
    other_session = await run(
        client, "What's my name?", user="user-a", metadata={"session_id": "fresh"}
    )
    assert "don't know your name" in other_session
    assert await agent.store.size("user-a") == 4
    assert await agent.store.size("user-a", "fresh") == 2
    await client.close()


async def test_with_api_keys_the_tenant_is_the_keys(
    live_auth: str, tenants: Tenants, agent: Agent
) -> None:
    alice = _client(live_auth, tenants.keys["alice"])
    bob = _client(live_auth, tenants.keys["bob"])
    await _ask(alice, "My name is Alice")
    assert await _ask_streaming(alice, "What's my name?") == "Your name is Alice."
    assert "don't know" in await _ask(bob, "What's my name?")
    with pytest.raises(openai.PermissionDeniedError):
        await _ask(bob, "What's my name?", user="alice")
    with pytest.raises(openai.AuthenticationError):
        await _ask(_client(live_auth, "not-a-key"), "hi")
    assert await agent.store.size("alice") == 4
    for client in (alice, bob):
        await client.close()


async def test_bad_requests_are_typed_errors_and_store_nothing(
    live_open: str, agent: Agent
) -> None:
    client = _client(live_open)
    with pytest.raises(openai.UnprocessableEntityError, match="last message must be"):
        await client.chat.completions.create(
            model="m", messages=[{"role": "assistant", "content": "hi"}], user="u"
        )
    with pytest.raises(openai.UnprocessableEntityError, match="must not be empty"):
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "  "}], user="u"
        )
    with pytest.raises(openai.UnprocessableEntityError):
        await _ask(client, "hi", user="bad\nid")
    with pytest.raises(openai.UnprocessableEntityError):
        await _ask(client, "hi", user="u", metadata={"session_id": ""})
    assert await agent.store.list_users() == []
    await client.close()


async def test_content_parts_and_the_session_header_are_understood(
    live_open: str, agent: Agent
) -> None:
    client = _client(live_open)
    completion = await client.chat.completions.create(
        model="m",
        messages=[
            {"role": "system", "content": "ignored: the server's agent has its instructions"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "My name is "},
                    {"type": "text", "text": "Zed"},
                ],
            },
        ],
        user="z",
        extra_headers={"X-Session-ID": "s7"},
    )
    assert "Zed" in (completion.choices[0].message.content or "")
    assert await agent.store.list_sessions("z") == ["s7"]
    await client.close()
