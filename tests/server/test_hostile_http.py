"""Hostile HTTP against a real server, beyond the reported findings: another tenant's id in
every path spelling, forged log lines, CORS preflights, event injection through a reply,
streams and bodies cut short, and another tenant's A2A tasks. Nothing crosses tenants,
nothing is half stored, no log line is forged."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
import pytest

from tenantry import Agent, InMemoryStore, Message, ModelResponse
from tenantry.models import ModelBase, StreamItem
from tenantry.server import ServerSettings, create_app
from tenantry.types import ToolSpec
from tests.server.conftest import Tenants
from tests.support.rawhttp import port_of, raw_http
from tests.support.servers import serve


def wait_for(condition: Any, what: str, seconds: float = 10) -> None:
    """Poll `condition` until it holds (the server finishes in its own thread)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def auth_server(agent: Agent, tenants: Tenants) -> Iterator[str]:
    asyncio.run(agent.store.add(Message.user("bob's secret"), user_id="bob"))
    settings = tenants.settings(cors_origins=["https://app.example"])
    with serve(create_app(agent, settings)) as url:
        yield url


PATH_SPELLINGS = [
    "/v1/users/bob/export",
    "/v1/users/alice/../bob/export",
    "/v1/users/alice/%2e%2e/bob/export",
    "/v1/users/alice%2F..%2Fbob/export",
    "/v1/users/bob%2F/export",
    "/v1/users/%62%6f%62/export",
    "/v1/users/%2562%256f%2562/export",
    "/v1/users/BOB/export",
    "/V1/USERS/bob/export",
    "//v1/users/bob/export",
    "/v1//users/bob/export",
    "/v1/users/bob/export/",
    "/v1/users/bob;x/export",
    "/v1/users/bob%3B/export",
    "/v1/users/bob?user_id=alice",
    "/v1/users/alice/export?user_id=bob",
    "/v1/users/ｂｏｂ/export",
    "/v1/users/bob%00/export",
    "/v1/users/b%C3%B6b/export",
    "/v1/users/bob%20/export",
    "/v1/users/%20bob/export",
    "http://127.0.0.1/v1/users/bob/export",
]


@pytest.mark.parametrize("path", PATH_SPELLINGS)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_no_path_spelling_reaches_another_tenant(
    auth_server: str, agent: Agent, tenants: Tenants, path: str, method: str
) -> None:
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {tenants.keys['alice']}"
    answer = raw_http(auth_server, f"{head}\r\nConnection: close\r\n\r\n".encode())
    status = int(answer.split(b" ", 2)[1])
    assert status in (307, 400, 403, 404, 405, 422), answer[:300]
    assert b"bob's secret" not in answer
    assert [m.content for m in asyncio.run(agent.store.get_messages("bob"))] == ["bob's secret"]


async def test_a_newline_in_the_url_cannot_forge_a_log_line(
    open_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="tenantry.server.access"):
        await open_client.get("/v1/x%0A2026-12-01 INFO tenantry.server admin logged in%0D%1B[2J")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "tenantry.server.access"]
    for control in ("\n", "\r", "\x1b"):
        assert control not in line
    assert line.startswith("GET /v1/x\\n2026-12-01 INFO tenantry.server admin logged in\\r")


def test_a_providers_multi_line_error_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    from tenantry.errors import ModelError
    from tenantry.server.errors import public_message

    with caplog.at_level("WARNING", logger="tenantry.server"):
        public_message(ModelError("bad input\n2026-12-01 ERROR forged"), "r1")
    (record,) = caplog.records
    assert "\n" not in record.getMessage()


PREFLIGHT = {
    "Origin": "https://app.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "x-api-key,content-type,x-session-id,a2a-version",
}


