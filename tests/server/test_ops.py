"""Operations: health, readiness, metrics without user labels, rate limits, pruning, and a
graceful shutdown that lets in-flight turns finish."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from tenantry import Agent, FunctionModel, InMemoryStore, Message, ModelResponse
from tenantry.server import create_app
from tenantry.server.errors import RateLimited
from tenantry.server.ratelimit import RateLimiter
from tenantry.server.state import ServerState
from tenantry.server.turns import TurnRequest, _produce
from tenantry.tenancy import Scope
from tenantry.types import ToolSpec
from tests.conftest import FakeClock
from tests.server.conftest import Tenants, open_settings
from tests.support.servers import free_port


async def test_health_and_readiness(open_client: httpx.AsyncClient) -> None:
    assert (await open_client.get("/healthz")).json() == {"status": "ok"}
    assert (await open_client.get("/readyz")).json() == {"status": "ready"}


async def test_readiness_fails_once_the_store_is_closed(
    agent: Agent, client_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await client_for(create_app(agent, open_settings()))
    await agent.store.close()
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "StoreUnavailable"
    assert response.json()["error"]["message"].startswith("the store is unavailable; retry later")
    assert "the store is not usable: StoreClosed" in caplog.text  # the detail: in the log only


async def test_metrics_count_turns_and_errors_without_user_labels(
    auth_client: httpx.AsyncClient, tenants: Tenants
) -> None:
    for _ in range(2):
        await auth_client.post("/v1/chat", json={"message": "hi"}, headers=tenants.headers("alice"))
    await auth_client.post(
        "/v1/chat/stream", json={"message": "hi"}, headers=tenants.headers("bob")
    )
    await auth_client.post("/v1/chat", json={"message": ""}, headers=tenants.headers("alice"))
    await auth_client.get("/v1/users/bob/sessions", headers=tenants.headers("alice"))
    await auth_client.get("/v1/me")
    text = (await auth_client.get("/metrics")).text
    assert 'tenantry_turns_total{outcome="ok",transport="chat"} 2.0' in text
    assert 'tenantry_turns_total{outcome="ok",transport="stream"} 1.0' in text
    assert 'tenantry_turn_duration_seconds_count{transport="chat"} 2.0' in text
    assert 'tenantry_errors_total{type="InvalidRequest"} 1.0' in text
    assert 'tenantry_errors_total{type="Forbidden"} 1.0' in text
    assert 'tenantry_errors_total{type="Unauthorized"} 1.0' in text
    assert "tenantry_active_scopes 0.0" in text
    for user in ("alice", "bob", "default"):
        assert user not in text


async def test_active_scopes_counts_scopes_with_a_turn_in_flight(client_for: Any) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    waiting = 0

    async def slow(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        nonlocal waiting
        waiting += 1
        if waiting == 2:
            entered.set()
        await release.wait()
        return ModelResponse("ok")

    client = await client_for(
        create_app(Agent(model=FunctionModel(slow), store=InMemoryStore()), open_settings())
    )
    calls = [
        asyncio.create_task(client.post("/v1/chat", json={"message": "x", "user_id": user}))
        for user in ("a", "b", "a")
    ]
    await entered.wait()
    text = (await client.get("/metrics")).text
    assert "tenantry_active_scopes 2.0" in text
    assert "tenantry_turns_in_flight 3.0" in text
    release.set()
    assert [(await call).status_code for call in calls] == [200, 200, 200]


async def test_each_tenant_has_its_own_rate_limit(
    agent: Agent, tenants: Tenants, client_for: Any
) -> None:
    client = await client_for(create_app(agent, tenants.settings(rate_limit_per_minute=2)))
    alice = tenants.headers("alice")
    for _ in range(2):
        assert (await client.post("/v1/chat", json={"message": "hi"}, headers=alice)).is_success
    limited = await client.get("/v1/users/alice/sessions", headers=alice)
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "RateLimited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    bob = await client.post("/v1/chat", json={"message": "hi"}, headers=tenants.headers("bob"))
    assert bob.status_code == 200
    assert await agent.store.size("alice") == 4


def test_a_bucket_refills_at_the_configured_rate() -> None:
    clock = FakeClock(0)
    limiter = RateLimiter(60, clock=clock)
    for _ in range(60):
        limiter.hit("a")
    with pytest.raises(RateLimited) as caught:
        limiter.hit("a")
    assert caught.value.retry_after == pytest.approx(1.0)
    clock.advance(1.0)
    limiter.hit("a")
    with pytest.raises(RateLimited):
        limiter.hit("a")


def test_rate_limit_memory_is_bounded_and_idle_buckets_go() -> None:
    clock = FakeClock(0)
    limiter = RateLimiter(10, max_tenants=100, clock=clock)
    for n in range(1000):
        limiter.hit(f"t{n}")
    assert len(limiter) == 100
    clock.advance(61)
    limiter.hit("new")
    assert len(limiter) == 1
    RateLimiter(0).hit("anyone")  # 0 disables the limit


class PruneWatchingStore(InMemoryStore):
    """Tells when a prune has run."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.pruned = asyncio.Event()

    async def prune_inactive(self, older_than: timedelta) -> int:
        deleted = await super().prune_inactive(older_than)
        self.pruned.set()
        return deleted


