"""Every error tenantry raises: one base class, one subclass per cause.

Each message says what went wrong and what to do about it. The server maps each class to one
HTTP status in one place, so new subclasses must pick the right parent.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime


class TenantryError(Exception):
    """Base class of every error raised by tenantry."""


# --- bad input ------------------------------------------------------------------------------


class InvalidInput(TenantryError, ValueError):
    """A value given by the caller is not acceptable (HTTP 400/422)."""


class InvalidScope(InvalidInput):
    """A user id or session id is not acceptable."""


class InvalidUserId(InvalidScope):
    """A user id is empty, too long, or holds control characters."""


class InvalidSessionId(InvalidScope):
    """A session id is empty, too long, or holds control characters."""


class InvalidMessage(InvalidInput):
    """A message cannot be stored or sent (wrong type, empty user text, bad role)."""


class InvalidState(InvalidInput):
    """Session state is not a JSON-serialisable dict with string keys."""


class InvalidMemory(InvalidInput):
    """A memory's text, id, embedding or summary is not acceptable (empty, too long, not
    text, not finite numbers)."""


class InvalidIdempotencyKey(InvalidInput):
    """An idempotency key is empty, longer than 255 characters, or holds control characters."""


class IdempotencyKeyReused(InvalidInput):
    """An idempotency key the user already sent with a different request (another message or
    session) within its time to live (HTTP 422): use a new key for a new turn."""


class InvalidStoreURL(InvalidInput):
    """A store URL names no known backend or carries bad options."""


# --- storage --------------------------------------------------------------------------------


class StoreError(TenantryError):
    """The store failed to carry out an operation."""


class StoreClosed(StoreError):
    """The store was closed; open a new one."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached right now; retry later (HTTP 503)."""


class ScopeBusy(StoreError):
    """Another turn of the same scope held the scope's lock for longer than the timeout."""


class ScopeLockLost(ScopeBusy):
    """A turn's scope lock expired or its connection broke before the turn was written; the
    turn was not stored, so run it again."""


class StoreSchemaError(StoreError):
    """The database holds a tenantry schema this version cannot use, or cannot create it."""


class RateLimitNotShared(StoreError, NotImplementedError):
    """The store is not shared between processes, so it keeps no rate limit that replicas
    share (`Store.shares_rate_limit` is False); the server uses its in-process bucket."""


class MemoryNotFound(TenantryError, LookupError):
    """No memory of that user has that id (HTTP 404). Another user's memory id is not found
    either: a user cannot even learn that it exists."""


class MemoryConflict(TenantryError):
    """The memory changed since the version the caller read (`expected_version` is stale;
    HTTP 409): read it again and retry with its new version."""


class BudgetExceeded(TenantryError):
    """The user's usage reached one of its budget's limits, so the turn was refused before
    the model was called and nothing of it was stored (HTTP 429): wait `retry_after` seconds,
    until the limit's window (the UTC day or month) ends, or ask an admin for a larger budget.

    `limit` names the limit (`tokens_per_day`, `requests_per_day`, `tokens_per_month` or
    `requests_per_month`), `used` is the usage it counts so far in the window, `allowed` the
    limit, `resets_at` the end of the window (a UTC POSIX time)."""

    def __init__(
        self, *, user_id: str, limit: str, used: int, allowed: int, resets_at: float, now: float
    ) -> None:
        kind, _, window = limit.partition("_per_")
        wait = max(0.0, resets_at - now)
        when = datetime.fromtimestamp(resets_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        super().__init__(
            f"user {user_id!r} is over budget: {used} {kind} used of {allowed} allowed per "
            f"{window}; the {window}'s budget resets at {when} (in {_duration(wait)}), or an "
            "admin can raise the budget"
        )
        self.user_id = user_id
        self.limit = limit
        self.used = used
        self.allowed = allowed
        self.resets_at = resets_at
        self.retry_after = wait


def _duration(seconds: float) -> str:
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h"


class MissingDependency(TenantryError, ImportError):
    """An optional dependency (an extra) is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package!r} is not installed; install it with: pip install 'tenantry[{extra}]'"
        )
        self.package = package
        self.extra = extra


# --- models and tools -----------------------------------------------------------------------


class ModelError(TenantryError):
    """The model call failed; nothing of the turn was stored."""


class ModelHTTPError(ModelError):
    """The model's API answered with an HTTP error status."""

    def __init__(self, status_code: int, message: str, *, model: str = "") -> None:
        where = f" from model {model!r}" if model else ""
        super().__init__(f"HTTP {status_code}{where}: {message}")
        self.status_code = status_code
        self.model = model


class ModelUnreachable(ModelError):
    """The model's API could not be reached or timed out."""


class InvalidModelAnswer(ModelError):
    """The model's answer to one of tenantry's own tasks (memory extraction, a summary) is
    not in the format the task asked for; the task's result was discarded."""


class ToolError(TenantryError):
    """A tool raised an exception; the turn was abandoned and nothing was stored."""

    def __init__(self, tool_name: str, cause: BaseException) -> None:
        super().__init__(f"tool {tool_name!r} failed: {type(cause).__name__}: {cause}")
        self.tool_name = tool_name


class ToolsetUnavailable(TenantryError):
    """A toolset (an MCP server) cannot give its tools right now; the turn goes on without
    them."""


class ToolDefinitionError(TenantryError, TypeError):
    """A function cannot be turned into a tool (missing type hints, bad parameters)."""


class MaxLoopsExceeded(TenantryError):
    """The model kept calling tools for more than `max_loops` rounds; nothing was stored."""


class ModelRetry(Exception):
    """Raised by a tool to send its message back to the model so it can try again.

    Not a failure of the turn: the message becomes the tool's result.
    """