@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/completions", "/a2a/jsonrpc"])
def test_cors_preflights_answer_configured_origins_only(auth_server: str, path: str) -> None:
    allowed = httpx.options(f"{auth_server}{path}", headers=PREFLIGHT)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-credentials" not in allowed.headers
    for origin in ("https://evil.example", "null", "https://app.example.evil.example"):
        refused = httpx.options(f"{auth_server}{path}", headers={**PREFLIGHT, "Origin": origin})
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
    simple = httpx.get(f"{auth_server}/v1/info", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
    assert "Origin" in simple.headers.get("vary", "")


class ScriptedModel(ModelBase):
    """Streams `deltas`; between the first and the rest it waits for `release` (a thread
    event, so a test can cut the connection in between)."""

    name = "scripted"

    def __init__(self, deltas: Sequence[str], release: threading.Event | None = None) -> None:
        self.deltas, self.release = list(deltas), release

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        return ModelResponse("".join(self.deltas))

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        for n, delta in enumerate(self.deltas):
            if n == 1 and self.release is not None:
                await asyncio.to_thread(self.release.wait, 10)
            yield delta
        yield ModelResponse("".join(self.deltas))


INJECTED = ['Hi\n\nevent: done\ndata: {"reply": "forged"}\n\n', "data: [DONE]\n\n", "bye"]


def test_a_reply_cannot_inject_stream_events() -> None:
    store = InMemoryStore()
    app = create_app(
        Agent(model=ScriptedModel(INJECTED), store=store),
        ServerSettings(_env_file=None, rate_limit_per_minute=0),
    )
    with serve(app) as url:
        chat = httpx.post(f"{url}/v1/chat/stream", json={"message": "x", "user_id": "u"}).text
        events = [block.split("\n")[0] for block in chat.strip().split("\n\n")]
        assert events == ["event: delta"] * 3 + ["event: done"]
        done = json.loads(chat.strip().split("\n\n")[-1].split("data: ", 1)[1])
        assert done["reply"] == "".join(INJECTED)
        body = {"messages": [{"role": "user", "content": "x"}], "user": "u", "stream": True}
        completion = httpx.post(f"{url}/v1/chat/completions", json=body).text
        chunks = completion.strip().split("\n\n")
        assert chunks.count("data: [DONE]") == 1
        assert chunks[-1] == "data: [DONE]"
        text = "".join(
            json.loads(c.removeprefix("data: "))["choices"][0]["delta"].get("content", "")
            for c in chunks[:-1]
            if json.loads(c.removeprefix("data: "))["choices"]
        )
        assert text == "".join(INJECTED)


def _a2a_stream(context: str) -> bytes:
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendStreamingMessage",
        "params": {
            "message": {
                "messageId": "m",
                "role": "ROLE_USER",
                "contextId": context,
                "parts": [{"text": "hello"}],
            }
        },
    }
    return json.dumps(call).encode()


CUT_STREAMS = {
    "chat stream": ("/v1/chat/stream", json.dumps({"message": "hello", "user_id": "u"}).encode()),
    "completions stream": (
        "/v1/chat/completions",
        json.dumps(
            {"messages": [{"role": "user", "content": "hello"}], "user": "u", "stream": True}
        ).encode(),
    ),
    "a2a stream": ("/a2a/jsonrpc", _a2a_stream("u")),
}


@pytest.mark.parametrize(("path", "body"), CUT_STREAMS.values(), ids=CUT_STREAMS.keys())
def test_a_client_that_cuts_a_stream_still_gets_its_whole_turn_stored(
    path: str, body: bytes
) -> None:
    release = threading.Event()
    store = InMemoryStore()
    agent = Agent(model=ScriptedModel(["one ", "two ", "three"], release), store=store)
    headers = {"A2A-Version": "1.0"} if path.startswith("/a2a") else {}
    with serve(create_app(agent, ServerSettings(_env_file=None, rate_limit_per_minute=0))) as url:
        with socket.create_connection(("127.0.0.1", port_of(url)), timeout=10) as sock:
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n".encode()
                + body
            )
            received = b""
            while b"one " not in received:  # the first delta arrived: cut the connection
                chunk = sock.recv(65536)
                assert chunk, received
                received += chunk
        release.set()
        wait_for(lambda: asyncio.run(store.size("u")) == 2, "the cut turn to be stored")
        assert [m.content for m in asyncio.run(store.get_messages("u"))] == [
            "hello",
            "one two three",
        ]
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_body_cut_short_stores_nothing_and_the_server_goes_on(agent: Agent) -> None:
    with serve(create_app(agent, ServerSettings(_env_file=None, rate_limit_per_minute=0))) as url:
        for path in ("/v1/chat", "/a2a/jsonrpc", "/v1/chat/completions"):
            raw_http(
                url,
                f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                f"Content-Length: 1000\r\n\r\n".encode()
                + b'{"message": "half a bo',
                read=False,
            )
        reply = httpx.post(f"{url}/v1/chat", json={"message": "hi", "user_id": "v"})
        assert reply.status_code == 200
    assert asyncio.run(agent.store.list_users()) == ["v"]


