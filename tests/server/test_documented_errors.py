"""README's error table and the server agree: every error a client can provoke has its row
(status and type), every row a client can provoke from outside is provoked here, and the
cases README spells out (an empty or blank message, a user with nothing stored) behave as
it says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantry import Agent
from tenantry.server import create_app
from tests.server.conftest import Tenants, open_settings

README = Path(__file__).resolve().parents[2] / "README.md"
JSON = {"Content-Type": "application/json"}
CHAT = "/v1/chat/completions"
KEYED = {"Idempotency-Key": "documented-errors-turn-1"}


def documented() -> set[tuple[int, str]]:
    """Give the (status, error type) pairs of README's error table."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| status | when |") :].split("\n\n", 1)[0]
    pairs = set()
    for row in table.splitlines()[2:]:
        cell = row.split("|")[1]
        for status, names in re.findall(r"(\d{3}) ((?:`\w+`(?:, | / )?)+)", cell):
            pairs |= {(int(status), name) for name in re.findall(r"`(\w+)`", names)}
    return pairs


def error_of(response: httpx.Response) -> tuple[int, str]:
    assert "Traceback" not in response.text
    return response.status_code, response.json()["error"]["type"]


@pytest.fixture
async def provoked(
    agent: Agent, tenants: Tenants, open_client: httpx.AsyncClient, client_for: Any
) -> dict[tuple[int, str], httpx.Response]:
    """Provoke every client-side error once; give each (status, type) and a response."""
    auth = await client_for(create_app(agent, tenants.settings()))
    small = await client_for(create_app(agent, open_settings(max_body_bytes=1024)))
    limited = await client_for(create_app(agent, open_settings(rate_limit_per_minute=1)))
    alice = tenants.headers("alice")
    last_is_assistant = {"model": "m", "messages": [{"role": "assistant", "content": "hi"}]}
    hello = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    responses = [
        await open_client.post("/v1/chat", content="{", headers=JSON),
        await auth.get("/v1/me"),
        await auth.post("/v1/chat", json={"message": "hi", "user_id": "bob"}, headers=alice),
        await open_client.get("/v1/nothing-here"),
        await open_client.get("/v1/users/nobody/export"),
        await open_client.delete("/v1/users/nobody"),
        await open_client.get("/v1/users/nobody/sessions/s1/messages"),
        await open_client.get("/v1/chat"),
        await small.post("/v1/chat", json={"message": "x" * 2000}),
        await open_client.post("/v1/chat", json={"message": ""}),
        await open_client.post("/v1/chat", json={"message": " \n\t "}),
        await open_client.post("/chat", json={"message": "hi", "user_id": ""}),
        await open_client.post(CHAT, json=last_is_assistant),
        await open_client.post(CHAT, json=hello, headers={"X-Session-ID": "a\u0001b"}),
        await limited.post("/v1/chat", json={"message": "hi"}),
        await limited.post("/v1/chat", json={"message": "hi"}),
        await open_client.get("/v1/info", headers={"Host": "rebind.attacker.example"}),
        await open_client.get("/v1/users/nobody/memories/no-such-memory"),
        await open_client.post(
            "/v1/chat", json={"message": "hi"}, headers={"Origin": "http://evil.example"}
        ),
        await open_client.post(
            "/v1/chat", content='{"message": "hi"}', headers={"Content-Type": "text/plain"}
        ),
        await open_client.post("/v1/chat", json={"message": "hi"}, headers={"Idempotency-Key": ""}),
        await open_client.post("/v1/chat", json={"message": "one"}, headers=KEYED),
        await open_client.post("/v1/chat", json={"message": "two"}, headers=KEYED),
    ]
    return {error_of(r): r for r in responses if r.status_code >= 400}


async def test_every_error_a_client_can_provoke_has_its_row(
    provoked: dict[tuple[int, str], httpx.Response],
) -> None:
    missing = set(provoked) - documented()
    assert not missing, f"README's error table lacks {sorted(missing)}"


async def test_every_client_error_row_is_provoked(
    provoked: dict[tuple[int, str], httpx.Response],
) -> None:
    # 409 (a lock held too long) and the 5xx rows need a slow turn or a failing backend;
    # tests/server/test_chat.py provokes those.
    client_rows = {(s, t) for s, t in documented() if s < 500 and s != 409}
    assert client_rows - set(provoked) == set()


async def test_an_empty_or_blank_message_is_invalid_request_with_details(
    provoked: dict[tuple[int, str], httpx.Response], open_client: httpx.AsyncClient
) -> None:
    for text in ("", "   ", "\n"):
        response = await open_client.post("/v1/chat", json={"message": text})
        error = response.json()["error"]
        assert (response.status_code, error["type"]) == (422, "InvalidRequest")
        (detail,) = error["details"]
        assert detail["field"] == "body.message"
    assert "details" not in provoked[(405, "MethodNotAllowed")].json()["error"]
    assert provoked[(405, "MethodNotAllowed")].headers["Allow"] == "POST"


async def test_a_user_with_nothing_stored_lists_no_sessions_but_has_nothing_to_export(
    open_client: httpx.AsyncClient,
) -> None:
    listed = await open_client.get("/v1/users/nobody/sessions")
    assert listed.status_code == 200
    assert listed.json() == {"user_id": "nobody", "sessions": []}
    for response in (
        await open_client.get("/v1/users/nobody/export"),
        await open_client.delete("/v1/users/nobody"),
    ):
        assert error_of(response) == (404, "NotFound")
        message = response.json()["error"]["message"]
        assert message == "user 'nobody' has no stored sessions or memories"
