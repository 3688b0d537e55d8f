"""Idempotent turns over HTTP: `Idempotency-Key` on /v1/chat, /v1/chat/stream and
/v1/chat/completions, and A2A's messageId. A retry gets the stored reply with no second model
call; the same key with another body is 422; keys are per tenant."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from tenantry import Agent, FunctionModel, InMemoryStore, Message
from tenantry.server import create_app
from tenantry.types import ToolSpec
from tests.server.conftest import Tenants, open_settings
from tests.server.test_a2a_protocol import V1, rpc
from tests.server.test_chat import parse_sse
from tests.support.servers import serve


class Counting:
    """A model function that echoes the user's text and counts its calls; `gate`, when set,
    holds every call until it is opened."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        return f"reply {self.calls} to {messages[-1].content}"


@pytest.fixture
def model() -> Counting:
    return Counting()


@pytest.fixture
def agent(model: Counting) -> Agent:
    return Agent(name="test-agent", model=FunctionModel(model), store=InMemoryStore())


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def test_a_chat_retry_with_the_key_gets_the_stored_reply(
    open_client: httpx.AsyncClient, model: Counting, agent: Agent
) -> None:
    body, headers = {"message": "hello", "user_id": "a", "session_id": "s"}, key()
    first = await open_client.post("/v1/chat", json=body, headers=headers)
    again = await open_client.post("/v1/chat", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["reply"] == "reply 1 to hello"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert model.calls == 1
    assert await agent.store.size("a", "s") == 2


async def test_without_a_key_a_resent_body_is_a_second_turn(
    open_client: httpx.AsyncClient, model: Counting
) -> None:
    for _ in range(2):
        await open_client.post("/v1/chat", json={"message": "hello"})
    assert model.calls == 2


async def test_a_streamed_retry_of_a_completed_turn_replays_it_as_a_stream(
    open_client: httpx.AsyncClient, model: Counting
) -> None:
    body, headers = {"message": "hello"}, key()
    first = (await open_client.post("/v1/chat", json=body, headers=headers)).json()
    streamed = await open_client.post("/v1/chat/stream", json=body, headers=headers)
    events = parse_sse(streamed.text)
    assert events == [("delta", {"text": first["reply"]}), ("done", first)]
    # and a streamed first attempt, retried plainly
    other = key()
    stream = parse_sse((await open_client.post("/v1/chat/stream", json=body, headers=other)).text)
    plain = await open_client.post("/v1/chat", json=body, headers=other)
    assert plain.json() == stream[-1][1]
    assert plain.headers["idempotent-replayed"] == "true"
    assert model.calls == 2


async def test_the_same_key_with_another_body_is_422_and_runs_nothing(
    open_client: httpx.AsyncClient, model: Counting, agent: Agent
) -> None:
    headers = key()
    await open_client.post("/v1/chat", json={"message": "one", "session_id": "s"}, headers=headers)
    for other in ({"message": "two", "session_id": "s"}, {"message": "one", "session_id": "t"}):
        for path in ("/v1/chat", "/v1/chat/stream"):
            refused = await open_client.post(path, json=other, headers=headers)
            assert refused.status_code == 422, refused.text
            error = refused.json()["error"]
            assert error["type"] == "IdempotencyKeyReused"
            assert "already used for a different request" in error["message"]
    assert model.calls == 1
    assert await agent.store.list_sessions("default") == ["s"]


@pytest.mark.parametrize("bad", ["", "x" * 256])
async def test_a_bad_key_is_422(open_client: httpx.AsyncClient, model: Counting, bad: str) -> None:
    refused = await open_client.post(
        "/v1/chat", json={"message": "hi"}, headers={"Idempotency-Key": bad}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["type"] == "InvalidIdempotencyKey"
    assert model.calls == 0


async def test_a_retry_while_the_first_runs_waits_and_gets_the_same_reply(
    open_client: httpx.AsyncClient, model: Counting, agent: Agent
) -> None:
    model.gate = asyncio.Event()
    body, headers = {"message": "slow"}, key()
    first = asyncio.ensure_future(open_client.post("/v1/chat", json=body, headers=headers))
    await asyncio.wait_for(model.entered.wait(), 10)
    retry = asyncio.ensure_future(open_client.post("/v1/chat", json=body, headers=headers))
    await asyncio.sleep(0.05)
    assert not retry.done()
    model.gate.set()
    a, b = await asyncio.wait_for(asyncio.gather(first, retry), 10)
    assert a.json() == b.json()
    assert b.headers["idempotent-replayed"] == "true"
    assert model.calls == 1
    assert await agent.store.size("default") == 2


async def test_keys_of_one_tenant_never_match_anothers(
    auth_client: httpx.AsyncClient, tenants: Tenants, model: Counting
) -> None:
    headers = key()
    body = {"message": "same words"}
    alice = await auth_client.post(
        "/v1/chat", json=body, headers=headers | tenants.headers("alice")
    )
    bob = await auth_client.post("/v1/chat", json=body, headers=headers | tenants.headers("bob"))
    assert (alice.json()["user_id"], bob.json()["user_id"]) == ("alice", "bob")
    assert bob.json()["run_id"] != alice.json()["run_id"]
    assert "idempotent-replayed" not in bob.headers
    assert model.calls == 2


# --- the OpenAI-compatible route ----------------------------------------------------------------


async def test_the_openai_client_sends_the_key_with_extra_headers(
    agent: Agent, model: Counting
) -> None:
    with serve(create_app(agent, open_settings())) as url:
        client = AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        headers = key()
        replies = []
        for _ in range(2):
            raw = await client.chat.completions.with_raw_response.create(
                model="tenantry",
                messages=[{"role": "user", "content": "hello"}],
                extra_headers=headers,
            )
            replies.append((raw.parse(), raw.headers.get("idempotent-replayed")))
        streamed = await client.chat.completions.create(
            model="tenantry",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            extra_headers=headers,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in streamed if c.choices])
        refused_status = None
        try:
            await client.chat.completions.create(
                model="tenantry",
                messages=[{"role": "user", "content": "another text"}],
                extra_headers=headers,
            )
        except Exception as exc:  # the client's typed error for a 422
            refused_status = getattr(exc, "status_code", None)
        await client.close()
    (first, first_flag), (again, again_flag) = replies
    assert first.id == again.id
    assert first.choices[0].message.content == again.choices[0].message.content == text
    assert (first_flag, again_flag) == (None, "true")
    assert refused_status == 422
    assert model.calls == 1


# --- A2A: messageId is the key --------------------------------------------------------------------


def _send(message_id: str, text: str, context_id: str = "a2a-user") -> dict[str, Any]:
    return rpc(
        "SendMessage",
        {
            "message": {
                "role": "ROLE_USER",
                "messageId": message_id,
                "contextId": context_id,
                "parts": [{"text": text}],
            }
        },
    )


def _reply(response: httpx.Response) -> str:
    body = response.json()
    assert "result" in body, body
    parts = body["result"]["task"]["status"]["message"]["parts"]
    return "".join(p["text"] for p in parts)


async def test_an_a2a_message_resent_with_its_message_id_runs_once(
    open_client: httpx.AsyncClient, model: Counting, agent: Agent
) -> None:
    message_id = str(uuid.uuid4())
    first = await open_client.post("/a2a/jsonrpc", json=_send(message_id, "hi"), headers=V1)
    again = await open_client.post("/a2a/jsonrpc", json=_send(message_id, "hi"), headers=V1)
    assert _reply(first) == _reply(again) == "reply 1 to hi"
    assert again.json()["result"]["task"]["id"] != first.json()["result"]["task"]["id"]
    assert model.calls == 1
    assert await agent.store.size("a2a-user") == 2
    other = await open_client.post("/a2a/jsonrpc", json=_send(str(uuid.uuid4()), "hi"), headers=V1)
    assert _reply(other) == "reply 2 to hi"
    assert model.calls == 2


async def test_an_a2a_message_id_reused_for_another_text_is_a_new_turn(
    open_client: httpx.AsyncClient, model: Counting, agent: Agent
) -> None:
    # as the A2A TCK does: one messageId, several messages (a cue to its own test agent)
    message_id = "tck-complete-task-1234"
    for text in ("Hello from TCK", "Blocking request", "Hello from TCK"):
        response = await open_client.post("/a2a/jsonrpc", json=_send(message_id, text), headers=V1)
        assert "result" in response.json(), response.text
    assert model.calls == 2  # the third is the first's resend
    assert await agent.store.size("a2a-user") == 4


async def test_an_a2a_message_id_is_scoped_to_the_tenant(
    open_client: httpx.AsyncClient, model: Counting
) -> None:
    message_id = str(uuid.uuid4())  # open mode: contextId is the tenant
    a = await open_client.post("/a2a/jsonrpc", json=_send(message_id, "hi", "ua"), headers=V1)
    b = await open_client.post("/a2a/jsonrpc", json=_send(message_id, "hi", "ub"), headers=V1)
    assert (_reply(a), _reply(b)) == ("reply 1 to hi", "reply 2 to hi")


async def test_a_chat_key_never_matches_an_a2a_message_id(
    open_client: httpx.AsyncClient, model: Counting
) -> None:
    shared = str(uuid.uuid4())
    await open_client.post("/a2a/jsonrpc", json=_send(shared, "hi", "default"), headers=V1)
    chat = await open_client.post(
        "/v1/chat", json={"message": "hi"}, headers={"Idempotency-Key": shared}
    )
    assert chat.status_code == 200
    assert "idempotent-replayed" not in chat.headers
    assert model.calls == 2


def test_the_ttl_setting_reaches_the_default_agent() -> None:
    app = create_app(settings=open_settings(idempotency_ttl_hours=0.5, store_url="memory://"))
    assert app.state.tenantry.agent.idempotency_ttl == 1800.0


def test_the_ttl_setting_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idempotency_ttl_hours"):
        open_settings(idempotency_ttl_hours=0)
