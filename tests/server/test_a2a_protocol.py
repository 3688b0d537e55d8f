"""A2A as the protocol's own test kit (the A2A TCK) checks it, in raw JSON-RPC: what a
client that is not the SDK's sends and reads (paths, part media types, error envelopes)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tenantry import Agent, Budget, InMemoryStore
from tenantry.models import ModelBase, ModelResponse, StreamItem
from tenantry.server import create_app
from tenantry.types import Message, ToolSpec
from tenantry.usage import Budgets
from tests.server.conftest import Tenants
from tests.server.test_hostile_http import ScriptedModel
from tests.support.servers import serve

V1 = {"A2A-Version": "1.0"}


def rpc(method: str, params: dict[str, Any], call_id: int | str = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}


def message(*parts: dict[str, Any], context_id: str = "user-a") -> dict[str, Any]:
    return {
        "message": {
            "role": "ROLE_USER",
            "messageId": str(uuid.uuid4()),
            "contextId": context_id,
            "parts": list(parts),
        }
    }


async def test_the_endpoint_answers_with_a_trailing_slash_too(
    open_client: httpx.AsyncClient, agent: Agent
) -> None:
    # The TCK's client posts "/" relative to the card's URL: /a2a/jsonrpc/.
    for user, path in (("plain", "/a2a/jsonrpc"), ("slash", "/a2a/jsonrpc/")):
        sent = rpc("SendMessage", message({"text": "My name is Ada"}, context_id=user))
        response = await open_client.post(path, json=sent, headers=V1)
        assert response.status_code == 200, response.text
        assert "result" in response.json()
    assert await agent.store.list_users() == ["plain", "slash"]


def error_of(response: httpx.Response) -> dict[str, Any]:
    """Give the JSON-RPC error of a response, checking the envelope (of a stream's last
    event, when it is a stream)."""
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        response = httpx.Response(200, content=data[-1].encode())
    body = response.json()
    assert body["jsonrpc"] == "2.0", body
    assert "result" not in body, body
    error: dict[str, Any] = body["error"]
    return error


UNSUPPORTED = {"raw": "dGNr", "mediaType": "application/x-unsupported-tck-type"}
"""CORE-SEND-003's part: a media type the card does not declare."""


@pytest.mark.parametrize(
    "parts",
    [
        [UNSUPPORTED],
        [{"text": "My name is Ada"}, UNSUPPORTED],
        [{"text": "see", "mediaType": "text/markdown"}],
        [{"url": "https://example.com/a.png"}],
        [{"data": {"name": "Ada"}}],
        [{"raw": "UE5H"}],
    ],
    ids=["tck-part", "text-and-unsupported", "markdown-text", "url", "data", "raw-untyped"],
)
async def test_a_part_the_agent_cannot_read_is_content_type_not_supported(
    open_client: httpx.AsyncClient, agent: Agent, parts: list[dict[str, Any]]
) -> None:
    for method in ("SendMessage", "SendStreamingMessage"):
        response = await open_client.post(
            "/a2a/jsonrpc", json=rpc(method, message(*parts)), headers=V1
        )
        error = error_of(response)
        assert error["code"] == -32005, error
        assert error["data"][0]["reason"] == "CONTENT_TYPE_NOT_SUPPORTED"
        assert "text" in error["message"]
    assert await agent.store.list_users() == []  # not even the readable text was kept


async def test_a_raw_text_plain_part_is_read_as_text(open_client: httpx.AsyncClient) -> None:
    name = {"raw": base64.b64encode(b"My name is Ada").decode(), "mediaType": "text/plain"}
    await open_client.post("/a2a/jsonrpc", json=rpc("SendMessage", message(name)), headers=V1)
    asked = rpc("SendMessage", message({"text": "What is my name?"}))
    answer = (await open_client.post("/a2a/jsonrpc", json=asked, headers=V1)).json()
    assert "Your name is Ada." in json.dumps(answer["result"])
    latin = {"raw": base64.b64encode("Zoë".encode("latin-1")).decode(), "mediaType": "text/plain"}
    refused = await open_client.post(
        "/a2a/jsonrpc", json=rpc("SendMessage", message(latin)), headers=V1
    )
    assert error_of(refused)["code"] == -32602
    assert "UTF-8" in error_of(refused)["message"]


