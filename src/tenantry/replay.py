"""Idempotent turns, the agent's side: what a retry of a stored turn gets back, the record a
turn is stored with, and the commit checkpoint that makes every stored turn acknowledged or
retrievable.

A turn run with an idempotency key looks for its record first, holding the scope's turn
lock, so a retry that arrives while the first attempt still runs waits for it and then finds
the record (`stored_reply`). Once the model's reply is complete, the turn and its record are
written in one atomic store write, and that write is shielded from cancellation (`committed`):
a request cancelled or disconnected at that point lets the write finish (holding the lock
until it has) instead of leaving the client unsure whether a half-written turn counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from tenantry.storage.base import Store
from tenantry.storage.codec import decode_output, encode_output
from tenantry.storage.idempotency import IdempotencyRecord, reused
from tenantry.tenancy import Scope
from tenantry.types import RunOutput

T = TypeVar("T")


async def stored_reply(store: Store, scope: Scope, key: str, fingerprint: str) -> RunOutput | None:
    """Give the output stored with the user's turn of idempotency key `key` (marked replayed),
    None if there is none; raise IdempotencyKeyReused if that turn was another request."""
    record = await store.get_idempotency_record(key, user_id=scope.user_id)
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise reused(key)
    return decode_output(record.reply, scope.user_id)


def record_of(
    output: RunOutput, key: str, fingerprint: str, now: float, ttl: float
) -> IdempotencyRecord:
    """Give the record a turn of idempotency key `key` is stored with."""
    return IdempotencyRecord(key, output.session_id, fingerprint, encode_output(output), now + ttl)


async def committed(write: Awaitable[T]) -> T:
    """Give `write`'s result, running it to the end even if the caller is cancelled meanwhile;
    the cancellation is then raised once the write is done (committed or failed)."""
    task = asyncio.ensure_future(write)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # the write itself was cancelled (the store closing)
                raise
            if not task.done():
                cancelled = True
                continue
            raise
        break
    if cancelled:
        raise asyncio.CancelledError
    return result


__all__ = ["committed", "record_of", "stored_reply"]
