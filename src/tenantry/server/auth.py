"""Who is calling: API keys and JWT bearer tokens, and which tenant a request acts on.

With auth on, the tenant is the credential's user; a request that names another user is
refused (403) unless the credential is an admin's. With auth off (open mode) the request
names its user itself, as in the seed, which is why open mode binds to loopback by default.

Credentials:
- `X-API-Key: <key>` or `Authorization: Bearer <key>`: the key's SHA-256 digest is looked up
  in `api_keys` (digest -> user id). Only digests are configured, never keys.
- `Authorization: Bearer <JWT>`: HS256 with `jwt_secret`, or RS*/PS*/ES* with
  `jwt_public_key` or a key of `jwt_jwks_file` (chosen by `kid`), each key verifying only
  the algorithms of its type (`VerificationKey`). `exp` is required. The user
  id is `tenancy.tenant_id(user, org)` of the `jwt_user_claim` claim (`sub`) and, when
  `jwt_org_claim` is set, of that claim, which every token must then carry as a non-empty
  string (anything else is 401, never a fallback to the bare user).

`Authenticator.authenticate` is the one function that turns a credential into a tenant id;
an API key's user id was made by the same `tenant_id` (`tenantry keys new --org --user`)
and is checked to be of its form when the settings are read.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.requests import HTTPConnection

from tenantry.errors import InvalidInput, InvalidScope
from tenantry.server.config import ServerSettings
from tenantry.server.errors import Forbidden, Unauthorized
from tenantry.tenancy import DEFAULT_USER_ID, tenant_id

API_KEY_HEADER = "X-API-Key"
API_KEY_PREFIX = "tnt_"
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
"""The JWT algorithm each EC curve signs with (RFC 7518 binds them one to one)."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key for JWTs and the algorithms a token signed by its owner may name: those
    of the key's type (an RSA key never verifies an ES256 token), or the JWK's own `alg`."""

    key: Any
    algorithms: frozenset[str]

    @classmethod
    def of(cls, key: Any, declared: str | None = None) -> VerificationKey:
        if isinstance(key, rsa.RSAPublicKey):
            algorithms = RSA_ALGORITHMS
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_ALGORITHMS:
            algorithms = frozenset({EC_ALGORITHMS[key.curve.name]})
        else:
            raise InvalidInput(f"JWT keys must be RSA or EC (P-256/384/521), not {type(key)}")
        if declared is not None:
            algorithms = algorithms & {declared}
        return cls(key, algorithms)

    @classmethod
    def from_pem(cls, pem: str) -> VerificationKey:
        data = pem.encode("utf-8")
        try:
            if b"CERTIFICATE" in data:
                return cls.of(x509.load_pem_x509_certificate(data).public_key())
            return cls.of(serialization.load_pem_public_key(data))
        except ValueError as exc:
            raise InvalidInput(f"jwt_public_key is not a PEM public key: {exc}") from None


def read_jwks(text: str) -> dict[str, VerificationKey]:
    """Give the signing keys of a JWKS document by kid (index when a key has none); keys for
    encryption (`use: enc`) and symmetric ones (`kty: oct`) are left out."""
    try:
        entries = json.loads(text)["keys"]
        keys = {}
        for index, entry in enumerate(entries):
            if entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
                continue
            key = jwt.PyJWK(entry).key
            keys[str(entry.get("kid", index))] = VerificationKey.of(key, entry.get("alg"))
    except (ValueError, KeyError, TypeError, AttributeError, jwt.PyJWTError) as exc:
        raise InvalidInput(f"jwt_jwks_file is not a usable JWKS document: {exc}") from None
    if not keys:
        raise InvalidInput("jwt_jwks_file holds no RSA or EC signing key")
    return keys


def new_api_key() -> str:
    """Give a fresh random API key (256 bits)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """Give the SHA-256 hex digest under which `key` is configured."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: the user id its credential stands for, and whether it is admin."""

    user_id: str
    admin: bool = False
    method: Literal["api_key", "jwt"] = "api_key"


