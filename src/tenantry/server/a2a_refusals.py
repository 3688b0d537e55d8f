"""The JSON-RPC answer to an A2A call refused before the SDK saw it.

The server's layers refuse some requests before any route runs: no credential or a bad one
(401), a body not sent as JSON (415), too large (413). On the JSON-RPC endpoint the refusal
keeps its HTTP status, and its body is a JSON-RPC error, so a JSON-RPC client can read it:

| refused because         | HTTP | JSON-RPC code | `data[0].reason`             | `id`            |
|-------------------------|------|---------------|------------------------------|-----------------|
| no or bad credential    | 401  | -32000        | UNAUTHENTICATED              | the request's   |
| another tenant's data   | 403  | -32000        | PERMISSION_DENIED            | null            |
| body not JSON           | 415  | -32005        | CONTENT_TYPE_NOT_SUPPORTED   | null            |
| too large, bad Host     | 4xx  | -32600        | INVALID_REQUEST              | null            |
| anything else (a bug)   | 500  | -32603        | INTERNAL_ERROR               | null            |

A2A defines no code for authentication (§3.3.2: "JSON-RPC custom error"); -32000 is JSON-RPC's
implementation-defined server error, outside the -32001..-32099 that A2A keeps for its own
errors. `data` holds a `google.rpc.ErrorInfo` as A2A errors do (§9.5), whose metadata carries
the error's type; headers are the error's own (`Retry-After` ...). The message is
`public_message`'s. A 401 names the card's security schemes
in its `WWW-Authenticate` headers; its `id` is read from a body of at most `ID_BODY_LIMIT`
bytes (a larger one gets null: an unauthenticated caller cannot make the server parse more).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from a2a.utils.error_handlers import A2A_DOMAIN, ERROR_INFO_TYPE
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from tenantry.errors import TenantryError
from tenantry.server.errors import (
    BodyTooLarge,
    Forbidden,
    InvalidHost,
    Unauthorized,
    UnsupportedMediaType,
    error_headers,
    public_message,
    status_of,
)
from tenantry.server.middleware import ErrorFormat

ID_BODY_LIMIT = 65_536
TENANTRY_DOMAIN = "tenantry"

REFUSALS: dict[type[BaseException], tuple[int, str, str]] = {
    Unauthorized: (-32000, "UNAUTHENTICATED", TENANTRY_DOMAIN),
    Forbidden: (-32000, "PERMISSION_DENIED", TENANTRY_DOMAIN),
    UnsupportedMediaType: (-32005, "CONTENT_TYPE_NOT_SUPPORTED", A2A_DOMAIN),
    BodyTooLarge: (-32600, "INVALID_REQUEST", A2A_DOMAIN),
    InvalidHost: (-32600, "INVALID_REQUEST", A2A_DOMAIN),
}
"""(JSON-RPC code, ErrorInfo reason, its domain) by error class (nearest ancestor)."""
OTHER = (-32603, "INTERNAL_ERROR", A2A_DOMAIN)


def request_id(body: bytes) -> str | int | None:
    """Give the id of a JSON-RPC request body (a str or int), else None."""
    try:
        found = json.loads(body).get("id") if len(body) <= ID_BODY_LIMIT else None
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str | int) and not isinstance(found, bool) else None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return b"".join(chunks)


class JSONRPCRefusal(JSONResponse):
    """A refusal as a JSON-RPC error; `echo_id` fills in the request's id when it is sent
    (from the body the layers outside already read in full, within their size limit)."""

    def __init__(
        self, error: dict[str, Any], status: int, headers: dict[str, str], *, echo_id: bool
    ) -> None:
        self.error, self.echo_id = error, echo_id
        super().__init__({"jsonrpc": "2.0", "id": None, "error": error}, status, headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.echo_id:
            answer = {"jsonrpc": "2.0", "id": request_id(await _read_body(receive))}
            self.body = self.render({**answer, "error": self.error})
            self.headers["content-length"] = str(len(self.body))
        await super().__call__(scope, receive, send)


def jsonrpc_refusals(challenges: Sequence[str]) -> ErrorFormat:
    """Give the error format of the JSON-RPC endpoint, whose 401s name `challenges`."""

    def refusal(exc: BaseException, request: str) -> JSONRPCRefusal:
        code, reason, domain = next(
            (REFUSALS[c] for c in type(exc).__mro__ if c in REFUSALS), OTHER
        )
        kind = type(exc).__name__ if isinstance(exc, TenantryError) else "InternalError"
        metadata = {"type": kind}
        info = {"@type": ERROR_INFO_TYPE, "reason": reason, "domain": domain, "metadata": metadata}
        error = {"code": code, "message": public_message(exc, request), "data": [info]}
        headers = error_headers(exc)
        unauthorized = isinstance(exc, Unauthorized)
        if unauthorized:
            del headers["WWW-Authenticate"]
        response = JSONRPCRefusal(error, status_of(exc), headers, echo_id=unauthorized)
        for challenge in challenges if unauthorized else ():
            response.headers.append("WWW-Authenticate", challenge)
        return response

    return refusal


__all__ = ["ID_BODY_LIMIT", "REFUSALS", "JSONRPCRefusal", "jsonrpc_refusals", "request_id"]
