"""The agent card: valid A2A 1.0 (no key outside the 1.0 schema), cached as A2A 1.0 §8.6 says,
and 0.3 only when asked for."""

from __future__ import annotations

from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import httpx
import pytest
from a2a.types import AgentCard
from google.protobuf.json_format import ParseDict, ParseError

from tenantry import Agent
from tenantry.server import create_app
from tests.server.conftest import Tenants

CARD = "/.well-known/agent-card.json"


def assert_valid_1_0(card: dict[str, Any]) -> None:
    """The card parses as the 1.0 AgentCard with unknown keys refused, at any depth: the
    1.0 JSON schema is generated from the same proto, with `additionalProperties: false`."""
    ParseDict(card, AgentCard(), ignore_unknown_fields=False)
    for name in ("url", "protocolVersion", "preferredTransport", "security"):
        assert name not in card


async def test_the_card_is_valid_a2a_1_0_in_open_and_auth_mode(
    open_client: httpx.AsyncClient, auth_client: httpx.AsyncClient
) -> None:
    for client in (open_client, auth_client):
        card = (await client.get(CARD)).json()
        assert_valid_1_0(card)
        assert [i["protocolVersion"] for i in card["supportedInterfaces"]] == ["1.0"]
    schemes = (await auth_client.get(CARD)).json()["securitySchemes"]
    assert schemes["apiKey"] == {
        "apiKeySecurityScheme": {
            "location": "header",
            "name": "X-API-Key",
            "description": "A tenantry API key.",
        }
    }


async def test_the_0_3_card_is_opt_in_and_is_no_longer_valid_1_0(
    agent: Agent, tenants: Tenants, client_for: Any
) -> None:
    client = await client_for(create_app(agent, tenants.settings(a2a_card_v0_3=True)))
    card = (await client.get(CARD)).json()
    assert card["url"] == "http://testserver/a2a/jsonrpc"
    assert card["protocolVersion"] == "0.3"
    assert card["securitySchemes"]["apiKey"]["in"] == "header"  # 0.3's keys, nested in 1.0's
    with pytest.raises(ParseError):
        assert_valid_1_0(card)


async def test_the_card_says_how_long_to_cache_it_and_revalidates_with_304(
    open_client: httpx.AsyncClient, auth_client: httpx.AsyncClient
) -> None:
    first = await open_client.get(CARD)
    assert first.headers["cache-control"] == "public, max-age=300"
    etag = first.headers["etag"]
    assert (await open_client.get(CARD)).headers["etag"] == etag  # the same card, the same tag
    assert (await auth_client.get(CARD)).headers["etag"] != etag  # another card, another tag
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await open_client.get(CARD, headers={"If-None-Match": if_none_match})
        assert again.status_code == 304, if_none_match
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == "public, max-age=300"
    stale = await open_client.get(CARD, headers={"If-None-Match": '"an-older-card"'})
    assert stale.status_code == 200
    assert stale.json() == first.json()


async def test_the_card_has_a_last_modified_date_it_honours(
    open_client: httpx.AsyncClient,
) -> None:
    first = await open_client.get(CARD)
    modified = parsedate_to_datetime(first.headers["last-modified"])
    same = await open_client.get(
        CARD, headers={"If-Modified-Since": first.headers["last-modified"]}
    )
    assert same.status_code == 304
    before = format_datetime(modified.replace(year=modified.year - 1), usegmt=True)
    assert (await open_client.get(CARD, headers={"If-Modified-Since": before})).status_code == 200
    assert (await open_client.get(CARD, headers={"If-Modified-Since": "soon"})).status_code == 200
    # If-None-Match decides when both are sent (RFC 9110 §13.2.2)
    both = {"If-None-Match": '"an-older-card"', "If-Modified-Since": first.headers["last-modified"]}
    assert (await open_client.get(CARD, headers=both)).status_code == 200