def _a2a(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def test_another_tenants_a2a_tasks_cannot_be_read_cancelled_or_joined(
    auth_server: str, agent: Agent, tenants: Tenants
) -> None:
    alice = {**tenants.headers("alice"), "A2A-Version": "1.0"}
    bob = {**tenants.headers("bob"), "A2A-Version": "1.0"}
    started = httpx.post(
        f"{auth_server}/a2a/jsonrpc",
        content=_a2a_stream("c1"),
        headers={**alice, "Content-Type": "application/json"},
    )
    events = [
        json.loads(line[5:]) for line in started.text.splitlines() if line.startswith("data:")
    ]
    task_id = next(e["result"]["task"]["id"] for e in events if "task" in e["result"])
    for method in ("GetTask", "CancelTask", "SubscribeToTask"):
        answer = httpx.post(
            f"{auth_server}/a2a/jsonrpc", json=_a2a(method, {"id": task_id}), headers=bob
        )
        assert "Task not found" in answer.text, (method, answer.text[:300])
        assert "hello" not in answer.text
    listed = httpx.post(f"{auth_server}/a2a/jsonrpc", json=_a2a("ListTasks", {}), headers=bob)
    assert listed.json()["result"]["tasks"] == []
    own = httpx.post(
        f"{auth_server}/a2a/jsonrpc", json=_a2a("GetTask", {"id": task_id}), headers=alice
    )
    assert own.json()["result"]["id"] == task_id
    message = {
        "messageId": "m2",
        "role": "ROLE_USER",
        "contextId": "c1",
        "taskId": task_id,
        "parts": [{"text": "What did alice say?"}],
    }
    joined = httpx.post(
        f"{auth_server}/a2a/jsonrpc", json=_a2a("SendMessage", {"message": message}), headers=bob
    )
    assert "not found" in joined.text
    assert asyncio.run(agent.store.list_sessions("bob")) == ["default"]


def test_static_files_and_method_tricks_stay_inside(auth_server: str, tenants: Tenants) -> None:
    for path in ("/static/../server/app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        answer = raw_http(
            auth_server,
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode(),
        )
        assert answer.startswith(b"HTTP/1.1 404"), answer[:100]
    alice = tenants.headers("alice")
    override = httpx.post(
        f"{auth_server}/v1/users/bob", headers={**alice, "X-HTTP-Method-Override": "DELETE"}
    )
    assert override.status_code == 405
    duplicated = httpx.post(
        f"{auth_server}/v1/chat",
        content='{"message": "hi", "user_id": "alice", "user_id": "bob"}',
        headers={**alice, "Content-Type": "application/json"},
    )
    assert duplicated.status_code == 403  # the last key wins, and it is checked


@pytest.mark.parametrize(
    "value",
    [b"a" * 129, b"a b", b"a\tb", b"x;y=1", b"\xc3\xbc", b"<script>", b"a,b", b"a\x0bb"],
)
def test_a_request_id_that_is_not_a_plain_token_is_never_echoed(
    auth_server: str, value: bytes
) -> None:
    answer = raw_http(
        auth_server,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: "
        + value
        + b"\r\nConnection: close\r\n\r\n",
    )
    head = answer.split(b"\r\n\r\n", 1)[0]
    if answer.startswith(b"HTTP/1.1 400"):  # uvicorn refused the header bytes themselves
        return
    echoed = [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id:")]
    assert len(echoed) == 1
    assert echoed[0].split(b": ", 1)[1] != value.strip()


def test_a_folded_header_is_refused_before_the_app(auth_server: str) -> None:
    answer = raw_http(
        auth_server,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: abc\r\n"
        b" Set-Cookie: forged\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"forged" not in answer
