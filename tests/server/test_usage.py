"""Usage and budgets over HTTP: 429 BudgetExceeded with Retry-After on every transport, the
usage and budget routes and who may call them, export, metrics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tenantry import Agent, FunctionModel, InMemoryStore
from tenantry.models import ModelResponse
from tenantry.server import create_app
from tenantry.types import Budget, Message, ToolSpec, Usage
from tenantry.usage import Budgets
from tests.conftest import FakeClock
from tests.server.conftest import Tenants, open_settings

# 2026-03-10 21:00 UTC: three hours to midnight, three weeks to the month's end.
START = datetime(2026, 3, 10, 21, 0, tzinfo=UTC).timestamp()
TURN = Usage(requests=1, input_tokens=30, output_tokens=10)


def _answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
    return ModelResponse("ok", usage=TURN)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def metered(clock: FakeClock) -> Agent:
    """An agent whose every turn uses 40 tokens, with a default of 100 tokens a day."""
    return Agent(
        model=FunctionModel(_answer),
        store=InMemoryStore(clock=clock),
        budgets=Budgets(Budget(tokens_per_day=100), clock=clock),
    )


@pytest.fixture
async def client(metered: Agent, client_for: Any) -> httpx.AsyncClient:
    made: httpx.AsyncClient = await client_for(create_app(metered, open_settings()))
    return made


@pytest.fixture
async def auth(metered: Agent, tenants: Tenants, client_for: Any) -> httpx.AsyncClient:
    made: httpx.AsyncClient = await client_for(create_app(metered, tenants.settings()))
    return made


async def _chat(client: httpx.AsyncClient, user: str = "alice") -> httpx.Response:
    return await client.post("/v1/chat", json={"message": "hi", "user_id": user})


async def test_turns_succeed_until_the_budget_then_429_until_midnight(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    replies = [await _chat(client) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 200]
    refused = await _chat(client)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == str(3 * 3600)
    error = refused.json()["error"]
    assert error["type"] == "BudgetExceeded"
    assert error["budget"] == {
        "limit": "tokens_per_day",
        "used": 120,
        "allowed": 100,
        "resets_at": "2026-03-11T00:00:00Z",
        "retry_after": 3 * 3600,
    }
    usage = (await client.get("/v1/users/alice/usage")).json()
    assert usage["total"]["total_tokens"] == sum(r.json()["usage"]["total_tokens"] for r in replies)
    assert [d["day"] for d in usage["days"]] == ["2026-03-10"]
    clock.advance(3 * 3600)
    assert (await _chat(client)).status_code == 200


async def test_streamed_and_legacy_turns_are_refused_before_the_stream(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(3):
        await _chat(client)
    stream = await client.post("/v1/chat/stream", json={"message": "hi", "user_id": "alice"})
    assert stream.status_code == 429
    assert stream.json()["error"]["type"] == "BudgetExceeded"
    legacy = await client.post("/chat", json={"message": "hi", "user_id": "alice"})
    assert legacy.status_code == 429


async def test_the_openai_endpoint_answers_as_openai_does_when_over_quota(
    client: httpx.AsyncClient,
) -> None:
    body = {"model": "m", "user": "alice", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    refused = await client.post("/v1/chat/completions", json=body)
    assert refused.status_code == 429
    assert refused.headers["x-should-retry"] == "false"
    assert refused.headers["Retry-After"] == str(3 * 3600)
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "insufficient_quota",
        "insufficient_quota",
        None,
    )
    assert error["budget"]["limit"] == "tokens_per_day"


async def test_the_openai_client_raises_its_rate_limit_error_without_retrying(
    client: httpx.AsyncClient,
) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.AsyncOpenAI(
        base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=2
    )
    for _ in range(3):
        await sdk.chat.completions.create(
            model="m", user="alice", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk.chat.completions.create(
            model="m", user="alice", messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.code == "insufficient_quota"
    assert refused.value.type == "insufficient_quota"


async def test_a2a_refuses_with_a_resource_exhausted_jsonrpc_error(
    client: httpx.AsyncClient,
) -> None:
    def send(n: int) -> dict[str, Any]:
        message = {
            "messageId": f"m{n}",
            "role": "ROLE_USER",
            "contextId": "alice",
            "parts": [{"text": "hi"}],
        }
        return {"jsonrpc": "2.0", "id": n, "method": "SendMessage", "params": {"message": message}}

    headers = {"A2A-Version": "1.0"}
    for n in range(3):
        ok = await client.post("/a2a/jsonrpc", json=send(n), headers=headers)
        assert "result" in ok.json(), ok.text
    refused = (await client.post("/a2a/jsonrpc", json=send(9), headers=headers)).json()
    assert refused["error"]["code"] == -32000
    info = refused["error"]["data"][0]
    assert info["reason"] == "RESOURCE_EXHAUSTED"
    assert info["metadata"]["type"] == "BudgetExceeded"
    assert info["metadata"]["retry_after"] == 3 * 3600
    assert info["metadata"]["budget"]["limit"] == "tokens_per_day"


async def test_a_users_own_budget_set_by_an_admin_replaces_the_default(
    auth: httpx.AsyncClient, tenants: Tenants
) -> None:
    admin = {"X-API-Key": tenants.admin_key}
    alice = tenants.headers("alice")
    shown = await auth.get("/v1/users/alice/budget", headers=alice)
    assert shown.json()["source"] == "default"
    assert shown.json()["budget"]["tokens_per_day"] == 100
    put = await auth.put("/v1/users/alice/budget", json={"tokens_per_day": 1000}, headers=admin)
    assert put.status_code == 200
    assert put.json()["source"] == "user"
    assert put.json()["budget"] == {
        "tokens_per_day": 1000,
        "requests_per_day": None,
        "tokens_per_month": None,
        "requests_per_month": None,
    }
    for _ in range(5):
        reply = await auth.post("/v1/chat", json={"message": "hi"}, headers=alice)
        assert reply.status_code == 200
    assert (await auth.get("/v1/users/alice/budget", headers=alice)).json()["today"][
        "total_tokens"
    ] == 200
    gone = await auth.delete("/v1/users/alice/budget", headers=admin)
    assert gone.status_code == 204
    refused = await auth.post("/v1/chat", json={"message": "hi"}, headers=alice)
    assert refused.status_code == 429


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/users/bob/usage", None),
        ("GET", "/v1/users/bob/budget", None),
        ("PUT", "/v1/users/bob/budget", {"tokens_per_day": 1}),
        ("DELETE", "/v1/users/bob/budget", None),
        ("PUT", "/v1/users/alice/budget", {"tokens_per_day": 10**9}),  # not even its own
        ("DELETE", "/v1/users/alice/budget", None),
        ("GET", "/v1/usage", None),
    ],
)
async def test_a_tenant_cannot_read_or_set_anothers_usage_or_budget(
    auth: httpx.AsyncClient, tenants: Tenants, method: str, path: str, body: Any
) -> None:
    response = await auth.request(method, path, json=body, headers=tenants.headers("alice"))
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "Forbidden"


async def test_a_user_reads_its_own_usage_and_an_admin_reads_the_heaviest(
    auth: httpx.AsyncClient, tenants: Tenants
) -> None:
    for user, turns in (("alice", 2), ("bob", 1)):
        for _ in range(turns):
            await auth.post("/v1/chat", json={"message": "hi"}, headers=tenants.headers(user))
    own = await auth.get(
        "/v1/users/alice/usage?from=2026-03-01&to=2026-03-31", headers=tenants.headers("alice")
    )
    assert own.status_code == 200
    assert own.json()["total"]["requests"] == 2
    assert (own.json()["start"], own.json()["end"]) == ("2026-03-01", "2026-03-31")
    top = await auth.get("/v1/usage?top=1", headers={"X-API-Key": tenants.admin_key})
    assert top.status_code == 200
    assert [u["user_id"] for u in top.json()["users"]] == ["alice"]
    assert top.json()["users"][0]["usage"]["total_tokens"] == 80
    reversed_period = await auth.get(
        "/v1/users/alice/usage?from=2026-03-09&to=2026-03-01", headers=tenants.headers("alice")
    )
    assert reversed_period.status_code == 422


async def test_export_includes_the_users_usage_and_budget(
    auth: httpx.AsyncClient, tenants: Tenants, metered: Agent
) -> None:
    await auth.post("/v1/chat", json={"message": "hi"}, headers=tenants.headers("alice"))
    await metered.store.set_budget("alice", Budget(requests_per_month=10))
    export = (await auth.get("/v1/users/alice/export", headers=tenants.headers("alice"))).json()
    assert [(d["day"], d["total_tokens"]) for d in export["usage"]] == [("2026-03-10", 40)]
    assert export["budget"]["requests_per_month"] == 10
    deleted = await auth.delete("/v1/users/alice", headers=tenants.headers("alice"))
    assert deleted.status_code == 200
    kept = await auth.get("/v1/users/alice/export", headers=tenants.headers("alice"))
    assert kept.status_code == 200  # deleting the user's data keeps its billing records
    assert (kept.json()["sessions"], len(kept.json()["usage"])) == ([], 1)


async def test_metrics_count_tokens_requests_and_refusals_without_a_user_label(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(4):
        await _chat(client, "alice-the-tenant")
    text = (await client.get("/metrics")).text
    assert 'tenantry_model_requests_total{outcome="ok",transport="chat"} 3.0' in text
    assert 'tenantry_model_tokens_total{kind="input",outcome="ok",transport="chat"} 90.0' in text
    assert 'tenantry_budget_refusals_total{limit="tokens_per_day",transport="chat"} 1.0' in text
    assert "alice-the-tenant" not in text
