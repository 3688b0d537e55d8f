"""Auth: the tenant is the credential's user; API keys (by digest) and JWTs (HS256, RS256
public key, JWKS file); admins; org prefixes; every failure is a 401 that says why."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from tenantry import Agent
from tenantry.errors import InvalidInput
from tenantry.server import ServerSettings, create_app
from tenantry.server.config import check_bind, is_loopback
from tests.server.conftest import JWT_SECRET, TEST_HOSTS, Tenants


def token(claims: dict[str, Any], key: Any = JWT_SECRET, alg: str = "HS256", **headers: Any) -> str:
    # Valid for a day: parametrised tokens are made at collection, long before a full suite
    # reaches them.
    body = {"exp": int(time.time()) + 86_400, **claims}
    return jwt.encode(body, key, algorithm=alg, headers=headers or None)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_the_tenant_is_the_credentials_user(
    auth_client: httpx.AsyncClient, tenants: Tenants
) -> None:
    said = await auth_client.post(
        "/v1/chat", json={"message": "My name is Alice"}, headers=tenants.headers("alice")
    )
    assert said.json()["user_id"] == "alice"
    same_user_named = await auth_client.post(
        "/v1/chat",
        json={"message": "What is my name?", "user_id": "alice"},
        headers=tenants.headers("alice"),
    )
    assert same_user_named.json()["reply"] == "Your name is Alice."
    bob = await auth_client.post(
        "/v1/chat", json={"message": "What is my name?"}, headers=tenants.headers("bob")
    )
    assert bob.json()["user_id"] == "bob"
    assert "don't know your name" in bob.json()["reply"]


async def test_naming_another_user_is_forbidden_and_changes_nothing(
    agent: Agent, auth_client: httpx.AsyncClient, tenants: Tenants
) -> None:
    response = await auth_client.post(
        "/chat", json={"message": "hi", "user_id": "bob"}, headers=tenants.headers("alice")
    )
    assert response.status_code == 403
    assert response.json()["error"] == {
        "type": "Forbidden",
        "message": "this credential belongs to user 'alice' and may not act on user 'bob'",
    }
    assert await agent.store.list_users() == []


async def test_no_credential_is_401_with_www_authenticate(auth_client: httpx.AsyncClient) -> None:
    response = await auth_client.post("/v1/chat", json={"message": "hi", "user_id": "alice"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="tenantry"'
    assert response.json()["error"]["type"] == "Unauthorized"
    public = await auth_client.get("/v1/info")
    assert public.json()["auth"] is True
    assert public.json()["schemes"] == ["apiKey", "bearer"]
    assert (await auth_client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "tnt_not-a-key"},
        {"Authorization": "Bearer tnt_not-a-key"},
        {"Authorization": "Basic YWxpY2U6cHc="},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.jwt"},
    ],
)
async def test_bad_credentials_are_401(
    auth_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await auth_client.get("/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "Unauthorized"


async def test_an_api_key_works_as_a_bearer_token_too(
    auth_client: httpx.AsyncClient, tenants: Tenants
) -> None:
    me = await auth_client.get("/v1/me", headers=bearer(tenants.keys["carol"]))
    assert me.json() == {"user_id": "carol", "admin": False, "auth": True}


async def test_an_admin_may_act_for_any_user(
    auth_client: httpx.AsyncClient, tenants: Tenants
) -> None:
    admin = {"X-API-Key": tenants.admin_key}
    await auth_client.post(
        "/v1/chat", json={"message": "My name is Bob"}, headers=tenants.headers("bob")
    )
    assert (await auth_client.get("/v1/me", headers=admin)).json()["admin"] is True
    sessions = await auth_client.get("/v1/users/bob/sessions", headers=admin)
    assert sessions.json() == {"user_id": "bob", "sessions": ["default"]}
    for_bob = await auth_client.post(
        "/v1/chat", json={"message": "What is my name?", "user_id": "bob"}, headers=admin
    )
    assert for_bob.json() == {**for_bob.json(), "user_id": "bob", "reply": "Your name is Bob."}
    users = await auth_client.get("/v1/users", headers=admin)
    assert users.json() == {"users": ["bob"]}
    not_admin = await auth_client.get("/v1/users", headers=tenants.headers("bob"))
    assert not_admin.status_code == 403


async def test_hs256_jwt_names_the_user_by_its_sub(auth_client: httpx.AsyncClient) -> None:
    me = await auth_client.get("/v1/me", headers=bearer(token({"sub": "dave"})))
    assert me.json() == {"user_id": "dave", "admin": False, "auth": True}
    admin = await auth_client.get(
        "/v1/me", headers=bearer(token({"sub": "eve", "roles": ["admin"]}))
    )
    assert admin.json()["admin"] is True
    spaced = await auth_client.get(
        "/v1/me", headers=bearer(token({"sub": "eve", "roles": "x admin"}))
    )
    assert spaced.json()["admin"] is True


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (token({"sub": "dave"}, key="another-secret-of-sufficient-length!!"), "Signature"),
        (token({"sub": "dave", "exp": int(time.time()) - 3600}), "expired"),
        (jwt.encode({"sub": "dave"}, JWT_SECRET, algorithm="HS256"), "exp"),
        (token({"user": "dave"}), "'sub'"),
        (token({"sub": ""}), "not usable"),
        (token({"sub": "dave"}, key=JWT_SECRET, alg="HS512"), "HS512"),
        (jwt.encode({"sub": "x"}, None, algorithm="none"), "'none'"),
    ],
)
async def test_bad_jwts_are_401_and_say_why(
    auth_client: httpx.AsyncClient, bad: str, why: str
) -> None:
    response = await auth_client.get("/v1/me", headers=bearer(bad))
    assert response.status_code == 401
    assert why in response.json()["error"]["message"]


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[Any, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


async def test_rs256_with_a_public_key_file_and_org_prefix(
    agent: Agent, client_for: Any, rsa_pair: tuple[Any, str], tmp_path: Path
) -> None:
    private, public = rsa_pair
    pem = tmp_path / "public.pem"
    pem.write_text(public)
    settings = ServerSettings(
        _env_file=None,
        jwt_public_key=str(pem),
        jwt_org_claim="org",
        jwt_audience="tenantry",
        jwt_issuer="https://issuer.example",
        allowed_hosts=TEST_HOSTS,
    )
    client = await client_for(create_app(agent, settings))
    claims = {"sub": "alice", "org": "acme", "aud": "tenantry", "iss": "https://issuer.example"}
    me = await client.get("/v1/me", headers=bearer(token(claims, private, "RS256")))
    assert me.json()["user_id"] == "acme:alice"
    wrong_audience = token({**claims, "aud": "other"}, private, "RS256")
    assert (await client.get("/v1/me", headers=bearer(wrong_audience))).status_code == 401
    hs = token({"sub": "alice"})
    assert (await client.get("/v1/me", headers=bearer(hs))).status_code == 401


async def test_rs256_keys_from_a_jwks_file_are_chosen_by_kid(
    agent: Agent, client_for: Any, rsa_pair: tuple[Any, str], tmp_path: Path
) -> None:
    private, _ = rsa_pair
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    settings = ServerSettings(_env_file=None, jwt_jwks_file=jwks, allowed_hosts=TEST_HOSTS)
    client = await client_for(create_app(agent, settings))
    good = token({"sub": "zed"}, private, "RS256", kid="k1")
    assert (await client.get("/v1/me", headers=bearer(good))).json()["user_id"] == "zed"
    no_kid = token({"sub": "zed"}, private, "RS256")
    assert (await client.get("/v1/me", headers=bearer(no_kid))).json()["user_id"] == "zed"
    unknown = await client.get(
        "/v1/me", headers=bearer(token({"sub": "zed"}, private, "RS256", kid="k9"))
    )
    assert unknown.status_code == 401
    assert "k9" in unknown.json()["error"]["message"]


def test_settings_reject_keys_that_are_not_digests() -> None:
    with pytest.raises(ValidationError, match="tenantry keys new"):
        ServerSettings(_env_file=None, api_keys={"plain-key": "alice"})
    with pytest.raises(ValidationError, match="user id"):
        ServerSettings(_env_file=None, api_keys={"a" * 64: ""})
    with pytest.raises(ValidationError, match="PEM"):
        ServerSettings(_env_file=None, jwt_public_key="/no/such/file.pem")
    with pytest.raises(ValidationError, match="not a file"):
        ServerSettings(_env_file=None, jwt_jwks_file=Path("/no/such/jwks.json"))
    upper = ServerSettings(_env_file=None, api_keys={"sha256:" + "A" * 64: "alice"})
    assert upper.api_keys == {"a" * 64: "alice"}


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_API_KEYS", json.dumps({"b" * 64: "bob"}))
    monkeypatch.setenv("TENANTRY_ADMIN_USERS", '["bob"]')
    monkeypatch.setenv("TENANTRY_PORT", "9001")
    settings = ServerSettings(_env_file=None)
    assert settings.api_keys == {"b" * 64: "bob"}
    assert settings.admin_users == frozenset({"bob"})
    assert settings.port == 9001
    assert settings.auth_enabled


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.0.2.1", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_open_mode_refuses_a_non_loopback_host_unless_allowed(tenants: Tenants) -> None:
    with pytest.raises(InvalidInput, match="refusing to serve without authentication"):
        check_bind(ServerSettings(_env_file=None, host="0.0.0.0"))
    check_bind(ServerSettings(_env_file=None, host="0.0.0.0", allow_open_remote=True))
    check_bind(tenants.settings(host="0.0.0.0"))
    check_bind(ServerSettings(_env_file=None))
