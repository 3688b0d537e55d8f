"""Request and response bodies shared by the API's routes (pydantic, so they document
themselves in the OpenAPI schema). Ids are checked by the same rules as every store call."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from tenantry.errors import InvalidMessage
from tenantry.server.middleware import unescape_segment
from tenantry.tenancy import MAX_ID_LENGTH, validate_session_id, validate_user_id
from tenantry.types import Usage


def _message_text(value: str) -> str:
    if not value.strip():
        raise InvalidMessage("the message must not be empty")
    return value


_ID_DOC = f"1 to {MAX_ID_LENGTH} characters, no control characters"
UserId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, description=f"A user id: {_ID_DOC}."),
    AfterValidator(validate_user_id),
]
SessionId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, description=f"A session id: {_ID_DOC}."),
    AfterValidator(validate_session_id),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="The client's id of this turn (1-255 characters, new for each turn): a "
        "retry with the same key and body gets the stored reply instead of a second turn; "
        "the same key with another body is 422. Kept 24 h (TENANTRY_IDEMPOTENCY_TTL_HOURS).",
    ),
]
"""The `Idempotency-Key` request header of the turn routes (see `server.turns`)."""
PathUserId = Annotated[UserId, BeforeValidator(unescape_segment)]
"""A user id in a path under /v1/users/ (see `SegmentPathMiddleware`)."""
PathSessionId = Annotated[SessionId, BeforeValidator(unescape_segment)]
"""A session id in a path under /v1/users/ (see `SegmentPathMiddleware`)."""
MessageText = Annotated[
    str,
    Field(min_length=1, description="What the user says; not empty or blank."),
    AfterValidator(_message_text),
]


class UsageBody(BaseModel):
    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, usage: Usage) -> UsageBody:
        return cls(**usage.to_dict())


class ErrorDetail(BaseModel):
    type: str = Field(description="The error class, e.g. InvalidUserId, Forbidden, ScopeBusy.")
    message: str = Field(description="What went wrong and what to do.")
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every error response has this shape."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of error responses for a route."""
    return {status: {"model": ErrorBody} for status in statuses}


__all__ = [
    "ErrorBody",
    "IdempotencyKey",
    "MessageText",
    "PathSessionId",
    "PathUserId",
    "SessionId",
    "UsageBody",
    "UserId",
    "error_responses",
]