@pytest.mark.parametrize("path", ["/a2a/jsonrpc", "/a2a/jsonrpc/"])
@pytest.mark.parametrize("call_id", [7, "call-7"])
async def test_a_call_without_a_valid_credential_gets_a_json_rpc_401(
    auth_client: httpx.AsyncClient, agent: Agent, path: str, call_id: int | str
) -> None:
    sent = rpc("SendMessage", message({"text": "hi"}), call_id)
    for credential in ({}, {"X-API-Key": "tnt_wrong"}, {"Authorization": "Basic eDp5"}):
        response = await auth_client.post(path, json=sent, headers={**V1, **credential})
        assert response.status_code == 401
        assert response.json()["id"] == call_id
        error = error_of(response)
        assert error["code"] == -32000
        assert error["data"][0]["reason"] == "UNAUTHENTICATED"
        assert error["data"][0]["metadata"] == {"type": "Unauthorized"}
        assert error["message"]
        # the schemes the card declares, one challenge each
        assert response.headers.get_list("www-authenticate") == [
            'ApiKey realm="tenantry", in="header", name="X-API-Key"',
            'Bearer realm="tenantry"',
        ]
    assert await agent.store.list_users() == []


async def test_a_401_echoes_no_id_it_would_have_to_parse_a_large_body_for(
    auth_client: httpx.AsyncClient,
) -> None:
    from tenantry.server.a2a_refusals import ID_BODY_LIMIT

    sent = rpc("SendMessage", message({"text": "x" * ID_BODY_LIMIT}), 7)
    response = await auth_client.post("/a2a/jsonrpc", json=sent, headers=V1)
    assert response.status_code == 401
    assert response.json()["id"] is None
    for garbage in (b"[1, 2]", b'{"id": true}', b'{"id": {"a": 1}}', b"{"):
        response = await auth_client.post(
            "/a2a/jsonrpc", content=garbage, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 401
        assert response.json()["id"] is None


async def test_other_routes_keep_the_plain_json_401(auth_client: httpx.AsyncClient) -> None:
    response = await auth_client.post("/v1/chat", json={"message": "hi"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "Unauthorized"
    assert response.headers["www-authenticate"] == 'Bearer realm="tenantry"'


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_a_body_not_sent_as_json_gets_a_json_rpc_415(
    open_client: httpx.AsyncClient, agent: Agent, content_type: str
) -> None:
    # JSONRPC-SSE-002 sends a Python repr as text/plain; valid JSON as text/plain is no better
    sent = json.dumps(rpc("SendMessage", message({"text": "My name is Ada"}))).encode()
    headers = {**V1, "Content-Type": content_type} if content_type else V1
    response = await open_client.post("/a2a/jsonrpc", content=sent, headers=headers)
    assert response.status_code == 415
    assert response.json()["id"] is None  # the body is not read as JSON, not even for its id
    error = error_of(response)
    assert error["code"] == -32005
    assert error["data"][0]["reason"] == "CONTENT_TYPE_NOT_SUPPORTED"
    assert "application/json" in error["message"]
    assert await agent.store.list_users() == []


async def test_a_sent_message_gets_a_completed_task_the_caller_can_get_again(
    open_client: httpx.AsyncClient, agent: Agent
) -> None:
    sent = rpc("SendMessage", message({"text": "My name is Ada"}))
    task = (await open_client.post("/a2a/jsonrpc", json=sent, headers=V1)).json()["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    reply = task["status"]["message"]["parts"][0]["text"]
    assert reply.startswith("Nice to meet you, Ada")
    assert task["artifacts"] == [
        {"artifactId": "reply", "name": "reply", "parts": [{"text": reply}]}
    ]
    again = rpc("GetTask", {"id": task["id"]})
    got = (await open_client.post("/a2a/jsonrpc", json=again, headers=V1)).json()["result"]
    assert got == task
    # a finished task takes no more messages (CORE-SEND-002), and nothing of that is stored
    follow_up = message({"text": "and more"})
    follow_up["message"]["taskId"] = task["id"]
    refused = await open_client.post("/a2a/jsonrpc", json=rpc("SendMessage", follow_up), headers=V1)
    assert "terminal state" in error_of(refused)["message"]
    elsewhere = message({"text": "and more"}, context_id="user-b")
    elsewhere["message"]["taskId"] = task["id"]
    refused = await open_client.post("/a2a/jsonrpc", json=rpc("SendMessage", elsewhere), headers=V1)
    assert error_of(refused)["code"] == -32602  # the task's context is not user-b (CORE-MULTI-006)
    assert len(await agent.store.get_messages("user-a")) == 2
    assert await agent.store.list_users() == ["user-a"]


def test_a_task_is_never_cancelled_running_or_finished(tenants: Tenants) -> None:
    release = threading.Event()
    store = InMemoryStore()
    agent = Agent(model=ScriptedModel(["Hello", " world"], release), store=store)
    alice = {**tenants.headers("alice"), **V1}
    sent = rpc("SendStreamingMessage", message({"text": "hi"}, context_id="chat"))
    with serve(create_app(agent, tenants.settings())) as url, httpx.Client(base_url=url) as http:

        def cancel(task_id: str) -> dict[str, Any]:
            return error_of(
                http.post("/a2a/jsonrpc", json=rpc("CancelTask", {"id": task_id}), headers=alice)
            )

        def state(task_id: str) -> str:
            got = http.post("/a2a/jsonrpc", json=rpc("GetTask", {"id": task_id}), headers=alice)
            return str(got.json()["result"]["status"]["state"])

        with http.stream("POST", "/a2a/jsonrpc", json=sent, headers=alice) as stream:
            lines = stream.iter_lines()
            first = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
            task_id = first["result"]["task"]["id"]
            assert state(task_id) == "TASK_STATE_WORKING"  # the model waits for `release`
            refused = cancel(task_id)
            assert refused["code"] == -32002
            assert refused["data"][0]["reason"] == "TASK_NOT_CANCELABLE"
            assert "TASK_STATE_WORKING" in refused["message"]
            assert state(task_id) == "TASK_STATE_WORKING"  # refusing did not fail the task
            release.set()
            rest = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
        assert rest[-1]["result"]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
        assert state(task_id) == "TASK_STATE_COMPLETED"
        assert cancel(task_id)["code"] == -32002
        assert cancel("no-such-task")["code"] == -32001
    assert [m.content for m in asyncio.run(store.get_messages("alice", "chat"))] == [
        "hi",
        "Hello world",
    ]


def test_a_streamed_delta_is_sent_before_the_model_gives_the_next(tenants: Tenants) -> None:
    """Each chunk of the reply artifact leaves when the model gives it (the first one while
    the model still thinks about the second); an empty chunk marks the last."""
    release = threading.Event()
    agent = Agent(model=ScriptedModel(["Hello", " world"], release), store=InMemoryStore())
    alice = {**tenants.headers("alice"), **V1}
    sent = rpc("SendStreamingMessage", message({"text": "hi"}, context_id="chat"))
    with (
        serve(create_app(agent, tenants.settings())) as url,
        httpx.Client(base_url=url, timeout=3) as http,
        http.stream("POST", "/a2a/jsonrpc", json=sent, headers=alice) as stream,
    ):
        events = (json.loads(line[5:]) for line in stream.iter_lines() if line[:5] == "data:")
        updates = []
        for event in events:
            if "artifactUpdate" in event["result"]:
                updates.append(event["result"]["artifactUpdate"])
                break
        # the model is still waiting for `release`: this chunk left without the next one
        assert updates[0]["artifact"]["parts"] == [{"text": "Hello"}]
        assert not updates[0].get("lastChunk", False)
        release.set()
        rest = [e["result"] for e in events]
    updates += [r["artifactUpdate"] for r in rest if "artifactUpdate" in r]
    assert [u["artifact"]["parts"][0]["text"] for u in updates] == ["Hello", " world", ""]
    assert [u.get("lastChunk", False) for u in updates] == [False, False, True]
    assert [u.get("append", False) for u in updates] == [False, True, True]
    assert rest[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"


class ThinkingModel(ModelBase):
    """Streams "Hello" once `release` (a thread event) is set: the model's thinking time. With
    `error`, raises it then instead."""

    name = "thinking"

    def __init__(self, release: threading.Event, error: Exception | None = None) -> None:
        self.release, self.error = release, error

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        return ModelResponse("Hello")

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        await asyncio.to_thread(self.release.wait, 10)
        if self.error is not None:
            raise self.error
        yield "Hello"
        yield ModelResponse("Hello")


def _stream_events(http: httpx.Client, headers: dict[str, str]) -> Any:
    sent = rpc("SendStreamingMessage", message({"text": "hi"}, context_id="chat"))
    return http.stream("POST", "/a2a/jsonrpc", json=sent, headers=headers)


@contextmanager
def _served(agent: Agent, tenants: Tenants) -> Iterator[httpx.Client]:
    with (
        serve(create_app(agent, tenants.settings())) as url,
        httpx.Client(base_url=url, timeout=3) as http,
    ):
        yield http


def _streamed(http: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    """Send one streamed message and read the whole answer."""
    with _stream_events(http, headers) as stream:
        stream.read()
    return stream


def test_a_streamed_task_is_working_while_the_model_thinks(tenants: Tenants) -> None:
    """The task and its working state reach the client once the turn was admitted, before
    the model gives anything (they do not wait for, nor travel with, the first delta)."""
    release = threading.Event()
    store = InMemoryStore()
    agent = Agent(model=ThinkingModel(release), store=store)
    alice = {**tenants.headers("alice"), **V1}
    with _served(agent, tenants) as http, _stream_events(http, alice) as stream:
        events = (
            json.loads(line[5:])["result"] for line in stream.iter_lines() if line[:5] == "data:"
        )
        task = next(events)["task"]  # a read timeout here: the task waited for the model
        assert task["status"]["state"] == "TASK_STATE_SUBMITTED"
        assert next(events)["statusUpdate"]["status"]["state"] == "TASK_STATE_WORKING"
        assert not release.is_set()
        release.set()
        rest = list(events)
    assert [r["artifactUpdate"]["artifact"]["parts"][0]["text"] for r in rest[:2]] == ["Hello", ""]
    assert rest[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert rest[-1]["statusUpdate"]["taskId"] == task["id"]
    assert [m.content for m in asyncio.run(store.get_messages("alice", "chat"))] == ["hi", "Hello"]


def test_a_model_failing_before_its_first_delta_ends_the_started_task_with_an_error(
    tenants: Tenants, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    release.set()
    store = InMemoryStore()
    agent = Agent(model=ThinkingModel(release, RuntimeError("CANARY provider text")), store=store)
    alice = {**tenants.headers("alice"), **V1}
    with _served(agent, tenants) as http:
        stream = _streamed(http, alice)
        error = error_of(stream)
        assert error["code"] == -32603  # InternalError, with the public text only
        assert "CANARY" not in stream.text
        assert "request id" in error["message"]
        first = json.loads(next(ln for ln in stream.text.splitlines() if ln[:5] == "data:")[5:])
        task_id = first["result"]["task"]["id"]
        got = http.post("/a2a/jsonrpc", json=rpc("GetTask", {"id": task_id}), headers=alice)
        assert got.json()["result"]["status"]["state"] == "TASK_STATE_FAILED"
    assert "CANARY" in caplog.text  # the detail is in the log
    assert asyncio.run(store.get_messages("alice", "chat")) == []


def test_a_streamed_turn_refused_before_the_model_is_a_plain_error(
    tenants: Tenants,
) -> None:
    release = threading.Event()
    budgets = Budgets(Budget(requests_per_day=0))
    agent = Agent(model=ThinkingModel(release), store=InMemoryStore(), budgets=budgets)
    alice = {**tenants.headers("alice"), **V1}
    with _served(agent, tenants) as http:
        stream = _streamed(http, alice)
        # a plain JSON-RPC error, not a stream that began with a task
        assert stream.headers["content-type"].startswith("application/json"), stream.text
        assert error_of(stream)["data"][0]["reason"] == "RESOURCE_EXHAUSTED"
