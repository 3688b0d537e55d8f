"""What a web browser must not be able to make the server do.

A web page the operator visits can make the browser send requests to the server, without
asking it first (no CORS preflight) when the request is "simple": GET, or a POST of a form,
`text/plain` or a typeless blob. Three checks keep such pages out:

- Host: against a server on loopback in open mode, DNS rebinding (a name of the attacker's
  that resolves to 127.0.0.1) would let a page read and delete every conversation; so a
  request must name in its Host header a host the server answers to (`AllowedHosts`).
- Origin (open mode, where no credential stops a forged request): a request that changes
  state (POST, PUT, PATCH, DELETE) and carries an Origin header must come from the server's
  own origin, the public URL's, or one of `cors_origins`.
- JSON bodies: a state-changing request with a body must send it as JSON. No page can send
  JSON to another origin without a preflight, which CORS refuses unless the origin is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from tenantry.server.config import ServerSettings, is_loopback
from tenantry.server.errors import ForbiddenOrigin, InvalidHost, UnsupportedMediaType
from tenantry.server.middleware import ErrorCounter, has_header, header, refuse

LOOPBACK_NAMES = ("localhost",)
"""Names (besides loopback addresses) every server answers to, with any port."""
UNCHECKED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Operations routes: no tenant data, and what probes and scrapers reach by the pod's IP."""
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]", ""})
_HOST = re.compile(r"(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")


def host_of(header: str) -> str | None:
    """Give the host (lower case, IPv6 in brackets) a Host header names, without its port;
    None when it is not a valid `host[:port]`."""
    found = _HOST.fullmatch(header)
    if found is None:
        return None
    host = found["host"].lower()
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
    return host


@dataclass(frozen=True, slots=True)
class AllowedHosts:
    """The hosts a server answers to: exact names, `*.domain` (its subdomains), or `*` (any)."""

    names: frozenset[str]
    suffixes: tuple[str, ...] = ()
    any: bool = False

    @classmethod
    def of(cls, patterns: Iterable[str]) -> AllowedHosts:
        names, suffixes, any_host = set(), [], False
        for pattern in (p.strip().lower() for p in patterns):
            if pattern == "*":
                any_host = True
            elif pattern.startswith("*."):
                suffixes.append(pattern[1:])
            elif pattern:
                names.add(host_of(pattern) or pattern)
        return cls(frozenset(names), tuple(suffixes), any_host)

    @classmethod
    def for_settings(cls, settings: ServerSettings) -> AllowedHosts:
        """Loopback, the public URL's host, the bound address and `allowed_hosts`."""
        patterns = [*LOOPBACK_NAMES, *settings.allowed_hosts]
        if settings.public_url:
            patterns.append(urlsplit(settings.public_url).hostname or "")
        if settings.host not in _WILDCARD_BINDS:
            patterns.append(settings.host)
        return cls.of(patterns)

    def allows(self, host: str) -> bool:
        return (
            self.any
            or host in self.names
            or is_loopback(host)
            or any(host.endswith(suffix) for suffix in self.suffixes)
        )


class HostCheckMiddleware:
    """Answer 400 `InvalidHost` to a request whose Host header names no host the server
    answers to (see `AllowedHosts`), except on the operations routes."""

    def __init__(self, app: ASGIApp, allowed: AllowedHosts, on_error: ErrorCounter) -> None:
        self.app = app
        self.allowed = allowed
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] not in UNCHECKED_PATHS:
            named = header(scope, b"host") or ""
            host = host_of(named)
            if host is None or not self.allowed.allows(host):
                exc = InvalidHost(
                    f"this server does not answer to the host {named[:100]!r}; if clients "
                    "reach it by that name, add it to TENANTRY_ALLOWED_HOSTS (or set "
                    "TENANTRY_PUBLIC_URL)"
                )
                await refuse(exc, self.on_error, scope, receive, send)
                return
        await self.app(scope, receive, send)


def origin_of(url: str) -> str:
    """Give the `scheme://host[:port]` of a URL, lower case, as a browser's Origin shows it."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower()


class OriginCheckMiddleware:
    """Answer 403 `ForbiddenOrigin` to a state-changing request whose Origin header names
    another site than the server's own (the origin whose host is the request's Host), the
    public URL's or one of `cors_origins` (by name: "*" allows no origin here). For open
    mode: with auth on, a forged request carries no credential (browsers attach no API key
    or bearer token on their own)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        public_url: str | None,
        cors_origins: Iterable[str],
        on_error: ErrorCounter,
    ) -> None:
        self.app = app
        self.allowed = frozenset(origin_of(o) for o in (*cors_origins, public_url or "") if o)
        self.on_error = on_error

    def _allows(self, origin: str, host: str) -> bool:
        seen = origin_of(origin)
        # The page the server itself serves: its origin's host is the request's (checked) Host,
        # whatever the scheme (a TLS proxy in front makes it https while we see http).
        return seen in self.allowed or (bool(host) and seen.partition("://")[2] == host.lower())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            origin = header(scope, b"origin")
            if origin is not None and not self._allows(origin, header(scope, b"host") or ""):
                exc = ForbiddenOrigin(
                    f"a page of {origin[:100]!r} may not change data on this server (open "
                    "mode); if that origin is yours, add it to TENANTRY_CORS_ORIGINS"
                )
                await refuse(exc, self.on_error, scope, receive, send)
                return
        await self.app(scope, receive, send)


def is_json(content_type: str) -> bool:
    """Tell whether a Content-Type is JSON: application/json or application/*+json."""
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


class JSONBodyMiddleware:
    """Answer 415 `UnsupportedMediaType` to a state-changing request whose body is not sent
    as JSON: a form, text/plain, or no Content-Type at all (FastAPI and the A2A SDK would
    read such a body as JSON anyway). A request without a body passes (DELETE)."""

    def __init__(self, app: ASGIApp, on_error: ErrorCounter) -> None:
        self.app = app
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            declared = header(scope, b"content-length")
            length = "0" if declared is None else declared.strip()
            has_body = has_header(scope, b"transfer-encoding") or not (
                length.isdigit() and not int(length)
            )
            content_type = header(scope, b"content-type") or ""
            if has_body and not is_json(content_type):
                said = f"{content_type[:100]!r}" if content_type else "no Content-Type"
                exc = UnsupportedMediaType(
                    "the body must be a JSON object sent with Content-Type: application/json "
                    f"({said})"
                )
                await refuse(exc, self.on_error, scope, receive, send)
                return
        await self.app(scope, receive, send)


__all__ = [
    "LOOPBACK_NAMES",
    "STATE_CHANGING",
    "UNCHECKED_PATHS",
    "AllowedHosts",
    "HostCheckMiddleware",
    "JSONBodyMiddleware",
    "OriginCheckMiddleware",
    "host_of",
    "is_json",
    "origin_of",
]
