"""A2A as the protocol's own test kit (the A2A TCK) checks it, in raw JSON-RPC: what a
client that is not the SDK's sends and reads (paths, part media types, error envelopes)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from tenantry import Agent

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
