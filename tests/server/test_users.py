"""A user's own data: sessions, paged messages, deletion and export; unknown is 404."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tenantry import Agent, Message
from tests.server.conftest import Tenants


@pytest.fixture
async def stored(agent: Agent) -> Agent:
    for n in range(5):
        await agent.store.add(Message.user(f"a{n}"), user_id="alice", session_id="s1")
    await agent.store.add(Message.user("b"), user_id="alice", session_id="s2")
    await agent.store.set_state({"cart": ["tea"]}, user_id="alice", session_id="s2")
    await agent.store.add(Message.user("bob's"), user_id="bob", session_id="s1")
    return agent


async def test_sessions_and_pages_of_messages(
    stored: Agent, auth_client: httpx.AsyncClient, tenants: Tenants
) -> None:
    alice = tenants.headers("alice")
    sessions = await auth_client.get("/v1/users/alice/sessions", headers=alice)
    assert sessions.json() == {"user_id": "alice", "sessions": ["s1", "s2"]}
    newest = await auth_client.get(
        "/v1/users/alice/sessions/s1/messages", params={"limit": 2}, headers=alice
    )
    page: dict[str, Any] = newest.json()
    assert [m["content"] for m in page["messages"]] == ["a3", "a4"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 0)
    older = await auth_client.get(
        "/v1/users/alice/sessions/s1/messages", params={"limit": 2, "offset": 2}, headers=alice
    )
    assert [m["content"] for m in older.json()["messages"]] == ["a1", "a2"]
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "many"}):
        response = await auth_client.get(
            "/v1/users/alice/sessions/s1/messages", params=bad, headers=alice
        )
        assert response.status_code == 422
        assert response.json()["error"]["type"] == "InvalidRequest"


async def test_export_holds_every_session_with_its_state(
    stored: Agent, auth_client: httpx.AsyncClient, tenants: Tenants
) -> None:
    export = (
        await auth_client.get("/v1/users/alice/export", headers=tenants.headers("alice"))
    ).json()
    assert export["user_id"] == "alice"
    assert [s["session_id"] for s in export["sessions"]] == ["s1", "s2"]
    assert export["sessions"][1]["state"] == {"cart": ["tea"]}
    contents = [m["content"] for s in export["sessions"] for m in s["messages"]]
    assert contents == ["a0", "a1", "a2", "a3", "a4", "b"]


async def test_deleting_a_session_then_the_user(
    stored: Agent, auth_client: httpx.AsyncClient, tenants: Tenants
) -> None:
    alice = tenants.headers("alice")
    gone = await auth_client.delete("/v1/users/alice/sessions/s1", headers=alice)
    assert gone.status_code == 204
    assert await stored.store.list_sessions("alice") == ["s2"]
    again = await auth_client.delete("/v1/users/alice/sessions/s1", headers=alice)
    assert again.status_code == 404
    deleted = await auth_client.delete("/v1/users/alice", headers=alice)
    assert deleted.json() == {"user_id": "alice", "deleted_sessions": 1, "deleted_memories": 0}
    assert await stored.store.list_users() == ["bob"]
    for method, path in [
        ("DELETE", "/v1/users/alice"),
        ("GET", "/v1/users/alice/export"),
        ("GET", "/v1/users/alice/sessions/s2/messages"),
    ]:
        response = await auth_client.request(method, path, headers=alice)
        assert response.status_code == 404, path
        assert response.json()["error"]["type"] == "NotFound"
    empty = await auth_client.get("/v1/users/alice/sessions", headers=alice)
    assert empty.json() == {"user_id": "alice", "sessions": []}


async def test_bad_ids_in_paths_are_422(auth_client: httpx.AsyncClient, tenants: Tenants) -> None:
    alice = tenants.headers("alice")
    for path in (
        "/v1/users/al%00ice/sessions",
        f"/v1/users/{'x' * 256}/sessions",
        "/v1/users/alice/sessions/s%0A1/messages",
        "/v1/users/%20/export",
    ):
        response = await auth_client.get(path, headers=alice)
        assert response.status_code == 422, path


async def test_open_mode_serves_any_user_and_lists_all(
    stored: Agent, open_client: httpx.AsyncClient
) -> None:
    assert (await open_client.get("/v1/users")).json() == {"users": ["alice", "bob"]}
    me = (await open_client.get("/v1/me")).json()
    assert me == {"user_id": None, "admin": True, "auth": False}
    bob = await open_client.get("/v1/users/bob/sessions/s1/messages")
    assert [m["content"] for m in bob.json()["messages"]] == ["bob's"]