class TenantUser(BaseUser):
    """A Starlette user (and so the A2A SDK's `ServerCallContext.user`) for a principal."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.user_id

    @property
    def identity(self) -> str:
        return self.principal.user_id


class Authenticator:
    """Verifies the credentials `settings` configure."""

    def __init__(self, settings: ServerSettings) -> None:
        self.enabled = settings.auth_enabled
        self._keys = dict(settings.api_keys)
        self._admins = settings.admin_users
        self._settings = settings
        self._secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self._public_key = None
        if settings.jwt_public_key:
            self._public_key = VerificationKey.from_pem(settings.jwt_public_key)
        self._jwks: dict[str, VerificationKey] = {}
        if settings.jwt_jwks_file is not None:
            self._jwks = read_jwks(settings.jwt_jwks_file.read_text(encoding="utf-8"))

    @property
    def schemes(self) -> list[str]:
        """The credential kinds accepted: 'apiKey', 'bearer' (JWT)."""
        found = []
        if self._keys:
            found.append("apiKey")
        if self._settings.jwt_enabled:
            found.append("bearer")
        return found

    def authenticate(self, headers: Any) -> Principal | None:
        """Give the caller's principal, None when no credential was sent; raise Unauthorized
        for a credential that is not valid."""
        if not self.enabled:
            return None
        key = headers.get("x-api-key")
        if key is not None:
            return self._from_key(key)
        authorization = headers.get("authorization")
        if authorization is None:
            return None
        kind, _, token = authorization.partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        if token.count(".") == 2 and self._settings.jwt_enabled:
            return self._from_jwt(token)
        return self._from_key(token)

    def _principal(
        self, user_id: str, *, admin: bool, method: Literal["api_key", "jwt"]
    ) -> Principal:
        return Principal(user_id, admin or user_id in self._admins, method)

    def _from_key(self, key: str) -> Principal:
        user_id = self._keys.get(hash_api_key(key))
        if user_id is None:
            raise Unauthorized("the API key is not valid")
        return self._principal(user_id, admin=False, method="api_key")

    def _key_for(self, token: str) -> tuple[Any, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the bearer token is not a valid JWT: {exc}") from None
        alg = str(header.get("alg", ""))
        if alg == "HS256" and self._secret:
            return self._secret, alg
        found = self._public_key
        if self._jwks:
            kid = header.get("kid")
            chosen = self._jwks.get(str(kid)) if kid is not None else None
            if chosen is None and kid is None and len(self._jwks) == 1:
                chosen = next(iter(self._jwks.values()))
            if (
                chosen is None
                and found is None
                and any(alg in k.algorithms for k in self._jwks.values())
            ):
                raise Unauthorized(f"no configured key has the JWT's kid {kid!r}")
            found = chosen or found
        if found is not None and alg in found.algorithms:
            return found.key, alg
        raise Unauthorized(f"JWTs signed with {alg or 'no algorithm'!r} are not accepted here")

    def _from_jwt(self, token: str) -> Principal:
        key, alg = self._key_for(token)
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                leeway=30,
                options={"require": ["exp"], "verify_aud": settings.jwt_audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the JWT was rejected: {exc}") from None
        user_id = self._tenant_of(claims)
        roles = claims.get(settings.jwt_roles_claim)
        if isinstance(roles, str):
            roles = roles.split()
        admin = isinstance(roles, list) and settings.jwt_admin_role in roles
        return self._principal(user_id, admin=admin, method="jwt")

    def _tenant_of(self, claims: dict[str, Any]) -> str:
        """Give the tenant id the JWT's verified claims name: tenant_id(user, org)."""
        user_claim, org_claim = self._settings.jwt_user_claim, self._settings.jwt_org_claim
        user = claims.get(user_claim)
        if not isinstance(user, str):
            raise Unauthorized(f"the JWT has no string claim {user_claim!r}")
        org = None
        if org_claim:
            org = claims.get(org_claim)
            if not isinstance(org, str) or not org:
                found = "no such claim" if org is None else f"got {json.dumps(org)[:40]}"
                raise Unauthorized(
                    f"the JWT's org claim {org_claim!r} must be a non-empty string ({found})"
                )
        try:
            return tenant_id(user, org)
        except InvalidScope as exc:
            raise Unauthorized(f"the JWT's user id is not usable: {exc}") from None


class TenantAuthBackend(AuthenticationBackend):
    """Starlette's AuthenticationMiddleware backend: sets `scope["user"]` to a TenantUser."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        try:
            principal = self.authenticator.authenticate(conn.headers)
        except Unauthorized as exc:
            raise AuthenticationError(str(exc)) from None
        if principal is None:
            return None
        scopes = ["authenticated", "admin"] if principal.admin else ["authenticated"]
        return AuthCredentials(scopes), TenantUser(principal)


def principal_of(conn: HTTPConnection) -> Principal | None:
    """Give the request's verified principal, or None (open mode or no credential)."""
    user = conn.scope.get("user")
    return user.principal if isinstance(user, TenantUser) else None


def resolve_tenant(principal: Principal | None, requested: str | None, *, auth: bool) -> str:
    """Give the user id a request acts on.

    Open mode: the requested id, else "default". Auth on: the credential's user; naming
    another user is Forbidden unless the credential is an admin's.
    """
    if not auth:
        return DEFAULT_USER_ID if requested is None else requested
    if principal is None:
        raise Unauthorized("send an API key (X-API-Key) or a bearer token")
    if requested is None or requested == principal.user_id or principal.admin:
        return principal.user_id if requested is None else requested
    raise Forbidden(
        f"this credential belongs to user {principal.user_id!r} and may not act on "
        f"user {requested[:80]!r}"
    )


__all__ = [
    "API_KEY_HEADER",
    "Authenticator",
    "Principal",
    "TenantAuthBackend",
    "TenantUser",
    "hash_api_key",
    "new_api_key",
    "principal_of",
    "resolve_tenant",
]
