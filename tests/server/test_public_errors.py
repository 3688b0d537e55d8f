"""What may reach a client (issue 11, findings 4 and 5 and their class): every server error,
whatever its cause, through every transport (JSON errors, the chat stream's error event,
OpenAI-compatible and its stream, A2A and its stream, /readyz, the user data routes) reaches
the client as a fixed text with the request id; the model provider's message, the store's
host, port and path, SQL and tracebacks stay in the log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from tenantry import Agent, InMemoryStore, Message, ModelResponse
from tenantry.errors import (
    MaxLoopsExceeded,
    ModelError,
    ModelHTTPError,
    ModelUnreachable,
    StoreClosed,
    StoreUnavailable,
    ToolError,
)
from tenantry.models import ModelBase, StreamItem
from tenantry.server import create_app
from tenantry.server.errors import STATUS, WITHHELD, public_message
from tenantry.types import ToolSpec
from tests.server.conftest import open_settings

# Each secret is what real failures carry: provider text with a key fragment and an internal
# host, a store's address, SQL, a file path, a traceback. None may reach a client. Ports keep
# their colon: a bare "6379" also turns up in random task ids (hex) and request ids.
LEAKS = [
    "CANARY",
    "sk-live",
    "llm.internal.corp",
    "10.20.30.40",
    "127.0.0.1",
    ":5432",
    ":6379",
    "tenantry_prod",
    "/srv/",
    "SELECT",
    "Traceback",
    "Connection refused",
    "Invalid API key",
    "RuntimeError",
]
PROVIDER = "Invalid API key sk-live-CANARY1234 for project p-9 (http://llm.internal.corp:8443)"
MODEL_ERRORS: dict[str, Exception] = {
    "ModelHTTPError": ModelHTTPError(400, PROVIDER, model="gpt-x"),
    "ModelUnreachable": ModelUnreachable(
        "cannot reach the model API: Connection refused (10.20.30.40:11434) CANARY"
    ),
    "ModelError": ModelError(f"model 'gpt-x' failed: APIError: {PROVIDER}"),
    "provider bug": RuntimeError('Traceback (most recent call last):\n File "/srv/llm.py" CANARY'),
    "MaxLoopsExceeded": MaxLoopsExceeded("tools looped: SELECT secret FROM /srv/tools CANARY"),
    "ToolError": ToolError("lookup", RuntimeError("SELECT * FROM users; /srv/db CANARY")),
}
STORE_ERRORS: dict[str, Exception] = {
    "postgres down": StoreUnavailable(
        "PostgreSQL at 127.0.0.1:5432/tenantry_prod is unreachable: Connection refused CANARY"
    ),
    "redis down": StoreUnavailable(
        "Error 111 connecting to 127.0.0.1:6379. Connection refused. CANARY"
    ),
    "closed": StoreClosed("the store at /srv/data/tenantry.db was closed CANARY"),
    "store bug": RuntimeError(
        "Traceback: SELECT * FROM tenantry_prod.messages WHERE user_id = $1 /srv/ CANARY"
    ),
}


class FailingModel(ModelBase):
    """Streams `deltas` text deltas, then raises `error` (complete() raises it at once)."""

    name = "failing"

    def __init__(self, error: Exception, deltas: int = 0) -> None:
        self.error, self.deltas = error, deltas

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        raise self.error

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        for n in range(self.deltas):
            yield f"part {n} "
        raise self.error


class FailingStore(InMemoryStore):
    """Raises `error` on reads (before the model) or on the turn's write (after it)."""

    def __init__(self, error: Exception, *, on_write: bool = False) -> None:
        super().__init__()
        self.error, self.on_write = error, on_write

    async def _snapshot(self, *args: Any, **kwargs: Any) -> Any:
        if not self.on_write:
            raise self.error
        return await super()._snapshot(*args, **kwargs)

    async def add_many(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def ping(self) -> None:
        raise self.error

    async def list_sessions(self, *args: Any, **kwargs: Any) -> list[str]:
        raise self.error

    async def list_users(self) -> list[str]:
        raise self.error

    async def clear(self, *args: Any, **kwargs: Any) -> None:
        raise self.error


def a2a(method: str, version_1: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    if version_1:
        message: dict[str, Any] = {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}
    else:
        message = {"kind": "message", "messageId": "m", "role": "user"}
        message["parts"] = [{"kind": "text", "text": "hi"}]
    message["contextId"] = "u"
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"message": message}}
    return body, ({"A2A-Version": "1.0"} if version_1 else {})


CHAT = {"message": "hi", "user_id": "u"}
COMPLETION = {"messages": [{"role": "user", "content": "hi"}], "user": "u"}
TURNS: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
    ("chat", "/v1/chat", CHAT, {}),
    ("legacy chat", "/chat", CHAT, {}),
    ("chat stream", "/v1/chat/stream", CHAT, {}),
    ("completions", "/v1/chat/completions", COMPLETION, {}),
    ("completions stream", "/v1/chat/completions", {**COMPLETION, "stream": True}, {}),
    ("a2a", "/a2a/jsonrpc", *a2a("SendMessage")),
    ("a2a 0.3", "/a2a/jsonrpc", *a2a("message/send", version_1=False)),
    ("a2a stream", "/a2a/jsonrpc", *a2a("SendStreamingMessage")),
]
READS = [
    ("GET", "/readyz"),
    ("GET", "/v1/users"),
    ("GET", "/v1/users/u/sessions"),
    ("GET", "/v1/users/u/export"),
    ("GET", "/v1/users/u/sessions/default/messages"),
    ("DELETE", "/v1/users/u"),
    ("DELETE", "/v1/users/u/sessions/default"),
]


