"""The one place that turns an error into an HTTP response.

Every error body has the same shape: `{"error": {"type": "<class name>", "message": "..."}}`.
Each `TenantryError` class maps to one status (found by walking the class's MRO, so a new
subclass inherits its parent's status); server errors (5xx) carry a generic message and the
request id, never internals or a stack trace.

| error                                   | status | Retry-After |
|-----------------------------------------|--------|-------------|
| MalformedJSON                           | 400    |             |
| Unauthorized (no or bad credential)     | 401    |             |
| Forbidden (another tenant's data)       | 403    |             |
| NotFound (unknown session/user/route)   | 404    |             |
| MemoryNotFound (not one of the user's)  | 404    |             |
| ScopeBusy (the scope's lock timed out)  | 409    | yes         |
| MemoryConflict (a stale version)        | 409    |             |
| BodyTooLarge                            | 413    |             |
| InvalidInput, InvalidRequest            | 422    |             |
| RateLimited                             | 429    | yes         |
| ModelError, MaxLoopsExceeded            | 502    |             |
| StoreUnavailable, StoreClosed, ShuttingDown | 503 | yes         |
| ModelUnreachable                        | 504    |             |
| anything else                           | 500    |             |
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import JSONResponse

from tenantry.errors import (
    InvalidInput,
    MaxLoopsExceeded,
    MemoryConflict,
    MemoryNotFound,
    ModelError,
    ModelUnreachable,
    ScopeBusy,
    StoreClosed,
    StoreUnavailable,
    TenantryError,
)

logger = logging.getLogger("tenantry.server")

RETRY_AFTER_SECONDS = 1
"""Retry-After sent with 409 and 503: both clear up as soon as the turn or store is back."""


class ServerError(TenantryError):
    """An error of the HTTP layer itself (credentials, routing, limits)."""


class MalformedJSON(ServerError):
    """The request body is not valid JSON."""


class Unauthorized(ServerError):
    """No credential, or one that is not valid."""


class Forbidden(ServerError):
    """The credential is valid but does not allow acting on this user."""


class NotFound(ServerError):
    """The user, session or route does not exist."""


class ShuttingDown(ServerError):
    """The server stopped before the turn finished; nothing of it was stored."""


class BodyTooLarge(ServerError):
    """The request body exceeds the configured limit."""


class InvalidRequest(InvalidInput):
    """The request's fields do not match the schema (missing, wrong type, bad id)."""

    def __init__(self, message: str, details: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.details = list(details)


class RateLimited(ServerError):
    """The tenant sent more requests per minute than allowed."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


STATUS: dict[type[BaseException], int] = {
    MalformedJSON: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    MemoryNotFound: 404,
    ScopeBusy: 409,
    MemoryConflict: 409,
    BodyTooLarge: 413,
    InvalidInput: 422,
    RateLimited: 429,
    ModelUnreachable: 504,
    ModelError: 502,
    MaxLoopsExceeded: 502,
    StoreUnavailable: 503,
    StoreClosed: 503,
    ShuttingDown: 503,
}


def status_of(exc: BaseException) -> int:
    """Give the HTTP status of an error: that of its nearest mapped ancestor, else 500."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def retry_after(exc: BaseException) -> int | None:
    """Give the seconds a client should wait before retrying, or None if retrying won't help."""
    if isinstance(exc, RateLimited):
        return max(1, math.ceil(exc.retry_after))
    if isinstance(exc, MemoryConflict):  # the same request fails again: read, then retry
        return None
    if status_of(exc) in (409, 503):
        return RETRY_AFTER_SECONDS
    return None


def public_message(exc: BaseException, request_id: str) -> str:
    """Give what the client may read: the error's own words, except for internal failures."""
    if status_of(exc) == 500:
        return f"internal error; the server logged it with request id {request_id}"
    return str(exc) or type(exc).__name__


def error_body(exc: BaseException, request_id: str) -> dict[str, Any]:
    """Give the JSON error document for `exc`."""
    error: dict[str, Any] = {
        "type": type(exc).__name__ if isinstance(exc, TenantryError) else "InternalError",
        "message": public_message(exc, request_id),
    }
    if isinstance(exc, InvalidRequest) and exc.details:
        error["details"] = exc.details
    return {"error": error}


def error_headers(exc: BaseException) -> dict[str, str]:
    headers: dict[str, str] = {}
    seconds = retry_after(exc)
    if seconds is not None:
        headers["Retry-After"] = str(seconds)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="tenantry"'
    return headers


def error_response(exc: BaseException, request_id: str) -> JSONResponse:
    """Give the response for `exc`; internal failures are logged with their traceback."""
    status = status_of(exc)
    if status == 500:
        logger.error("internal error [%s]", request_id, exc_info=exc)
    return JSONResponse(error_body(exc, request_id), status, headers=error_headers(exc))


__all__ = [
    "STATUS",
    "BodyTooLarge",
    "Forbidden",
    "InvalidRequest",
    "MalformedJSON",
    "NotFound",
    "RateLimited",
    "ServerError",
    "ShuttingDown",
    "Unauthorized",
    "error_body",
    "error_response",
    "retry_after",
    "status_of",
]
