"""Server fixtures: apps in open and auth mode, in-process clients and real uvicorn servers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tenantry import Agent, InMemoryStore
from tenantry.server import ServerSettings, create_app
from tenantry.server.auth import hash_api_key, new_api_key
from tests.support.env import clear_settings
from tests.support.servers import serve

JWT_SECRET = "tenantry-test-secret-" + "0123456789abcdef" * 4
TEST_HOSTS = ["testserver"]
"""The Host of httpx's ASGITransport clients (`client_for`): allowed explicitly, as a
deployment allows its own names; real servers in tests listen on 127.0.0.1."""


@dataclass
class Tenants:
    """API keys of a set of users (and one admin), and the settings that accept them."""

    keys: dict[str, str] = field(default_factory=dict)
    admin_key: str = ""

    def digests(self) -> dict[str, str]:
        digests = {hash_api_key(key): user for user, key in self.keys.items()}
        digests[hash_api_key(self.admin_key)] = "ops"
        return digests

    def env(self) -> dict[str, str]:
        """The environment that configures `tenantry serve` to accept these keys."""
        return {
            "TENANTRY_API_KEYS": json.dumps(self.digests()),
            "TENANTRY_ADMIN_USERS": '["ops"]',
        }

    def settings(self, **overrides: Any) -> ServerSettings:
        options: dict[str, Any] = {
            "api_keys": self.digests(),
            "admin_users": ["ops"],
            "jwt_secret": JWT_SECRET,
            "rate_limit_per_minute": 0,
            "allowed_hosts": TEST_HOSTS,
        }
        options.update(overrides)
        return ServerSettings(_env_file=None, **options)

    def headers(self, user: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[user]}


def refusal(response: httpx.Response) -> tuple[str, str]:
    """Give a refused request's error type and message: from our JSON error, or on the A2A
    endpoint from its JSON-RPC error (the type is in the ErrorInfo's metadata)."""
    body = response.json()
    error = body["error"]
    if "jsonrpc" in body:
        return error["data"][0]["metadata"]["type"], error["message"]
    return error["type"], error["message"]


def make_tenants(users: list[str]) -> Tenants:
    return Tenants(keys={user: new_api_key() for user in users}, admin_key=new_api_key())


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from each test, never from the machine's environment."""
    clear_settings(monkeypatch)


def open_settings(**overrides: Any) -> ServerSettings:
    options: dict[str, Any] = {"rate_limit_per_minute": 0, "allowed_hosts": TEST_HOSTS}
    options.update(overrides)
    return ServerSettings(_env_file=None, **options)


@pytest.fixture
def tenants() -> Tenants:
    return make_tenants(["alice", "bob", "carol"])


@pytest.fixture
def agent() -> Agent:
    return Agent(name="test-agent", store=InMemoryStore())


AppFactory = Callable[..., FastAPI]


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[FastAPI], Any]]:
    """Give in-process clients for apps, running each app's lifespan."""
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:

        async def make(app: FastAPI) -> httpx.AsyncClient:
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://testserver")
            )

        yield make


@pytest.fixture
async def open_client(agent: Agent, client_for: Any) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await client_for(create_app(agent, open_settings()))
    return client


@pytest.fixture
async def auth_client(agent: Agent, tenants: Tenants, client_for: Any) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await client_for(create_app(agent, tenants.settings()))
    return client


@pytest.fixture
def live_open(agent: Agent) -> Iterator[str]:
    """A real uvicorn server in open mode; gives its base URL."""
    with serve(create_app(agent, open_settings())) as url:
        yield url


@pytest.fixture
def live_auth(agent: Agent, tenants: Tenants) -> Iterator[str]:
    """A real uvicorn server with API keys and JWT on; gives its base URL."""
    with serve(create_app(agent, tenants.settings())) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'server.db'}"
