"""The one place that turns an error into an HTTP response.

Every error body has the same shape: `{"error": {"type": "<class name>", "message": "..."}}`.
Each `TenantryError` class maps to one status (found by walking the class's MRO, so a new
subclass inherits its parent's status). What the message may say is decided in one place,
`public_message`, for every transport: a client error (4xx) says what was wrong with the
request; a server error (5xx) says only what kind of failure it was and the request id, and
its own text (a model provider's message, a store's address, SQL, a traceback) goes to the
log under that request id.

| error                                   | status | Retry-After |
|-----------------------------------------|--------|-------------|
| MalformedJSON                           | 400    |             |
| InvalidHost (Host header not allowed)   | 400    |             |
| Unauthorized (no or bad credential)     | 401    |             |
| Forbidden (another tenant's data)       | 403    |             |
| ForbiddenOrigin (open mode, other site) | 403    |             |
| NotFound (unknown session/user/route)   | 404    |             |
| MemoryNotFound (not one of the user's)  | 404    |             |
| ScopeBusy (the scope's lock timed out)  | 409    | yes         |
| MemoryConflict (a stale version)        | 409    |             |
| BodyTooLarge                            | 413    |             |
| UnsupportedMediaType (body not JSON)    | 415    |             |
| InvalidInput, InvalidRequest            | 422    |             |
| IdempotencyKeyReused (key of another body) | 422 |             |
| RateLimited                             | 429    | yes         |
| ModelError, MaxLoopsExceeded            | 502    |             |
| StoreUnavailable, StoreClosed, ShuttingDown | 503 | yes         |
| ModelUnreachable                        | 504    |             |
| anything else                           | 500    |             |
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import JSONResponse

from tenantry.errors import (
    InvalidInput,
    MaxLoopsExceeded,
    MemoryConflict,
    MemoryNotFound,
    ModelError,
    ModelHTTPError,
    ModelUnreachable,
    ScopeBusy,
    StoreClosed,
    StoreUnavailable,
    TenantryError,
)

logger = logging.getLogger("tenantry.server")

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

RETRY_AFTER_SECONDS = 1
"""Retry-After sent with 409 and 503: both clear up as soon as the turn or store is back."""


class ServerError(TenantryError):
    """An error of the HTTP layer itself (credentials, routing, limits)."""


class MalformedJSON(ServerError):
    """The request body is not valid JSON."""


class InvalidHost(ServerError):
    """The Host header names no host this server answers to (see `guards.AllowedHosts`)."""


class Unauthorized(ServerError):
    """No credential, or one that is not valid."""


class Forbidden(ServerError):
    """The credential is valid but does not allow acting on this user."""


class ForbiddenOrigin(Forbidden):
    """In open mode, a state-changing request came from a web page of another origin."""


class NotFound(ServerError):
    """The user, session or route does not exist."""


class ShuttingDown(ServerError):
    """The server stopped before the turn finished; nothing of it was stored."""


class BodyTooLarge(ServerError):
    """The request body exceeds the configured limit."""


class UnsupportedMediaType(ServerError):
    """A request body that is not sent as JSON (Content-Type: application/json)."""


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
    InvalidHost: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    MemoryNotFound: 404,
    ScopeBusy: 409,
    MemoryConflict: 409,
    BodyTooLarge: 413,
    UnsupportedMediaType: 415,
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


WITHHELD: dict[type[BaseException], str] = {
    ModelUnreachable: "the model API could not be reached or did not answer in time",
    ModelError: "the model failed",
    MaxLoopsExceeded: "the model kept calling tools beyond the agent's max_loops",
    StoreUnavailable: "the store is unavailable; retry later",
    StoreClosed: "the store is unavailable; retry later",
    ShuttingDown: "the server stopped before this turn finished; retry",
}
"""What a client reads of a server error, by class (nearest ancestor); anything else: 500."""


def _withheld(exc: BaseException) -> str:
    if isinstance(exc, ModelHTTPError):
        return f"the model API answered HTTP {exc.status_code}"
    for cls in type(exc).__mro__:
        if cls in WITHHELD:
            return WITHHELD[cls]
    return "internal error"


def one_line(text: str) -> str:
    """Give `text` with its control characters and line separators escaped as Python does
    (\\n, \\x1b, \\u2028), so what a client or a provider wrote cannot forge log lines."""
    return _UNPRINTABLE.sub(lambda found: ascii(found.group())[1:-1], text)


def public_message(exc: BaseException, request_id: str) -> str:
    """Give what the client may read about `exc`: for a client error (4xx) the error's own
    words; for a server error (5xx) a fixed text per error class and the request id, while
    the error's own text goes to the log (with the traceback when it is a bug, 500).

    The one place that decides this, for every transport (JSON errors, stream error events,
    A2A errors), so a provider's message or a store's address never reaches a tenant."""
    status = status_of(exc)
    if status < 500:
        return str(exc) or type(exc).__name__
    if status == 500:
        logger.error("internal error [%s]", request_id, exc_info=exc)
        return f"internal error; the server logged it with request id {request_id}"
    logger.warning("%s [%s]: %s", type(exc).__name__, request_id, one_line(str(exc)))
    return f"{_withheld(exc)}; the server logged the details with request id {request_id}"


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
    """Give the response for `exc` (what it withholds is logged by `public_message`)."""
    return JSONResponse(error_body(exc, request_id), status_of(exc), headers=error_headers(exc))


__all__ = [
    "STATUS",
    "WITHHELD",
    "BodyTooLarge",
    "Forbidden",
    "ForbiddenOrigin",
    "InvalidHost",
    "InvalidRequest",
    "MalformedJSON",
    "NotFound",
    "RateLimited",
    "ServerError",
    "ShuttingDown",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_body",
    "error_response",
    "one_line",
    "public_message",
    "retry_after",
    "status_of",
]
