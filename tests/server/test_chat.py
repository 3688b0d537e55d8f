"""The chat API: replies, streaming, and every kind of bad input answered with a JSON 4xx,
leaving nothing stored."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from tenantry import Agent, FunctionModel, InMemoryStore, Message, ModelResponse
from tenantry.errors import ModelError, StoreUnavailable
from tenantry.models import ModelBase, StreamItem
from tenantry.server import create_app
from tenantry.types import ToolSpec
from tests.server.conftest import open_settings


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Give (event, data) pairs of a Server-Sent Events body."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_chat_replies_for_the_named_user_and_session(open_client: httpx.AsyncClient) -> None:
    first = await open_client.post(
        "/v1/chat", json={"message": "My name is Alice", "user_id": "a", "session_id": "s1"}
    )
    assert first.status_code == 200
    body = first.json()
    assert body["user_id"] == "a"
    assert body["session_id"] == "s1"
    assert body["usage"]["requests"] == 1
    assert re.fullmatch("[A-Za-z0-9_-]{22}", body["run_id"])  # a fresh id per turn
    again = await open_client.post(
        "/v1/chat", json={"message": "What is my name?", "user_id": "a", "session_id": "s1"}
    )
    assert again.json()["reply"] == "Your name is Alice."
    other_session = await open_client.post(
        "/v1/chat", json={"message": "What is my name?", "user_id": "a", "session_id": "s2"}
    )
    assert "don't know your name" in other_session.json()["reply"]


async def test_open_mode_defaults_to_the_default_user(open_client: httpx.AsyncClient) -> None:
    reply = await open_client.post("/v1/chat", json={"message": "hi"})
    assert reply.json()["user_id"] == "default"
    assert reply.json()["session_id"] == "default"


async def test_streamed_reply_reassembles_to_the_non_streamed_reply(
    client_for: Any,
) -> None:
    # Two servers with identical histories: one answers streamed, the other not.
    streamed_app = create_app(Agent(store=InMemoryStore()), open_settings())
    plain_app = create_app(Agent(store=InMemoryStore()), open_settings())
    streamed, plain = await client_for(streamed_app), await client_for(plain_app)
    for text in ("My name is Alice Smith", "What's my name?", "Tell me a long story please"):
        body = {"message": text, "user_id": "u", "session_id": "s"}
        response = await streamed.post("/v1/chat/stream", json=body)
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.text)
        deltas = [data["text"] for name, data in events if name == "delta"]
        assert len(deltas) > 1
        name, done = events[-1]
        assert name == "done"
        reference = (await plain.post("/v1/chat", json=body)).json()
        assert "".join(deltas) == done["reply"] == reference["reply"]
        assert done["user_id"] == "u"
        assert done["session_id"] == "s"


async def test_a_streamed_turn_is_stored_like_a_plain_one(
    open_client: httpx.AsyncClient,
) -> None:
    await open_client.post("/v1/chat/stream", json={"message": "My name is Eve", "user_id": "e"})
    answer = await open_client.post("/v1/chat", json={"message": "Who am I?", "user_id": "e"})
    assert answer.json()["reply"] == "Your name is Eve."


class FailingModel(ModelBase):
    """Streams `deltas` deltas, then fails."""

    name = "failing"

    def __init__(self, deltas: int) -> None:
        self.deltas = deltas

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        raise RuntimeError("the model fell over")

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        for n in range(self.deltas):
            yield f"part{n} "
        raise RuntimeError("the model fell over")


async def test_a_model_failure_mid_stream_ends_with_an_error_event(client_for: Any) -> None:
    store = InMemoryStore()
    client = await client_for(
        create_app(Agent(model=FailingModel(2), store=store), open_settings())
    )
    response = await client.post("/v1/chat/stream", json={"message": "hi", "user_id": "u"})
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["delta", "delta", "error"]
    assert events[-1][1]["error"]["type"] == "ModelError"
    assert await store.size("u") == 0


async def test_a_model_failure_before_any_delta_is_a_502(client_for: Any) -> None:
    store = InMemoryStore()
    client = await client_for(
        create_app(Agent(model=FailingModel(0), store=store), open_settings())
    )
    streamed = await client.post("/v1/chat/stream", json={"message": "hi", "user_id": "u"})
    assert streamed.status_code == 502
    assert streamed.json()["error"]["type"] == "ModelError"
    plain = await client.post("/v1/chat", json={"message": "hi", "user_id": "u"})
    assert plain.status_code == 502
    assert await store.size("u") == 0


class DownStore(InMemoryStore):
    """A store whose database went away (its read primitive fails, so every public read
    that a turn may make, with or without accounting and memory, fails)."""

    async def _snapshot(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("the database is unreachable; retry later")

    async def ping(self) -> None:
        raise StoreUnavailable("the database is unreachable; retry later")


@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/stream", "/chat"])
async def test_an_unreachable_store_is_503_with_retry_after(
    client_for: Any, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = await client_for(create_app(Agent(store=DownStore()), open_settings()))
    response = await client.post(
        path, json={"message": "hi", "user_id": "u"}, headers={"X-Request-ID": "req-7"}
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"] == {
        "type": "StoreUnavailable",
        "message": "the store is unavailable; retry later; the server logged the details "
        "with request id req-7",
    }
    assert "StoreUnavailable [req-7]: the database is unreachable; retry later" in caplog.text
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["Retry-After"] == "1"


async def test_a_busy_scope_is_409_with_retry_after(client_for: Any) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        started.set()
        await release.wait()
        return ModelResponse("done")

    store = InMemoryStore()
    agent = Agent(model=FunctionModel(slow), store=store, lock_timeout=0.05)
    client = await client_for(create_app(agent, open_settings()))
    first = asyncio.create_task(client.post("/v1/chat", json={"message": "a", "user_id": "u"}))
    await started.wait()
    busy = await client.post("/v1/chat", json={"message": "b", "user_id": "u"})
    assert busy.status_code == 409
    assert busy.headers["Retry-After"] == "1"
    assert busy.json()["error"]["type"] == "ScopeBusy"
    other_user = asyncio.create_task(client.post("/v1/chat", json={"message": "c", "user_id": "v"}))
    release.set()
    assert (await first).status_code == 200
    assert (await other_user).status_code == 200
    assert [m.content for m in await store.get_messages("u")] == ["a", "done"]


BAD_BODIES = [
    ("{not json", 400, "MalformedJSON"),
    ('{"message": "hi"', 400, "MalformedJSON"),
    ("[1, 2]", 422, "InvalidRequest"),
    ('"just a string"', 422, "InvalidRequest"),
    ("{}", 422, "InvalidRequest"),
    ('{"message": ""}', 422, "InvalidRequest"),
    ('{"message": "   \\n "}', 422, "InvalidRequest"),
    ('{"message": 42}', 422, "InvalidRequest"),
    ('{"message": "hi", "user_id": ""}', 422, "InvalidRequest"),
    ('{"message": "hi", "user_id": "  "}', 422, "InvalidRequest"),
    ('{"message": "hi", "user_id": 7}', 422, "InvalidRequest"),
    ('{"message": "hi", "user_id": "a\\u0000b"}', 422, "InvalidRequest"),
    ('{"message": "hi", "user_id": "line\\nbreak"}', 422, "InvalidRequest"),
    ('{"message": "hi", "user_id": "' + "x" * 256 + '"}', 422, "InvalidRequest"),
    ('{"message": "hi", "session_id": ""}', 422, "InvalidRequest"),
    ('{"message": "hi", "session_id": "\\u001b[31m"}', 422, "InvalidRequest"),
    ('{"message": "hi", "session_id": "' + "y" * 256 + '"}', 422, "InvalidRequest"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "kind"),
    [
        (path, *case)
        for path in ("/v1/chat", "/v1/chat/stream", "/chat")
        for case in BAD_BODIES
        if not (path == "/chat" and "session_id" in case[0])  # the seed's body has no session
    ],
)
async def test_bad_input_is_a_json_4xx_and_stores_nothing(
    agent: Agent, open_client: httpx.AsyncClient, path: str, body: str, status: int, kind: str
) -> None:
    response = await open_client.post(
        path, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind
    assert error["message"]
    assert "Traceback" not in response.text
    assert await agent.store.list_users() == []


async def test_error_messages_name_the_field_and_the_rule(open_client: httpx.AsyncClient) -> None:
    response = await open_client.post("/v1/chat", json={"message": "hi", "user_id": "a\u0000b"})
    error = response.json()["error"]
    assert error["message"].startswith("body.user_id: user id 'a\\x00b' must not contain control")
    assert error["details"] == [{"field": "body.user_id", "message": error["message"][14:]}]


async def test_a_json_body_sent_as_a_form_says_to_send_json(
    agent: Agent, open_client: httpx.AsyncClient
) -> None:
    # What `curl -d '{...}'` sends when the -H "Content-Type: application/json" is forgotten.
    response = await open_client.post(
        "/chat",
        content='{"user_id": "user-a", "message": "My name is Alice"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415  # 422 until JSON-only bodies became the rule (CSRF)
    assert response.json()["error"]["type"] == "UnsupportedMediaType"
    message = response.json()["error"]["message"]
    assert "Content-Type: application/json" in message
    assert "application/x-www-form-urlencoded" in message
    assert await agent.store.list_users() == []


async def test_an_oversize_body_is_413_even_without_content_length(
    agent: Agent, client_for: Any
) -> None:
    client = await client_for(create_app(agent, open_settings(max_body_bytes=2048)))
    big = json.dumps({"message": "x" * 5000, "user_id": "u"}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    streamed = await client.post("/v1/chat", content=chunks())
    assert streamed.status_code == 413
    assert streamed.json()["error"]["type"] == "BodyTooLarge"
    declared = await client.post("/v1/chat", content=big)
    assert declared.status_code == 413
    fits = await client.post("/v1/chat", json={"message": "x" * 1000, "user_id": "u"})
    assert fits.status_code == 200
    assert await agent.store.size("u") == 2


async def test_unknown_routes_and_methods_are_json_errors(open_client: httpx.AsyncClient) -> None:
    missing = await open_client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "NotFound"
    wrong_method = await open_client.get("/v1/chat")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "MethodNotAllowed"


class BuggyStore(InMemoryStore):
    """A store with a bug: it raises something that is not a tenantry error."""

    async def _snapshot(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals at /srv/db")


async def test_an_unexpected_failure_is_a_500_without_internals(client_for: Any) -> None:
    client = await client_for(create_app(Agent(store=BuggyStore()), open_settings()))
    response = await client.post(
        "/v1/chat", json={"message": "hi"}, headers={"X-Request-ID": "req-42"}
    )
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "req-42"
    assert response.json() == {
        "error": {
            "type": "InternalError",
            "message": "internal error; the server logged it with request id req-42",
        }
    }
    streamed = await client.post("/v1/chat/stream", json={"message": "hi"})
    assert streamed.status_code == 500
    assert "/srv/db" not in streamed.text


async def test_model_errors_are_502(client_for: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def refuses(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        raise ModelError("the provider said no")

    client = await client_for(
        create_app(Agent(model=FunctionModel(refuses), store=InMemoryStore()), open_settings())
    )
    response = await client.post("/v1/chat", json={"message": "hi"}, headers={"X-Request-ID": "r1"})
    assert response.status_code == 502
    assert response.json()["error"] == {
        "type": "ModelError",
        "message": "the model failed; the server logged the details with request id r1",
    }
    assert "ModelError [r1]: the provider said no" in caplog.text


async def test_every_response_carries_a_request_id(open_client: httpx.AsyncClient) -> None:
    generated = await open_client.get("/healthz")
    assert re.fullmatch("[A-Za-z0-9_-]{22}", generated.headers["X-Request-ID"])
    kept = await open_client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["X-Request-ID"] == "abc-123"
    unsafe = await open_client.get("/healthz", headers={"X-Request-ID": "bad id\twith tab"})
    assert unsafe.headers["X-Request-ID"] != "bad id\twith tab"
