"""The Host header check: DNS rebinding against a loopback server in open mode (issue 11,
finding 2) gets a JSON 400 and touches nothing; loopback names, the public URL's host, the
bound address and the configured allow-list are served."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tenantry import Agent, InMemoryStore, Message
from tenantry.server import ServerSettings, create_app
from tenantry.server.guards import AllowedHosts, host_of
from tests.server.conftest import refusal
from tests.support.rawhttp import port_of, raw_http
from tests.support.servers import serve


@pytest.fixture
def default_server(agent: Agent) -> Iterator[str]:
    """A real server with the production defaults (open mode, nothing allowed explicitly),
    holding one user's conversation."""
    asyncio.run(agent.store.add(Message.user("secret of u"), user_id="u"))
    with serve(create_app(agent, ServerSettings(_env_file=None))) as url:
        yield url


def request(url: str, method: str, path: str, host: str, **options: Any) -> httpx.Response:
    return httpx.request(method, url + path, headers={"Host": host}, **options)


def assert_invalid_host(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    kind, message = refusal(response)
    assert kind == "InvalidHost"
    assert "TENANTRY_ALLOWED_HOSTS" in message
    assert response.headers["X-Request-ID"]


def test_dns_rebinding_cannot_read_or_delete_conversations(
    default_server: str, agent: Agent
) -> None:
    rebound = f"rebind.attacker.example:{port_of(default_server)}"
    for method, path in [
        ("GET", "/v1/users"),
        ("GET", "/v1/users/u/export"),
        ("GET", "/v1/users/u/sessions"),
        ("GET", "/v1/users/u/sessions/default/messages"),
        ("DELETE", "/v1/users/u"),
        ("DELETE", "/v1/users/u/sessions/default"),
        ("GET", "/.well-known/agent-card.json"),
        ("GET", "/"),
    ]:
        assert_invalid_host(request(default_server, method, path, rebound))
    for path in ("/v1/chat", "/chat", "/v1/chat/completions", "/a2a/jsonrpc"):
        assert_invalid_host(
            request(default_server, "POST", path, rebound, json={"message": "hi", "user_id": "u"})
        )
    assert [m.content for m in asyncio.run(agent.store.get_messages("u"))] == ["secret of u"]


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "EVIL.example:1",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "localhost.",
        "xlocalhost",
        "localhost@evil.example",
        "evil.example#@localhost",
        "localhost:80:90",
        "[::1",
        "[::g]",
        "::1",
        "",
        "local host",
        "localhost/../evil",
        "x" * 5000,
    ],
)
def test_a_host_the_server_does_not_answer_to_is_a_json_400(default_server: str, host: str) -> None:
    answer = raw_http(
        default_server,
        f"GET /v1/users HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"users"' not in answer
    if b"application/json" not in answer:  # uvicorn refused the bytes before the app saw them
        assert b"Invalid HTTP request" in answer
        return
    assert b'"type":"InvalidHost"' in answer
    assert b"TENANTRY_ALLOWED_HOSTS" in answer


def test_no_host_header_and_absolute_urls_are_checked_too(default_server: str) -> None:
    no_host = raw_http(default_server, b"GET /v1/users HTTP/1.0\r\n\r\n")
    assert no_host.startswith(b"HTTP/1.1 400")
    assert b"InvalidHost" in no_host
    absolute = raw_http(
        default_server,
        b"GET http://127.0.0.1/v1/users HTTP/1.1\r\nHost: evil.example\r\nConnection: close"
        b"\r\n\r\n",
    )
    assert absolute.startswith(b"HTTP/1.1 400")
    doubled = raw_http(
        default_server,
        b"GET /v1/users HTTP/1.1\r\nHost: evil.example\r\nHost: localhost\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert doubled.startswith(b"HTTP/1.1 400")
    assert b'"users"' not in doubled


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.0.0.2", "[::1]"])
def test_loopback_names_are_served_with_any_port(default_server: str, host: str) -> None:
    for port in ("", f":{port_of(default_server)}", ":1"):
        response = request(default_server, "GET", "/v1/users", host + port)
        assert response.status_code == 200, (host + port, response.text)
        assert response.json() == {"users": ["u"]}


def test_operations_routes_answer_probes_that_name_the_pods_ip(default_server: str) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert request(default_server, "GET", path, "10.1.2.3:8080").status_code == 200


def test_the_public_url_host_the_allow_list_and_the_bound_address_are_served(
    agent: Agent,
) -> None:
    settings = ServerSettings(
        _env_file=None,
        public_url="https://chat.example.com/base",
        allowed_hosts=["tenantry.internal", "*.corp.example", "10.0.0.7"],
        host="192.0.2.10",
        allow_open_remote=True,
    )
    allowed = AllowedHosts.for_settings(settings)
    for good in ("chat.example.com", "tenantry.internal", "a.corp.example", "b.a.corp.example"):
        assert allowed.allows(good)
    assert allowed.allows("10.0.0.7")
    assert allowed.allows("192.0.2.10")
    for bad in ("corp.example", "evilcorp.example", "example.com", "chat.example.com.evil"):
        assert not allowed.allows(bad)
    with serve(create_app(agent, settings)) as url:
        assert request(url, "GET", "/v1/users", "chat.example.com").status_code == 200
        assert request(url, "GET", "/v1/users", "x.corp.example:8443").status_code == 200
        assert_invalid_host(request(url, "GET", "/v1/users", "x.example.com"))


def test_a_star_allows_any_host_for_a_proxy_that_checks_it(agent: Agent) -> None:
    with serve(create_app(agent, ServerSettings(_env_file=None, allowed_hosts=["*"]))) as url:
        assert request(url, "GET", "/v1/users", "whatever.example").status_code == 200
        assert_invalid_host(request(url, "GET", "/v1/users", "not a host"))


async def test_the_test_clients_host_is_allowed_only_by_setting_it(
    agent: Agent, client_for: Any
) -> None:
    default = await client_for(create_app(agent, ServerSettings(_env_file=None)))
    assert_invalid_host(await default.get("/v1/users"))
    explicit = await client_for(
        create_app(agent, ServerSettings(_env_file=None, allowed_hosts=["testserver"]))
    )
    assert (await explicit.get("/v1/users")).status_code == 200


def test_host_of_parses_host_and_port() -> None:
    assert host_of("Example.COM:8080") == "example.com"
    assert host_of("[::1]:80") == "[::1]"
    assert host_of("[::1]") == "[::1]"
    assert host_of("my_service") == "my_service"
    for bad in ("", "a b", "x:y", "[::1]x", "a:123456", "[nothex]", "a/b", "a@b"):
        assert host_of(bad) is None, bad


def test_the_store_of_a_rebound_request_is_never_opened() -> None:
    # The check runs before routing: a request with a bad Host reaches no store at all.
    class Exploding(InMemoryStore):
        async def list_users(self) -> list[str]:
            raise AssertionError("the store was reached")

    with serve(create_app(Agent(store=Exploding()), ServerSettings(_env_file=None))) as url:
        assert_invalid_host(request(url, "GET", "/v1/users", "evil.example"))


def test_serve_on_a_public_interface_says_which_hosts_it_answers_to(
    monkeypatch: pytest.MonkeyPatch, tenants: Any
) -> None:
    import logging

    import uvicorn
    from typer.testing import CliRunner

    from tenantry.cli import app

    monkeypatch.setattr(uvicorn, "run", lambda asgi, **options: None)
    for name, value in tenants.env().items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        bare = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--store", "memory://"])
        monkeypatch.setenv("TENANTRY_ALLOWED_HOSTS", '["chat.example.com"]')
        named = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--store", "memory://"])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert bare.exit_code == 0, bare.output
    assert "TENANTRY_ALLOWED_HOSTS" in bare.output
    assert named.exit_code == 0, named.output
    assert "InvalidHost" not in named.output
