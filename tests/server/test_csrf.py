"""Cross-site request forgery (issue 11, finding 3): what a page of another site can make a
browser send without a preflight (a form, text/plain, a typeless blob; any Origin) changes
nothing, on every state-changing route of every protocol; the server's own page, configured
origins and ordinary JSON clients keep working."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tenantry import Agent, Message
from tenantry.server import ServerSettings, create_app
from tests.server.conftest import Tenants, refusal
from tests.support.servers import serve

EVIL = "http://evil.example"
A2A_CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "message/send",
    "params": {
        "message": {
            "kind": "message",
            "role": "user",
            "messageId": "m-1",
            "contextId": "victim",
            "parts": [{"kind": "text", "text": "forged turn"}],
        }
    },
}
CHAT = {"message": "forged turn", "user_id": "victim"}
COMPLETION = {"messages": [{"role": "user", "content": "forged turn"}], "user": "victim"}
POSTS = [
    ("/a2a/jsonrpc", A2A_CALL),
    ("/v1/chat", CHAT),
    ("/v1/chat/stream", CHAT),
    ("/chat", CHAT),
    ("/v1/chat/completions", COMPLETION),
    ("/v1/chat/completions", {**COMPLETION, "stream": True}),
]
DELETES = ["/v1/users/victim", "/v1/users/victim/sessions/default"]


@pytest.fixture
def server(agent: Agent) -> Iterator[str]:
    """A real server in open mode with the production defaults; the victim has a turn."""
    asyncio.run(agent.store.add(Message.user("victim's own words"), user_id="victim"))
    with serve(create_app(agent, ServerSettings(_env_file=None))) as url:
        yield url


def victim_history(agent: Agent) -> list[str]:
    return [m.content for m in asyncio.run(agent.store.get_messages("victim"))]


def assert_refused(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert refusal(response)[0] == kind


def test_the_reported_attack_a2a_text_plain_from_another_origin_stores_nothing(
    server: str, agent: Agent
) -> None:
    response = httpx.post(
        f"{server}/a2a/jsonrpc",
        content=json.dumps(A2A_CALL),
        headers={"Content-Type": "text/plain", "Origin": EVIL},
    )
    assert_refused(response, 403, "ForbiddenOrigin")
    assert victim_history(agent) == ["victim's own words"]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,  # fetch(url, {method: "POST", body: new Blob([json])}) sends no Content-Type
        "application/jsonx",
        "text/json",
        "application/json, text/plain",
    ],
)
@pytest.mark.parametrize(("path", "body"), POSTS, ids=lambda v: v if isinstance(v, str) else "")
def test_a_body_not_sent_as_json_is_415_on_every_post_route(
    server: str, agent: Agent, path: str, body: dict[str, Any], content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = httpx.post(f"{server}{path}", content=json.dumps(body), headers=headers)
    assert_refused(response, 415, "UnsupportedMediaType")
    assert "Content-Type: application/json" in refusal(response)[1]
    assert victim_history(agent) == ["victim's own words"]


@pytest.mark.parametrize("path", DELETES)
def test_a_delete_with_a_non_json_body_is_415_and_one_without_a_body_works(
    server: str, agent: Agent, path: str
) -> None:
    refused = httpx.request(
        "DELETE", f"{server}{path}", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert_refused(refused, 415, "UnsupportedMediaType")
    assert victim_history(agent) == ["victim's own words"]
    assert httpx.delete(f"{server}{path}").is_success
    assert victim_history(agent) == []


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1.evil.example", "https://x"])
@pytest.mark.parametrize(("path", "body"), POSTS, ids=lambda v: v if isinstance(v, str) else "")
def test_in_open_mode_a_json_post_from_another_origin_is_403(
    server: str, agent: Agent, path: str, body: dict[str, Any], origin: str
) -> None:
    response = httpx.post(f"{server}{path}", json=body, headers={"Origin": origin})
    assert_refused(response, 403, "ForbiddenOrigin")
    assert victim_history(agent) == ["victim's own words"]


@pytest.mark.parametrize("path", DELETES)
def test_in_open_mode_a_delete_from_another_origin_is_403(
    server: str, agent: Agent, path: str
) -> None:
    assert_refused(
        httpx.delete(f"{server}{path}", headers={"Origin": EVIL}), 403, "ForbiddenOrigin"
    )
    assert victim_history(agent) == ["victim's own words"]


def test_the_servers_own_page_and_plain_clients_may_post(server: str, agent: Agent) -> None:
    port = server.rsplit(":", 1)[1]
    for origin, host in [
        (server, None),  # the page at http://127.0.0.1:PORT/
        (f"http://localhost:{port}", f"localhost:{port}"),
        (f"HTTP://LOCALHOST:{port}", f"localhost:{port}"),
    ]:
        headers = {"Origin": origin, **({"Host": host} if host else {})}
        reply = httpx.post(f"{server}/v1/chat", json={"message": "hi"}, headers=headers)
        assert reply.status_code == 200, (origin, reply.text)
    assert httpx.post(f"{server}/v1/chat", json={"message": "hi"}).status_code == 200
    charset = httpx.post(
        f"{server}/v1/chat",
        content=json.dumps({"message": "hi"}),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert charset.status_code == 200
    a2a = httpx.post(f"{server}/a2a/jsonrpc", json=A2A_CALL, headers={"Origin": server})
    assert "result" in a2a.json()
    reads = httpx.get(f"{server}/v1/users", headers={"Origin": EVIL})
    assert reads.status_code == 200  # reads: the browser keeps the answer from the page
    assert "access-control-allow-origin" not in reads.headers


def test_configured_origins_and_the_public_url_may_post(agent: Agent) -> None:
    settings = ServerSettings(
        _env_file=None,
        cors_origins=["https://app.example"],
        public_url="https://chat.example.com/",
        allowed_hosts=["chat.example.com"],
    )
    with serve(create_app(agent, settings)) as url:
        for origin in ("https://app.example", "https://chat.example.com"):
            reply = httpx.post(f"{url}/v1/chat", json={"message": "hi"}, headers={"Origin": origin})
            assert reply.status_code == 200, (origin, reply.text)
            assert reply.headers.get("access-control-allow-origin") in (origin, None)
        behind_tls_proxy = httpx.post(
            f"{url}/v1/chat",
            json={"message": "hi"},
            headers={"Origin": "https://chat.example.com", "Host": "chat.example.com"},
        )
        assert behind_tls_proxy.status_code == 200
        other = httpx.post(f"{url}/v1/chat", json={"message": "hi"}, headers={"Origin": EVIL})
        assert_refused(other, 403, "ForbiddenOrigin")


def test_with_auth_on_a_forged_request_has_no_credential(agent: Agent, tenants: Tenants) -> None:
    with serve(create_app(agent, tenants.settings())) as url:
        forged = httpx.post(
            f"{url}/a2a/jsonrpc",
            content=json.dumps(A2A_CALL),
            headers={"Content-Type": "text/plain", "Origin": EVIL},
        )
        assert forged.status_code in (401, 415)
        anonymous = httpx.post(f"{url}/v1/chat", json=CHAT, headers={"Origin": EVIL})
        assert_refused(anonymous, 401, "Unauthorized")
        # A client holding a key is not a forged request, whatever Origin it sends.
        keyed = httpx.post(
            f"{url}/v1/chat",
            json={"message": "hi"},
            headers={"Origin": EVIL, **tenants.headers("alice")},
        )
        assert keyed.status_code == 200
    assert asyncio.run(agent.store.list_users()) == ["alice"]


def test_a_wildcard_cors_setting_lets_no_other_site_change_data_in_open_mode(
    agent: Agent,
) -> None:
    with serve(create_app(agent, ServerSettings(_env_file=None, cors_origins=["*"]))) as url:
        forged = httpx.post(f"{url}/v1/chat", json=CHAT, headers={"Origin": EVIL})
        assert_refused(forged, 403, "ForbiddenOrigin")
        read = httpx.get(f"{url}/v1/info", headers={"Origin": EVIL})
        assert read.headers["access-control-allow-origin"] == "*"  # reads: as configured
    assert asyncio.run(agent.store.list_users()) == []
