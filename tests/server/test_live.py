"""Against a real uvicorn server on a free loopback port: the seed's curl session, and 1000
concurrent chat requests over 100 users, in open mode and with auth on."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantry import Agent, SQLiteStore
from tenantry.server import create_app
from tests.server.conftest import Tenants, make_tenants, open_settings
from tests.support.servers import serve, spawn_server

USERS = 100
REQUESTS = 1000
CONCURRENCY = 100


@pytest.fixture
def sqlite_agent(tmp_path: Path) -> Iterator[Agent]:
    store = SQLiteStore(tmp_path / "live.db")
    yield Agent(name="live", store=store)
    from tenantry._runner import run_sync

    run_sync(store.close())


def test_the_seed_curl_session_gives_the_seed_answers(sqlite_agent: Agent) -> None:
    with serve(create_app(sqlite_agent, open_settings())) as url:
        headers = {"Content-Type": "application/json"}

        def post(body: str) -> dict[str, Any]:
            response = httpx.post(f"{url}/chat", content=body, headers=headers)
            assert response.status_code == 200, response.text
            reply: dict[str, Any] = response.json()
            return reply

        post('{"user_id": "user-a", "message": "My name is Alice"}')
        assert post('{"user_id": "user-a", "message": "What is my name?"}') == {
            "user_id": "user-a",
            "reply": "Your name is Alice.",
        }
        post('{"user_id": "user-b", "message": "My name is Bob"}')
        assert post('{"user_id": "user-b", "message": "What is my name?"}') == {
            "user_id": "user-b",
            "reply": "Your name is Bob.",
        }
        assert post('{"user_id": "user-a", "message": "What is my name?"}')["reply"] == (
            "Your name is Alice."
        )


async def _bounded(jobs: list[Any], concurrency: int = CONCURRENCY) -> list[httpx.Response]:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Any) -> httpx.Response:
        async with gate:
            response: httpx.Response = await job()
            return response

    return await asyncio.gather(*(one(job) for job in jobs))


async def _load(url: str, headers_of: Any, body_user: bool) -> tuple[float, dict[str, list[str]]]:
    """Send 100 name statements, then 900 questions, all concurrent (bounded); check every
    reply names its own user. Give the duration and the tokens each user sent."""
    users = [f"user-{i:03d}" for i in range(USERS)]
    sent: dict[str, list[str]] = {user: [] for user in users}
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them, so a
    # request is never sent on a connection the server is closing at that moment.
    limits = httpx.Limits(
        max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY, keepalive_expiry=2
    )
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        def job(user: str, text: str) -> Any:
            body: dict[str, str] = {"message": text, "session_id": "load"}
            if body_user:
                body["user_id"] = user
            sent[user].append(text)
            return lambda: client.post("/v1/chat", json=body, headers=headers_of(user))

        started = time.perf_counter()
        firsts = [job(user, f"My name is N{user[-3:]}") for user in users]
        questions = [
            (user, f"What is my name? q{n}-{user}")
            for user in users
            for n in range(REQUESTS // USERS - 1)
        ]
        random.Random(4).shuffle(questions)
        replies = await _bounded(firsts)
        replies += await _bounded([job(user, text) for user, text in questions])
        duration = time.perf_counter() - started
    assert len(replies) == REQUESTS
    expected_users = users + [user for user, _ in questions]
    for index, (user, response) in enumerate(zip(expected_users, replies, strict=True)):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["user_id"] == user
        name = f"N{user[-3:]}"
        if index < USERS:
            assert body["reply"] == f"Nice to meet you, {name}! I'll remember your name."
        else:
            assert body["reply"] == f"Your name is {name}."
    return duration, sent


async def _check_histories(url: str, headers_of: Any, sent: dict[str, list[str]]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for user, texts in sent.items():
            response = await client.get(
                f"/v1/users/{user}/sessions/load/messages",
                params={"limit": 1000},
                headers=headers_of(user),
            )
            assert response.status_code == 200, response.text
            messages = response.json()["messages"]
            assert sorted(m["content"] for m in messages if m["role"] == "user") == sorted(texts)
            replies = {m["content"] for m in messages if m["role"] == "assistant"}
            name = f"N{user[-3:]}"
            assert replies == {
                f"Nice to meet you, {name}! I'll remember your name.",
                f"Your name is {name}.",
            }


async def test_1000_concurrent_requests_over_100_users_stay_isolated_open_mode(
    tmp_path: Path,
) -> None:
    with spawn_server(tmp_path, "--rate-limit", "0") as server:
        duration, sent = await _load(server.url, lambda user: {}, body_user=True)
        await _check_histories(server.url, lambda user: {}, sent)
    print(f"\nopen mode: {REQUESTS} requests in {duration:.2f}s ({REQUESTS / duration:.0f}/s)")


async def test_1000_concurrent_requests_over_100_users_stay_isolated_with_auth(
    tmp_path: Path,
) -> None:
    tenants = make_tenants([f"user-{i:03d}" for i in range(USERS)])
    args = ("--rate-limit", "0")
    with spawn_server(tmp_path, *args, env=tenants.env()) as server:
        duration, sent = await _load(server.url, tenants.headers, body_user=False)
        await _check_histories(server.url, tenants.headers, sent)
        await _every_endpoint_refuses_other_tenants_and_anonymous_callers(server.url, tenants)
    print(f"\nauth mode: {REQUESTS} requests in {duration:.2f}s ({REQUESTS / duration:.0f}/s)")


def _endpoints(victim: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    message = {"message": "What is my name?", "user_id": victim}
    return [
        ("POST", "/v1/chat", message),
        ("POST", "/v1/chat/stream", message),
        ("POST", "/chat", message),
        ("GET", f"/v1/users/{victim}/sessions", None),
        ("GET", f"/v1/users/{victim}/sessions/load/messages", None),
        ("GET", f"/v1/users/{victim}/export", None),
        ("DELETE", f"/v1/users/{victim}/sessions/load", None),
        ("DELETE", f"/v1/users/{victim}", None),
        ("GET", "/v1/users", None),
    ]


async def _every_endpoint_refuses_other_tenants_and_anonymous_callers(
    url: str, tenants: Tenants
) -> None:
    attacker, victim = "user-001", "user-002"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        before = await client.get(f"/v1/users/{victim}/export", headers=tenants.headers(victim))
        for method, path, body in _endpoints(victim):
            as_attacker = await client.request(
                method, path, json=body, headers=tenants.headers(attacker)
            )
            assert as_attacker.status_code == 403, (method, path, as_attacker.text)
            assert as_attacker.json()["error"]["type"] == "Forbidden"
            anonymous = await client.request(method, path, json=body)
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
            forged = await client.request(
                method, path, json=body, headers={"X-API-Key": "tnt_forged"}
            )
            assert forged.status_code == 401, (method, path)
        own_unknown = await client.get(
            f"/v1/users/{attacker}/sessions/no-such-session/messages",
            headers=tenants.headers(attacker),
        )
        assert own_unknown.status_code == 404
        for path in ("/v1/me", "/a2a/jsonrpc"):
            method = "POST" if path.startswith("/a2a") else "GET"
            assert (await client.request(method, path, json={})).status_code == 401
        after = await client.get(f"/v1/users/{victim}/export", headers=tenants.headers(victim))
        assert after.json()["sessions"] == before.json()["sessions"]
        # the attacker's own question, asked as itself, is answered from its own history only
        own = await client.post(
            "/v1/chat",
            json={"message": "What is my name?", "session_id": "load"},
            headers=tenants.headers(attacker),
        )
        assert own.json()["reply"] == "Your name is N001."


def test_the_readme_curl_session_gives_the_answers_it_shows(sqlite_agent: Agent) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    calls = re.findall(r"-d '(\{.*?\})'\n# (\{.*?\})\n", readme)
    assert len(calls) == 4
    with serve(create_app(sqlite_agent, open_settings())) as url:
        for body, shown in calls:
            response = httpx.post(
                f"{url}/chat", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.json() == json.loads(shown)
