"""A2A as the protocol's own test kit (the A2A TCK) checks it, in raw JSON-RPC: what a
client that is not the SDK's sends and reads (paths, part media types, error envelopes)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

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
