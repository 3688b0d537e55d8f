"""The A2A agent card: what it declares, and how `GET /.well-known/agent-card.json` serves it.

The card is A2A 1.0 and validates against the 1.0 schema (no property outside it). Declaring
a 0.3 interface too would make the SDK merge 0.3's fields (`url`, `protocolVersion`,
`preferredTransport`, and 0.3 keys inside each security scheme) into it, which the 1.0 schema
refuses; `ServerSettings.a2a_card_v0_3` does that for 0.3 clients that discover the agent
through its card. 0.3 calls (`message/send` ...) are served on the JSON-RPC route either way.

Caching (A2A 1.0 §8.6): `Cache-Control: public, max-age=300`, an `ETag` (a hash of the card
served), `Last-Modified` (when the app was built, which fixed the card's content) and 304 for
a matching `If-None-Match` (or, without one, an `If-Modified-Since` not before that).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    APIKeySecurityScheme,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tenantry import __version__
from tenantry.server.auth import API_KEY_HEADER, Authenticator
from tenantry.server.state import ServerState

RPC_PATH = "/a2a/jsonrpc"
CARD_PATH = "/.well-known/agent-card.json"
TEXT = "text/plain"
"""The one media type the agent reads and writes."""
CARD_CACHE_CONTROL = "public, max-age=300"
"""The card changes only when the server restarts with other settings: five minutes of
staleness cost nothing, and revalidating costs one 304."""


def _schemes(authenticator: Authenticator) -> dict[str, SecurityScheme]:
    schemes: dict[str, SecurityScheme] = {}
    if "apiKey" in authenticator.schemes:
        schemes["apiKey"] = SecurityScheme(
            api_key_security_scheme=APIKeySecurityScheme(
                location="header", name=API_KEY_HEADER, description="A tenantry API key."
            )
        )
    if "bearer" in authenticator.schemes:
        schemes["bearer"] = SecurityScheme(
            http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="Bearer", bearer_format="JWT")
        )
    return schemes


def _security(authenticator: Authenticator) -> dict[str, Any]:
    schemes = _schemes(authenticator)
    if not schemes:
        return {}
    return {
        "security_schemes": schemes,
        "security_requirements": [
            SecurityRequirement(schemes={name: StringList(list=[])}) for name in schemes
        ],
    }


def challenges(authenticator: Authenticator) -> list[str]:
    """Give the `WWW-Authenticate` challenges for the security schemes the card declares."""
    found = []
    if "apiKey" in authenticator.schemes:
        found.append(f'ApiKey realm="tenantry", in="header", name="{API_KEY_HEADER}"')
    if "bearer" in authenticator.schemes:
        found.append('Bearer realm="tenantry"')
    return found


def agent_card(state: ServerState, base_url: str) -> AgentCard:
    """Give the agent card for clients that reach the server at `base_url`."""
    url = base_url.rstrip("/") + RPC_PATH
    who = (
        "the credential's user; contextId is the session"
        if state.auth
        else ("contextId is the user id (open mode)")
    )
    versions = ["1.0", "0.3"] if state.settings.a2a_card_v0_3 else ["1.0"]
    return AgentCard(
        name=state.agent.name,
        description=f"A tenantry agent: one conversation per tenant ({who}).",
        version=__version__,
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=version)
            for version in versions
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=[TEXT],
        default_output_modes=[TEXT],
        skills=[
            AgentSkill(
                id="chat",
                name="Chat",
                description="Talk with the agent; it remembers this conversation only.",
                tags=["chat"],
            )
        ],
        **_security(state.authenticator),
    )


def card_document(state: ServerState, request: Request) -> dict[str, Any]:
    """Give the served card: the 1.0 fields (and 0.3's merged in, with `a2a_card_v0_3`)."""
    base = state.settings.public_url or str(request.base_url)
    return agent_card_to_dict(agent_card(state, base))


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header selects `etag` (RFC 9110 §13.1.2, weak comparison)."""
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _not_modified_since(if_modified_since: str, modified: datetime) -> bool:
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False  # a date that does not parse is ignored (RFC 9110 §13.1.3)
    return since.tzinfo is not None and modified <= since


def card_route(state: ServerState) -> Route:
    """The route serving the card of `state`'s app, with the cache headers above."""
    # Second precision, as the header has it, so a client's copy compares equal.
    built = datetime.now(UTC).replace(microsecond=0)
    last_modified = format_datetime(built, usegmt=True)

    async def card(request: Request) -> Response:
        document = card_document(state, request)
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        headers = {
            "Cache-Control": CARD_CACHE_CONTROL,
            "ETag": etag,
            "Last-Modified": last_modified,
        }
        if_none_match = request.headers.get("if-none-match")
        since = request.headers.get("if-modified-since")
        if (if_none_match is not None and _matches(if_none_match, etag)) or (
            if_none_match is None and since is not None and _not_modified_since(since, built)
        ):
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type="application/json")

    return Route(CARD_PATH, card, methods=["GET"])


__all__ = [
    "CARD_CACHE_CONTROL",
    "CARD_PATH",
    "RPC_PATH",
    "TEXT",
    "agent_card",
    "card_document",
    "card_route",
    "challenges",
]