def assert_nothing_leaks(what: str, response: httpx.Response, caplog: Any) -> None:
    body = response.text
    for leak in LEAKS:
        assert leak not in body, f"{what}: {leak!r} reached the client: {body[:500]}"
    assert response.status_code >= 500 or "error" in body, f"{what}: no error: {body[:300]}"
    request_id = response.headers["X-Request-ID"]
    assert request_id in body, f"{what}: the body does not give the request id"
    assert "CANARY" in caplog.text, f"{what}: the detail is not in the log"
    caplog.clear()


async def send_turns(client: httpx.AsyncClient, caplog: Any, label: str) -> list[str]:
    bodies = []
    for name, path, body, headers in TURNS:
        response = await client.post(path, json=body, headers=headers)
        assert_nothing_leaks(f"{label} via {name}", response, caplog)
        bodies.append(response.text)
    return bodies


@pytest.mark.parametrize("deltas", [0, 2], ids=["before-any-delta", "mid-stream"])
@pytest.mark.parametrize("error", MODEL_ERRORS.values(), ids=MODEL_ERRORS.keys())
async def test_model_failures_reach_no_client_through_any_transport(
    client_for: Any, caplog: pytest.LogCaptureFixture, error: Exception, deltas: int
) -> None:
    agent = Agent(model=FailingModel(error, deltas), store=InMemoryStore())
    client = await client_for(create_app(agent, open_settings()))
    bodies = await send_turns(client, caplog, type(error).__name__)
    if isinstance(error, ModelHTTPError):  # what the client does get: the provider's status
        assert all("the model API answered HTTP 400" in body for body in bodies)
    assert await agent.store.size("u") == 0


@pytest.mark.parametrize("on_write", [False, True], ids=["before-the-model", "at-the-write"])
@pytest.mark.parametrize("error", STORE_ERRORS.values(), ids=STORE_ERRORS.keys())
async def test_store_failures_reach_no_client_through_any_transport(
    client_for: Any, caplog: pytest.LogCaptureFixture, error: Exception, on_write: bool
) -> None:
    store = FailingStore(error, on_write=on_write)
    client = await client_for(create_app(Agent(store=store), open_settings()))
    await send_turns(client, caplog, type(error).__name__)
    for method, path in READS:
        response = await client.request(method, path)
        assert response.status_code >= 500, (path, response.text)
        assert_nothing_leaks(f"{type(error).__name__} via {method} {path}", response, caplog)


async def test_the_public_texts_are_what_the_issue_promises(client_for: Any) -> None:
    agent = Agent(model=FailingModel(MODEL_ERRORS["ModelHTTPError"]), store=InMemoryStore())
    client = await client_for(create_app(agent, open_settings()))
    reply = await client.post("/v1/chat", json=CHAT, headers={"X-Request-ID": "req-9"})
    assert reply.status_code == 502
    assert reply.json() == {
        "error": {
            "type": "ModelHTTPError",
            "message": "the model API answered HTTP 400; the server logged the details with "
            "request id req-9",
        }
    }
    down = await client_for(
        create_app(Agent(store=FailingStore(STORE_ERRORS["postgres down"])), open_settings())
    )
    ready = await down.get("/readyz", headers={"X-Request-ID": "req-10"})
    assert (ready.status_code, ready.headers["Retry-After"]) == (503, "1")
    assert ready.json()["error"] == {
        "type": "StoreUnavailable",
        "message": "the store is unavailable; retry later; the server logged the details with "
        "request id req-10",
    }
    stream = await client.post(
        "/v1/chat/completions", json={**COMPLETION, "stream": True}, headers={"X-Request-ID": "s"}
    )
    assert stream.status_code == 502  # failed before the first delta: a plain error


async def test_a_late_failure_is_an_error_event_with_the_public_text(
    client_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    agent = Agent(model=FailingModel(MODEL_ERRORS["ModelHTTPError"], 1), store=InMemoryStore())
    client = await client_for(create_app(agent, open_settings()))
    streamed = await client.post("/v1/chat/stream", json=CHAT, headers={"X-Request-ID": "e1"})
    assert streamed.status_code == 200
    event, data = streamed.text.strip().split("\n\n")[-1].splitlines()
    assert event == "event: error"
    assert json.loads(data.removeprefix("data: "))["error"]["message"].startswith(
        "the model API answered HTTP 400; "
    )
    assert "ModelHTTPError [e1]: HTTP 400 from model 'gpt-x': Invalid API key" in caplog.text


def test_every_server_error_class_has_a_fixed_public_text() -> None:
    for error_class in WITHHELD:
        assert next(STATUS[c] for c in error_class.__mro__ if c in STATUS) >= 500
    for error in [*MODEL_ERRORS.values(), *STORE_ERRORS.values()]:
        assert "CANARY" not in public_message(error, "r")
        assert "sk-live" not in public_message(error, "r")
