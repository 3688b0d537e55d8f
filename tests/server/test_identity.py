"""Identity parsing: a credential's tenant is tenant_id(user, org), the same for API keys and
JWTs; distinct (org, user) pairs never share a tenant, and a malformed claim is 401, never a
fallback to another tenant."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from tenantry import Agent, InvalidUserId
from tenantry.cli import app as cli
from tenantry.server import ServerSettings, create_app
from tenantry.server.auth import Authenticator, hash_api_key
from tenantry.server.errors import Unauthorized
from tenantry.tenancy import split_tenant_id, tenant_id
from tests.server.conftest import JWT_SECRET, TEST_HOSTS


def token(claims: dict[str, Any]) -> str:
    return jwt.encode({"exp": int(time.time()) + 3600, **claims}, JWT_SECRET, algorithm="HS256")


def bearer(claims: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {token(claims)}"}


def new_key(*args: str) -> tuple[str, dict[str, str]]:
    """Make a key with the real `tenantry keys new ARGS`; give it and its setting."""
    result = CliRunner().invoke(cli, ["keys", "new", *args])
    assert result.exit_code == 0, result.output
    key = result.output.splitlines()[1].strip()
    setting = result.output.split("TENANTRY_API_KEYS='")[1].split("'")[0]
    return key, json.loads(setting)


def settings(**options: Any) -> ServerSettings:
    return ServerSettings(
        _env_file=None,
        jwt_secret=JWT_SECRET,
        rate_limit_per_minute=0,
        allowed_hosts=TEST_HOSTS,
        **options,
    )


async def test_a_sub_holding_the_separator_is_not_the_key_made_for_that_org(
    agent: Agent, client_for: Any
) -> None:
    # The attack: an IdP whose subs are unique only within an org issues {"sub": "acme:alice"}
    # (no org claim); it must not be the user of `tenantry keys new --org acme --user alice`.
    key, digests = new_key("--org", "acme", "--user", "alice")
    assert list(digests.values()) == ["acme:alice"]
    client = await client_for(create_app(agent, settings(api_keys=digests)))
    by_key = await client.get("/v1/me", headers={"X-API-Key": key})
    assert by_key.json()["user_id"] == "acme:alice"
    await client.post("/v1/chat", json={"message": "My name is Alice"}, headers={"X-API-Key": key})
    forged = bearer({"sub": "acme:alice"})
    me = await client.get("/v1/me", headers=forged)
    assert me.json()["user_id"] == "acme%3Aalice"
    asked = await client.post("/v1/chat", json={"message": "What is my name?"}, headers=forged)
    assert "don't know your name" in asked.json()["reply"]
    named = await client.post(
        "/v1/chat", json={"message": "hi", "user_id": "acme:alice"}, headers=forged
    )
    assert named.status_code == 403
    assert await agent.store.list_users() == ["acme%3Aalice", "acme:alice"]


async def test_a_jwt_and_a_key_for_the_same_org_and_user_are_one_tenant(
    agent: Agent, client_for: Any
) -> None:
    key, digests = new_key("--org", "acme", "--user", "alice")
    client = await client_for(create_app(agent, settings(api_keys=digests, jwt_org_claim="org")))
    await client.post("/v1/chat", json={"message": "My name is Alice"}, headers={"X-API-Key": key})
    asked = await client.post(
        "/v1/chat",
        json={"message": "What is my name?"},
        headers=bearer({"sub": "alice", "org": "acme"}),
    )
    assert asked.json()["user_id"] == "acme:alice"
    assert asked.json()["reply"] == "Your name is Alice."


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"org": "acme", "sub": "x:y"}, {"org": "acme:x", "sub": "y"}),
        ({"org": "a%3Ab", "sub": "c"}, {"org": "a:b", "sub": "c"}),
        ({"org": "a", "sub": "b%3Ac"}, {"org": "a", "sub": "b:c"}),
        ({"org": "a", "sub": "b"}, {"org": "a:b", "sub": ""}),
    ],
)
async def test_orgs_and_users_holding_the_separator_stay_apart(
    client_for: Any, agent: Agent, one: dict[str, str], other: dict[str, str]
) -> None:
    client = await client_for(create_app(agent, settings(jwt_org_claim="org")))
    first = await client.get("/v1/me", headers=bearer(one))
    second = await client.get("/v1/me", headers=bearer(other))
    assert first.status_code == 200
    assert second.status_code == 401 or second.json()["user_id"] != first.json()["user_id"]


ORG_CLAIM_VALUES = [["acme"], {"id": "acme"}, 42, 4.2, True, False, None, "", []]


@pytest.mark.parametrize("org", ORG_CLAIM_VALUES, ids=repr)
async def test_an_org_claim_that_is_not_a_non_empty_string_is_401_never_the_bare_sub(
    client_for: Any, agent: Agent, org: Any
) -> None:
    # {"sub": "ops", "org": ["acme"]} used to become the global admin "ops".
    client = await client_for(create_app(agent, settings(jwt_org_claim="org", admin_users=["ops"])))
    for path in ("/v1/me", "/v1/users", "/v1/users/ops/sessions"):
        response = await client.get(path, headers=bearer({"sub": "ops", "org": org}))
        assert response.status_code == 401, (path, response.text)
        assert "org claim 'org' must be a non-empty string" in response.json()["error"]["message"]
    missing = await client.get("/v1/me", headers=bearer({"sub": "ops"}))
    assert missing.status_code == 401
    assert "no such claim" in missing.json()["error"]["message"]
    chat = await client.post("/v1/chat", json={"message": "hi"}, headers=bearer({"sub": "ops"}))
    assert chat.status_code == 401
    assert await agent.store.list_users() == []


# --- properties -----------------------------------------------------------------------------

# Parts rich in what could confuse a parser: the separator, "%", escapes and their pieces.
_TRICKY = st.sampled_from([":", "%", "%3A", "%25", "3A", "25", "a", "Ω", " ", "/", "\\"])
PART = st.lists(_TRICKY | st.characters(exclude_categories=["Cc", "Cs"]), min_size=1).map("".join)
ORG = st.none() | PART


def _made(user: str, org: str | None) -> str:
    try:
        return tenant_id(user, org)
    except InvalidUserId:
        assume(False)  # blank or too long: refused, so it maps to no tenant at all
        raise


@given(user=PART, org=ORG, other_user=PART, other_org=ORG)
def test_distinct_org_user_pairs_never_share_a_tenant(
    user: str, org: str | None, other_user: str, other_org: str | None
) -> None:
    assume((org, user) != (other_org, other_user))
    assert _made(user, org) != _made(other_user, other_org)


@given(user=PART, org=ORG)
def test_a_tenant_id_gives_back_its_org_and_user(user: str, org: str | None) -> None:
    made = _made(user, org)
    assert split_tenant_id(made) == (org, user)
    assert made.count(":") == (0 if org is None else 1)


@given(text=st.text(min_size=1, max_size=40))
def test_split_accepts_only_what_tenant_id_makes(text: str) -> None:
    try:
        org, user = split_tenant_id(text)
    except InvalidUserId:
        return
    assert tenant_id(user, org) == text


_AUTH = {
    "with_org": Authenticator(settings(jwt_org_claim="org")),
    "without_org": Authenticator(settings()),
}
_FAST = hypothesis_settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(user=PART, org=PART, other_user=PART, other_org=PART)
def test_jwts_of_distinct_org_user_pairs_are_distinct_tenants(
    user: str, org: str, other_user: str, other_org: str
) -> None:
    assume((org, user) != (other_org, other_user))
    ids = set()
    for sub, org_claim in ((user, org), (other_user, other_org)):
        expected = _made(sub, org_claim)
        principal = _AUTH["with_org"].authenticate(bearer({"sub": sub, "org": org_claim}))
        assert principal is not None
        assert principal.user_id == expected
        ids.add(principal.user_id)
    assert len(ids) == 2


@_FAST
@given(sub=PART)
def test_without_an_org_claim_a_sub_never_looks_like_org_and_user(sub: str) -> None:
    expected = _made(sub, None)
    principal = _AUTH["without_org"].authenticate(bearer({"sub": sub, "org": "acme"}))
    assert principal is not None
    assert principal.user_id == expected
    assert ":" not in principal.user_id
    assert split_tenant_id(principal.user_id) == (None, sub)


JSON_NOT_A_NON_EMPTY_STRING = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.just("")
    | st.lists(st.text(max_size=5), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)
)


@_FAST
@given(org=JSON_NOT_A_NON_EMPTY_STRING, sub=PART, admin=st.booleans())
def test_a_malformed_org_claim_is_always_401(org: Any, sub: str, admin: bool) -> None:
    claims = {"sub": sub, "org": org, **({"roles": ["admin"]} if admin else {})}
    with pytest.raises(Unauthorized, match="org claim"):
        _AUTH["with_org"].authenticate(bearer(claims))


BAD_SUB = JSON_NOT_A_NON_EMPTY_STRING | st.sampled_from(["  ", "a\x00b", "x\ny", "z" * 300])


@_FAST
@given(sub=BAD_SUB, which=st.sampled_from(list(_AUTH)))
def test_a_malformed_sub_is_always_401(sub: Any, which: str) -> None:
    with pytest.raises(Unauthorized):
        _AUTH[which].authenticate(bearer({"sub": sub, "org": "acme"}))
    with pytest.raises(Unauthorized):
        _AUTH[which].authenticate(bearer({"org": "acme"}))


# --- keys and settings ----------------------------------------------------------------------


def test_keys_for_users_and_orgs_holding_the_separator_are_encoded() -> None:
    assert list(new_key("--user", "acme:alice")[1].values()) == ["acme%3Aalice"]
    assert list(new_key("--org", "a:b", "--user", "c")[1].values()) == ["a%3Ab:c"]
    assert list(new_key("--org", "a", "--user", "b:c")[1].values()) == ["a:b%3Ac"]
    assert list(new_key("--user", "100%")[1].values()) == ["100%25"]
    empty_org = CliRunner().invoke(cli, ["keys", "new", "--org", "", "--user", "alice"])
    assert empty_org.exit_code == 2
    assert "org '' must not be empty" in empty_org.output


@pytest.mark.parametrize("configured", ["a:b:c", "acme:", ":alice", "50%off", "a%3ab", "%3"])
def test_settings_refuse_user_ids_no_credential_could_have(configured: str) -> None:
    with pytest.raises(ValidationError, match="org:user"):
        ServerSettings(_env_file=None, api_keys={hash_api_key("k"): configured})
    with pytest.raises(ValidationError, match="org:user"):
        ServerSettings(_env_file=None, admin_users=[configured])


async def test_an_admin_is_named_by_its_tenant_id(agent: Agent, client_for: Any) -> None:
    client = await client_for(
        create_app(agent, settings(jwt_org_claim="org", admin_users=["acme:ops"]))
    )

    async def me(claims: dict[str, Any]) -> Any:
        return (await client.get("/v1/me", headers=bearer(claims))).json()

    assert await me({"sub": "ops", "org": "acme"}) == {
        "user_id": "acme:ops",
        "admin": True,
        "auth": True,
    }
    assert (await me({"sub": "ops", "org": "other"}))["admin"] is False
    assert (await me({"sub": "acme:ops", "org": "x"}))["admin"] is False
