"""How `RedisStore` keeps a turn's idempotency record: one JSON value per (user, key), with the
record's own TTL, written by the APPEND script (`redis_lua`) together with the turn."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tenantry.storage.idempotency import IdempotencyRecord


def record_args(record: IdempotencyRecord | None, now: float) -> list[Any]:
    """Give APPEND's ARGV[9] to ARGV[12] for a turn's idempotency record (or none): its JSON,
    its time to live in milliseconds, its expiry and its member in the user's index."""
    if record is None:
        return ["", 0, 0, ""]
    text = json.dumps(
        {
            "session_id": record.session_id,
            "request_hash": record.request_hash,
            "reply": record.reply,
            "expires_at": record.expires_at,
        },
        ensure_ascii=False,
    )
    ttl_ms = max(1, round((record.expires_at - now) * 1000))
    member = f"{quote(record.session_id, safe='')}:{quote(record.key, safe='')}"
    return [text, ttl_ms, repr(record.expires_at), member]


def decode_record(key: str, text: str | bytes) -> IdempotencyRecord:
    """Give the record `record_args` stored as `text`."""
    data = json.loads(text)
    return IdempotencyRecord(
        key, data["session_id"], data["request_hash"], data["reply"], data["expires_at"]
    )


__all__ = ["decode_record", "record_args"]
