"""`ServerSettings`: everything `tenantry serve` reads from the environment (prefix TENANTRY_).

Flags of `tenantry serve` override these; complex values are JSON, e.g.
`TENANTRY_API_KEYS='{"<sha256 of the key>": "alice"}'`, `TENANTRY_ADMIN_USERS='["ops"]'`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from tenantry.errors import InvalidInput
from tenantry.settings import Settings
from tenantry.tenancy import split_tenant_id

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _tenant(user_id: str) -> str:
    """Give a configured user id if `tenancy.tenant_id` could have made it (so a key's or an
    admin's id means the same tenant a JWT with that org and user gets)."""
    split_tenant_id(user_id)
    return user_id


class ServerSettings(Settings):
    """Core settings plus where to listen, who may call, and the server's limits."""

    model_config = SettingsConfigDict(env_prefix="TENANTRY_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0: any free port).")
    public_url: str | None = Field(
        None,
        description="Base URL clients reach the server at, for the A2A agent card "
        "(default: taken from each request's Host header); its host is an allowed host.",
    )
    a2a_card_v0_3: bool = Field(
        False,
        description="Declare A2A 0.3 in the agent card too, for 0.3 clients that find the "
        "agent through its card; the SDK then merges 0.3's fields into it, so it no longer "
        "validates against the 1.0 schema. 0.3 calls are served either way.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values (without port) the server answers to besides "
        "loopback names, the public URL's host and the bound address: names, '*.domain' for "
        "its subdomains, or '*' for any (only behind a proxy that checks Host itself).",
    )

    # --- auth -----------------------------------------------------------------------------
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description="API keys as {sha256 hex of the key: user id}; make one with "
        "`tenantry keys new --user ID`.",
    )
    admin_users: frozenset[str] = Field(
        frozenset(), description="User ids whose credentials may act on any user."
    )
    jwt_secret: SecretStr | None = Field(
        None,
        min_length=32,
        description="HS256 secret for JWT bearer tokens: at least 32 characters (RFC 7518 "
        "asks for 256 bits), e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`.",
    )
    jwt_public_key: str | None = Field(
        None, description="RS256/ES256 public key for JWTs: PEM text or the path of a PEM file."
    )
    jwt_jwks_file: Path | None = Field(None, description="A JWKS file of JWT public keys.")
    jwt_user_claim: str = Field("sub", description="The JWT claim that holds the user id.")
    jwt_org_claim: str | None = Field(
        None,
        description="Claim with the org id; when set, every token must carry it as a non-empty "
        "string, and the user id becomes 'org:user' (see tenancy.tenant_id).",
    )
    jwt_roles_claim: str = Field("roles", description="The JWT claim that lists roles.")
    jwt_admin_role: str = Field("admin", description="The role that may act on any user.")
    jwt_audience: str | None = Field(None, description="Required JWT audience, if any.")
    jwt_issuer: str | None = Field(None, description="Required JWT issuer, if any.")
    allow_open_remote: bool = Field(
        False,
        description="Allow open mode (no auth) on a non-loopback host. Anyone who can reach "
        "the port can then read and delete every user's data.",
    )

    # --- limits and operations ------------------------------------------------------------
    rate_limit_per_minute: int = Field(
        120, ge=0, description="Requests per minute per tenant (0: no limit)."
    )
    rate_limit_tenants: int = Field(
        100_000, ge=1, description="Most tenants whose rate buckets are kept in memory."
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser."
    )
    graceful_timeout: float = Field(
        30.0, ge=0, description="Seconds to let in-flight turns finish on shutdown."
    )
    prune_inactive_hours: float | None = Field(
        None,
        gt=0,
        description="Delete sessions idle for this many hours (fractions allowed), checked "
        "every `prune_interval_seconds`.",
    )
    prune_interval_seconds: float = Field(
        3600.0, gt=0, description="Seconds between two checks for idle sessions."
    )
    idempotency_ttl_hours: float = Field(
        24.0,
        gt=0,
        description="Hours a turn sent with an Idempotency-Key (or an A2A messageId) keeps "
        "its key and reply for retries; expired ones are deleted by pruning (Redis: by TTL).",
    )
    metrics_public: bool = Field(
        True,
        description="Serve /metrics to anyone (it holds no user ids). False: with auth on, "
        "only an admin credential may read it.",
    )
    log_level: str = Field("info", description="debug, info, warning or error.")

    # --- tracing (of the agent `create_app` builds; an agent you pass brings its own) ------
    tracing_user_id: Literal["off", "hash", "raw"] = Field(
        "off",
        description="Whether turn spans name the user: 'off' (never), 'hash' (an HMAC-SHA256 "
        "of the user id keyed with tracing_hash_key, as user.hash) or 'raw' (the id itself, "
        "as user.id: personal data in your traces).",
    )
    tracing_hash_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="The key of tracing_user_id='hash': at least 16 characters, secret (with "
        "it, a hash cannot be looked up in a list of known ids), the same on every replica.",
    )

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: dict[str, str]) -> dict[str, str]:
        checked: dict[str, str] = {}
        for digest, user_id in value.items():
            text = digest.lower().removeprefix("sha256:")
            if not _SHA256_HEX.fullmatch(text):
                raise ValueError(
                    f"api_keys maps the SHA-256 hex digest of each key to a user id; "
                    f"{digest[:12]!r}... is not a digest (use `tenantry keys new`)"
                )
            checked[text] = _tenant(user_id)
        return checked

    @field_validator("admin_users")
    @classmethod
    def _check_admins(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(_tenant(user) for user in value)

    @field_validator("jwt_public_key")
    @classmethod
    def _read_public_key(cls, value: str | None) -> str | None:
        if value is None or "-----BEGIN" in value:
            return value
        path = Path(value)
        if not path.is_file():
            raise ValueError("jwt_public_key must be PEM text or the path of a PEM file")
        return path.read_text(encoding="utf-8")

    @model_validator(mode="after")
    def _check_jwks(self) -> ServerSettings:
        if self.jwt_jwks_file is not None and not self.jwt_jwks_file.is_file():
            raise ValueError(f"jwt_jwks_file {str(self.jwt_jwks_file)!r} is not a file")
        return self

    @model_validator(mode="after")
    def _check_tracing_key(self) -> ServerSettings:
        if self.tracing_user_id == "hash" and self.tracing_hash_key is None:
            raise ValueError(
                "tracing_user_id 'hash' needs TENANTRY_TRACING_HASH_KEY (at least 16 secret "
                "characters): unkeyed, a hash of a user id is found again by hashing known ids"
            )
        return self

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.jwt_secret or self.jwt_public_key or self.jwt_jwks_file)

    @property
    def auth_enabled(self) -> bool:
        """True when callers must present an API key or a JWT."""
        return bool(self.api_keys) or self.jwt_enabled


def is_loopback(host: str) -> bool:
    """Tell whether binding `host` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: ServerSettings) -> None:
    """Refuse open mode on an interface others can reach, unless explicitly allowed."""
    if settings.auth_enabled or settings.allow_open_remote or is_loopback(settings.host):
        return
    raise InvalidInput(
        f"refusing to serve without authentication on {settings.host!r}: anyone who can reach "
        "it could read and delete every user's conversations. Configure API keys "
        "(TENANTRY_API_KEYS) or JWT (TENANTRY_JWT_SECRET ...), bind 127.0.0.1, or pass "
        "--allow-open-remote (TENANTRY_ALLOW_OPEN_REMOTE=1) if that is really what you want."
    )


__all__ = ["ServerSettings", "check_bind", "is_loopback"]