async def test_idle_sessions_are_pruned_in_the_background(client_for: Any) -> None:
    clock = FakeClock()
    store = PruneWatchingStore(clock=clock)
    await store.add(Message.user("old"), user_id="idle")
    clock.advance(7200)
    await store.add(Message.user("new"), user_id="active")
    await client_for(create_app(Agent(store=store), open_settings(prune_inactive_hours=1)))
    async with asyncio.timeout(5):
        await store.pruned.wait()
    assert await store.list_users() == ["active"]


class _Slow:
    """A model that blocks in its turn until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    async def __call__(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> ModelResponse:
        self.entered.set()
        await asyncio.to_thread(self.release.wait, 10)
        return ModelResponse("finished after shutdown began")


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/stream"])
def test_shutdown_lets_in_flight_turns_finish(path: str) -> None:
    slow = _Slow()
    store = InMemoryStore()
    app = create_app(Agent(model=FunctionModel(slow), store=store), open_settings())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=10
        )
    )
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    result: dict[str, Any] = {}

    def call() -> None:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        result["response"] = httpx.post(
            f"http://127.0.0.1:{port}{path}", json={"message": "hi", "user_id": "u"}, timeout=20
        )

    caller = threading.Thread(target=call)
    caller.start()
    assert slow.entered.wait(10)
    server.should_exit = True
    deadline = time.monotonic() + 10
    while not _refuses_connections(port):  # shutdown has begun: no new connections
        assert time.monotonic() < deadline
        time.sleep(0.01)
    slow.release.set()
    caller.join(20)
    serving.join(20)
    assert not serving.is_alive()
    response = result["response"]
    assert response.status_code == 200
    assert "finished after shutdown began" in response.text
    assert [m.content for m in asyncio.run(store.get_messages("u"))] == [
        "hi",
        "finished after shutdown began",
    ]


async def test_shutdown_waits_for_a_streamed_turn_whose_client_left() -> None:
    release = asyncio.Event()

    async def slow(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        await release.wait()
        return ModelResponse("stored anyway")

    store = InMemoryStore()
    app = create_app(Agent(model=FunctionModel(slow), store=store), open_settings())
    state: ServerState = app.state.tenantry
    async with app.router.lifespan_context(app):
        queue: asyncio.Queue[Any] = asyncio.Queue()
        state.spawn(_produce(state, TurnRequest("stream", Scope("u"), "hi"), queue))
        assert len(state.tasks) == 1
        asyncio.get_running_loop().call_soon(release.set)
    assert not state.tasks
    assert [m.content for m in await store.get_messages("u")] == ["hi", "stored anyway"]


async def test_a_turn_that_outlives_the_grace_period_ends_with_shutting_down() -> None:
    forever = asyncio.Event()

    async def stuck(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        await forever.wait()
        return ModelResponse("never")

    store = InMemoryStore()
    app = create_app(
        Agent(model=FunctionModel(stuck), store=store), open_settings(graceful_timeout=0.01)
    )
    state: ServerState = app.state.tenantry
    queue: asyncio.Queue[Any] = asyncio.Queue()
    async with app.router.lifespan_context(app):
        state.spawn(_produce(state, TurnRequest("stream", Scope("u"), "hi"), queue))
    assert not state.tasks
    told = queue.get_nowait()
    assert type(told).__name__ == "ShuttingDown"
    assert await store.size("u") == 0


async def test_the_server_uses_openai_when_it_is_configured(client_for: Any) -> None:
    from tests.support.fake_openai import FakeOpenAI, Reply
    from tests.support.servers import serve

    api = FakeOpenAI(replies=[Reply(content="Hello from the API")])
    with serve(api.app()) as url:
        settings = open_settings(
            store_url="memory://", openai_api_key="sk-test", openai_base_url=f"{url}/v1"
        )
        app = create_app(settings=settings)
        # No TENANTRY_MODEL: the model is the one the server lists, asked on the first turn.
        assert app.state.tenantry.agent.model.name == "auto"
        client = await client_for(app)
        reply = await client.post("/v1/chat", json={"message": "hi", "user_id": "u"})
        info = await client.get("/v1/info")
    assert reply.json()["reply"] == "Hello from the API"
    assert api.requests[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert api.requests[0]["model"] == "fake-model"
    assert info.json()["model"] == "fake-model"


async def test_log_lines_carry_the_request_id(
    open_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    from tenantry.server.middleware import RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level("INFO", logger="tenantry.server.access"):
        await open_client.get("/healthz", headers={"X-Request-ID": "trace-7"})
    (record,) = [r for r in caplog.records if r.name == "tenantry.server.access"]
    assert record.getMessage().startswith("GET /healthz 200 ")
    assert record.request_id == "trace-7"  # type: ignore[attr-defined]


async def test_cors_is_off_unless_origins_are_configured(agent: Agent, client_for: Any) -> None:
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key,content-type",
    }
    closed = await client_for(create_app(agent, open_settings()))
    assert (
        "access-control-allow-origin"
        not in (await closed.options("/v1/chat", headers=preflight)).headers
    )
    opened = await client_for(
        create_app(agent, open_settings(cors_origins=["https://app.example"]))
    )
    allowed = await opened.options("/v1/chat", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"


PUBLIC_WITH_AUTH = ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/v1/info", "/"]


async def test_with_auth_on_the_operations_routes_stay_public(
    auth_client: httpx.AsyncClient,
) -> None:
    for path in PUBLIC_WITH_AUTH:
        assert (await auth_client.get(path)).status_code == 200, path
    assert (await auth_client.get("/.well-known/agent-card.json")).status_code == 200
    assert (await auth_client.get("/v1/me")).status_code == 401


async def test_metrics_can_be_closed_to_all_but_admins(
    agent: Agent, tenants: Tenants, client_for: Any
) -> None:
    client = await client_for(create_app(agent, tenants.settings(metrics_public=False)))
    anonymous = await client.get("/metrics")
    assert anonymous.status_code == 401
    assert "TENANTRY_METRICS_PUBLIC" in anonymous.json()["error"]["message"]
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    user = await client.get("/metrics", headers=tenants.headers("alice"))
    assert user.status_code == 403
    assert user.json()["error"]["type"] == "Forbidden"
    wrong = await client.get("/metrics", headers={"X-API-Key": "tnt_wrong"})
    assert wrong.status_code == 401
    # What a Prometheus scrape sends with `authorization: {credentials: <an admin's key>}`.
    admin = await client.get("/metrics", headers={"Authorization": f"Bearer {tenants.admin_key}"})
    assert admin.status_code == 200
    assert "tenantry_turns_total" in admin.text
    for path in [p for p in PUBLIC_WITH_AUTH if p != "/metrics"]:
        assert (await client.get(path)).status_code == 200, path


async def test_closed_metrics_in_open_mode_stay_readable_on_loopback(
    agent: Agent, client_for: Any
) -> None:
    # Open mode has no credentials; every caller acts as admin (see /v1/me), as for users.
    client = await client_for(create_app(agent, open_settings(metrics_public=False)))
    assert (await client.get("/metrics")).status_code == 200
    assert (await client.get("/v1/me")).json()["admin"] is True
