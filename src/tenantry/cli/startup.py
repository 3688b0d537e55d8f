"""What `tenantry serve` checks and says before it serves: can it listen where it was told
to, and which authentication is on (counts and kinds, never a secret)."""

from __future__ import annotations

import errno
import json
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenantry.server.config import ServerSettings

_PORT_HINT = "pick another with --port or TENANTRY_PORT"
_HOST_HINT = "pick another with --host or TENANTRY_HOST"


def listen_problem(host: str, port: int) -> str | None:
    """Give a one-line reason why the server could not listen on `host:port`, or None.

    It binds the addresses uvicorn will bind (every address `host` resolves to, with
    SO_REUSEADDR as asyncio sets it) and lets them go at once; port 0 always works."""
    if port == 0:
        return None
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve host {host!r} ({exc.strerror}); {_HOST_HINT}"
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return _bind_error(exc, host, port)
    return None


def _bind_error(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use; {_PORT_HINT}"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port} on {host}; {_PORT_HINT}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; {_HOST_HINT}"
    return f"cannot listen on {host}:{port} ({exc.strerror}); {_PORT_HINT}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def auth_summary(settings: ServerSettings) -> str | None:
    """Give one line saying which credentials the server accepts and how many, or None in
    open mode. It names kinds and counts (and the issuer and audience a JWT must carry),
    never a key, digest or secret."""
    parts = []
    if settings.api_keys:
        keys = settings.api_keys
        users = len(set(keys.values()))
        parts.append(f"API keys ({_count(len(keys), 'key')} for {_count(users, 'user')})")
    jwt = []
    if settings.jwt_secret is not None:
        jwt.append("an HS256 secret")
    if settings.jwt_public_key:
        jwt.append("a public key")
    if settings.jwt_jwks_file is not None:
        text = settings.jwt_jwks_file.read_text(encoding="utf-8")
        jwt.append(f"a JWKS file of {_count(len(json.loads(text).get('keys', [])), 'key')}")
    if jwt:
        checks = []
        if settings.jwt_issuer:
            checks.append(f"issuer {settings.jwt_issuer!r}")
        if settings.jwt_audience:
            checks.append(f"audience {settings.jwt_audience!r}")
        required = f"; required: {', '.join(checks)}" if checks else ""
        parts.append(f"JWT bearer tokens ({' and '.join(jwt)}{required})")
    if not parts:
        return None
    admins = _count(len(settings.admin_users), "admin user")
    closed = "/v1, /chat and /a2a need a credential"
    if not settings.metrics_public:
        closed += ", /metrics an admin's"
    return f"auth on: {' and '.join(parts)}; {admins}; {closed}"


__all__ = ["auth_summary", "listen_problem"]
