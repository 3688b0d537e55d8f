"""What a web browser must not be able to make the server do: the Host header check.

A web page the operator visits can make the browser send requests to the server. Against a
server on loopback in open mode, DNS rebinding (a name of the attacker's that resolves to
127.0.0.1) would let that page read and delete every conversation; so a request must name,
in its Host header, a host this server answers to: a loopback name, the host of
`public_url`, the address it is bound to, or one of `allowed_hosts`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantry.server.config import ServerSettings, is_loopback
from tenantry.server.errors import InvalidHost, error_response
from tenantry.server.middleware import current_request_id

LOOPBACK_NAMES = ("localhost",)
"""Names (besides loopback addresses) every server answers to, with any port."""
UNCHECKED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Operations routes: no tenant data, and what probes and scrapers reach by the pod's IP."""
_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]", ""})
_HOST = re.compile(r"(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")

ErrorCounter = Callable[[BaseException], None]


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
            header = Headers(scope=scope).get("host", "")
            host = host_of(header)
            if host is None or not self.allowed.allows(host):
                exc = InvalidHost(
                    f"this server does not answer to the host {header[:100]!r}; if clients "
                    "reach it by that name, add it to TENANTRY_ALLOWED_HOSTS (or set "
                    "TENANTRY_PUBLIC_URL)"
                )
                self.on_error(exc)
                await error_response(exc, current_request_id())(scope, receive, send)
                return
        await self.app(scope, receive, send)


__all__ = ["LOOPBACK_NAMES", "UNCHECKED_PATHS", "AllowedHosts", "HostCheckMiddleware", "host_of"]
