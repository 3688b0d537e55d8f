"""`POST /v1/chat` served by `FastChatMiddleware`: the same replies and errors as FastAPI's
route, without going through it for a valid request."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.requests import HTTPConnection

from tenantry import Agent, InMemoryStore
from tenantry.server import create_app
from tenantry.server.fastchat import FastChatMiddleware
from tenantry.server.state import server_state
from tests.server.conftest import open_settings

BODIES: list[Any] = [
    {"message": "My name is Ada", "user_id": "ada"},
    {"message": "What is my name?", "user_id": "ada"},
    {"message": "What is my name?", "user_id": "ada", "session_id": "s"},
    {"message": ""},
    {"message": "hi", "user_id": ""},
    {"message": "hi", "user_id": 7},
    {"user_id": "ada"},
    [1, 2],
    "not an object",
    None,
]
RAW_BODIES = [b"", b"{", b'{"message": "hi", "user_id": "a\\u0000b"}']


def _app(*, fast: bool) -> Any:
    app = create_app(Agent(store=InMemoryStore()), open_settings())
    if not fast:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not FastChatMiddleware]
    calls: list[int] = []

    async def counted(conn: HTTPConnection) -> Any:
        calls.append(1)
        return await server_state(conn)

    app.dependency_overrides[server_state] = counted
    return app, calls


async def _answers(app: Any) -> list[tuple[int, Any]]:
    transport = httpx.ASGITransport(app=app)
    got = []
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        requests = [{"json": body} for body in BODIES] + [{"content": raw} for raw in RAW_BODIES]
        for request in requests:
            headers = {"Content-Type": "application/json"}
            response = await client.post("/v1/chat", headers=headers, **request)
            body = response.json()
            if response.status_code == 200:
                body["run_id"] = "-"
            got.append((response.status_code, body, response.headers["content-type"]))
    return got


async def test_replies_and_errors_are_fastapis_and_a_valid_request_skips_its_route() -> None:
    fast_app, fast_calls = _app(fast=True)
    slow_app, slow_calls = _app(fast=False)
    fast, slow = await _answers(fast_app), await _answers(slow_app)
    assert fast == slow
    assert [status for status, _, _ in fast[:3]] == [200, 200, 200]
    assert fast[1][1]["reply"] == "Your name is Ada."
    assert fast[2][1]["session_id"] == "s"
    assert not fast[2][1]["reply"].startswith("Your name")  # another session: no history
    assert {status for status, _, _ in fast[3:]} <= {400, 422}
    # with the fast path, FastAPI's route saw only the requests that did not validate
    assert len(slow_calls) - len(fast_calls) == 3
