"""Idempotency records: what a store keeps of a turn sent with an idempotency key, so that a
retry of that turn gets the reply it was given instead of running it twice.

- A record is written by the turn's own atomic write (`TurnWrite.idempotency`): the turn is
  stored with its record or not at all, so a stored turn can always be found by its key.
- Keys are the user's: a record is keyed by (user id, key), so one tenant's key never
  matches another tenant's, and the same key in two sessions of one user is one key.
- `request_hash` fingerprints what defines the turn (its session and message, as canonical
  JSON): a retry must send the same, or it is refused (`IdempotencyKeyReused`, HTTP 422).
- A record lives for a bounded time (`expires_at`; the agent's `idempotency_ttl`, 24 h by
  default): after that it is ignored, and `prune_inactive` deletes it (Redis lets the key's
  own TTL delete it). A write that finds a live record of its key stores nothing and raises
  `IdempotencyKeyReused`, whatever its body: two writes of one key never both succeed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from tenantry.errors import IdempotencyKeyReused, InvalidIdempotencyKey, InvalidInput
from tenantry.tenancy import id_problem

DEFAULT_IDEMPOTENCY_TTL = timedelta(hours=24)
"""How long a turn's idempotency record is kept by default."""


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What a store keeps of a turn sent with an idempotency key (the user is the store's
    key of it, not a field)."""

    key: str
    session_id: str
    """The session the turn was stored in (clearing the session deletes the record)."""
    request_hash: str
    """`request_hash` of the turn's request: a retry must match it."""
    reply: str
    """The turn's output as JSON (`codec.encode_output`), returned to a retry."""
    expires_at: float
    """When the record stops counting (seconds since the epoch, on the store's clock)."""


def check_idempotency_key(key: object) -> str:
    """Give `key` if it can be an idempotency key (a string of 1 to 255 characters without
    control characters), or raise InvalidIdempotencyKey saying why not."""
    problem = id_problem(key)
    if problem is not None:
        shown = repr(key)[:60] if isinstance(key, str) else type(key).__name__
        raise InvalidIdempotencyKey(f"idempotency key {shown} {problem}")
    return key  # type: ignore[return-value]  # id_problem() proved it is a str


def check_ttl(ttl: timedelta | float) -> float:
    """Give a time to live in seconds, or raise InvalidInput if it is not positive."""
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise InvalidInput(f"idempotency_ttl must be a positive duration, got {ttl!r}")
    return float(seconds)


def request_hash(session_id: str, message: str) -> str:
    """Give the SHA-256 hex of the canonical JSON of what defines a turn: its session and its
    message. The user is not in it: records are per user already."""
    canonical = json.dumps(
        {"message": message, "session_id": session_id},
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def reused(key: str) -> IdempotencyKeyReused:
    """The error for a key that already names another request of the user."""
    return IdempotencyKeyReused(
        f"idempotency key {key[:60]!r} was already used for a different request (another "
        "message or session) of this user; send a new key for a new turn, or resend exactly "
        "the same request to get its reply"
    )


__all__ = [
    "DEFAULT_IDEMPOTENCY_TTL",
    "IdempotencyRecord",
    "check_idempotency_key",
    "check_ttl",
    "request_hash",
    "reused",
]
