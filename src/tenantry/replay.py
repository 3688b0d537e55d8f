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
from collections.abc import Awaitable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tenantry.errors import IdempotencyKeyReused
from tenantry.storage.base import Store
from tenantry.storage.codec import decode_output, encode_output
from tenantry.storage.idempotency import IdempotencyRecord, reused
from tenantry.tenancy import Scope
from tenantry.types import RunOutput, Usage

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TurnKey:
    """A turn's idempotency key, the hash of its request and how long the key is kept."""

    key: str
    fingerprint: str
    ttl: float


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


async def store_turn(
    store: Store,
    output: RunOutput,
    state: Mapping[str, Any] | None,
    keyed: TurnKey | None,
    *,
    usage: Usage | None = None,
) -> RunOutput:
    """Write the turn of `output` (its messages, `state` if not None, `usage` to count, and
    with `keyed` its record) through the commit checkpoint; give `output`, or when a
    concurrent write of the same request stored its turn first, that turn's stored output
    (this turn then stored and counted nothing)."""
    record = None
    if keyed is not None:
        now = store.clock()
        record = record_of(output, keyed.key, keyed.fingerprint, now, keyed.ttl)
    write = store.add_many(
        output.messages,
        user_id=output.user_id,
        session_id=output.session_id,
        state=state,
        usage=usage,
        idempotency=record,
    )
    try:
        await committed(write)  # the checkpoint: from here on, the turn is stored
    except IdempotencyKeyReused:
        # Another write of this key got there first (its scope lock was lost, or it was
        # another session's turn): the same request gets that turn's reply.
        assert keyed is not None
        scope = Scope(output.user_id, output.session_id)
        replay = await stored_reply(store, scope, keyed.key, keyed.fingerprint)
        if replay is None:
            raise
        return replay
    return output


async def committed(write: Awaitable[T]) -> T:
    """Give `write`'s result, running it to the end even if the caller is cancelled meanwhile;
    the cancellation is then raised once the write is done (committed or failed).

    A coroutine's first step runs here at once: a write that never waits (the in-process
    store's, a SQLite turn committed on the loop's thread) is done by then and needs no task;
    one that waits goes on in a task from where it stopped (`_Rest`)."""
    if asyncio.iscoroutine(write):
        try:
            pending = write.send(None)
        except StopIteration as done:
            result: T = done.value
            return result
        task: asyncio.Future[T] = asyncio.ensure_future(_rest(write, pending))
    else:
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


async def _rest(coro: Coroutine[Any, Any, T], pending: Any) -> T:
    result: T = await _Rest(coro, pending)
    return result


class _Rest:
    """The rest of a coroutine that ran up to its first wait (it yielded `pending`, the
    future it waits for): awaiting this runs it on exactly as the task that had started it
    would have, passing every value and exception (a cancellation too) through to it."""

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coro, self._pending = coro, pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self._coro, self._pending
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    pending = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as done:
                    return done.value


__all__ = ["TurnKey", "committed", "record_of", "store_turn", "stored_reply"]
