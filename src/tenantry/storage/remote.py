"""`RemoteStore`: what every store that talks to a server shares, written once.

A server-backed store (PostgreSQL, Redis, the next one) subclasses it and brings driver code
only: the `Store` primitives (`_append`, `_read`, ...) and these hooks:

- `_translate(exc, scope)`: the tenantry error a driver error stands for (`StoreUnavailable`
  when the server cannot be reached, `lost(scope)` when the append's fence refused a turn,
  `StoreError` otherwise), or None for an exception that is not the driver's;
- `_try_lock(scope)` / `_unlock(proof)`: take the scope's lock on the server if it is free,
  giving a proof of holding it (None if it is taken), and give it back;
- `_ping_server()`: one cheap round trip; `_disconnect()`: close every connection.

In return it gives:

- `_run(work, scope)`: `work()` run on the store's home loop (`homeloop`: a driver's pool
  belongs to the loop that opened it), its driver errors turned into tenantry's;
- the turn lock: `lock()` holds the in-process entry, then polls `_try_lock` until the
  timeout (`locks.hold_turn`), and always gives the lock back;
- its write fence: `_fence(scope)` is the proof of the lock the current task holds on the
  scope, which `_append` checks in the same atomic step as the write;
- `ping`, `close` (on the home loop) and the check of `pool_size`.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import date
from typing import Generic, TypeVar, cast

from tenantry._checks import check_int
from tenantry.errors import StoreError
from tenantry.storage.base import Clock, Snapshot, Store
from tenantry.storage.homeloop import HomeLoop
from tenantry.storage.locks import LocalScopeLocks, held_lock, hold_turn
from tenantry.tenancy import Scope
from tenantry.types import Admission, Memory

T = TypeVar("T")
Proof = TypeVar("Proof")
"""What a backend's `_try_lock` gives as proof of holding a scope's lock."""


class RemoteStore(Store, Generic[Proof]):
    """A `Store` whose data lives on a server, reached through a driver's connection pool."""

    def __init__(
        self,
        *,
        max_messages: int | None,
        max_memories: int | None,
        usage_retention_days: int,
        clock: Clock,
        pool_size: int,
    ) -> None:
        super().__init__(
            max_messages=max_messages,
            max_memories=max_memories,
            usage_retention_days=usage_retention_days,
            clock=clock,
        )
        self._pool_size = check_int("pool_size", pool_size)
        self._home = HomeLoop()
        self._locks = LocalScopeLocks()

    async def _run(self, work: Callable[[], Awaitable[T]], scope: Scope | None = None) -> T:
        """Give `work()`'s result, run on the home loop, with driver errors turned into
        tenantry's; `scope` is the turn whose lock fences the work, if any."""
        try:
            return await self._home.run(work)
        except Exception as exc:
            error = self._translate(exc, scope)
            if error is None:
                raise
            raise error from exc

    async def _snapshot_and_search(
        self, scope: Scope, limit: int | None, terms: list[str], wanted: int
    ) -> tuple[Snapshot, list[Memory]]:
        """Both reads at once, so a turn waits for one round trip's time, not two."""
        if not terms or wanted == 0:
            return await self._snapshot(scope, limit), []
        searching = asyncio.ensure_future(self._search_memories(scope.user_id, terms, wanted))
        try:
            snapshot = await self._snapshot(scope, limit)
        except BaseException:
            searching.cancel()
            raise
        return snapshot, await searching

    async def _snapshot_and_admission(
        self, scope: Scope, limit: int | None, day: date, budgeted_only: bool
    ) -> tuple[Snapshot, Admission]:
        """Both reads at once, so a turn waits for one round trip's time, not two."""
        admitting = asyncio.ensure_future(self._read_admission(scope.user_id, day))
        try:
            snapshot = await self._snapshot(scope, limit)
        except BaseException:
            admitting.cancel()
            with suppress(BaseException):  # its error, if any: the snapshot's wins
                await admitting
            raise
        return snapshot, await admitting

    # --- the turn lock ------------------------------------------------------------------------

    @asynccontextmanager
    async def _lock(self, scope: Scope, timeout: float) -> AsyncIterator[None]:  # noqa: ASYNC109
        async def try_acquire() -> Proof | None:
            return await self._run(lambda: self._try_lock(scope))

        async def release(proof: Proof) -> None:
            # A lock not given back is freed by the server itself (the session ends, the key
            # expires); the turn's outcome stands either way.
            with suppress(StoreError):
                await self._run(lambda: self._unlock(proof))

        async with hold_turn(self, self._locks, scope, timeout, try_acquire, release):
            yield

    def _fence(self, scope: Scope) -> Proof | None:
        """Give the proof of the turn lock the current task holds on `scope` through this
        store, or None outside a turn. `_append` checks it in the same atomic step as the
        write, so a turn whose lock was lost stores nothing."""
        held = held_lock(self, scope)
        return None if held is None else cast(Proof, held.proof)

    # --- lifecycle ----------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise StoreUnavailable if the server does not answer now."""
        self._check_open()
        await self._run(self._ping_server)

    async def _close(self) -> None:
        await self._home.close(self._disconnect)

    # --- driver hooks -------------------------------------------------------------------------

    @abstractmethod
    def _translate(self, exc: Exception, scope: Scope | None) -> StoreError | None:
        """Give the tenantry error the driver's `exc` stands for, or None if it is not one
        of the driver's (it then propagates as it is)."""

    @abstractmethod
    async def _try_lock(self, scope: Scope) -> Proof | None:
        """Take the scope's lock on the server if it is free; give the proof, or None."""

    @abstractmethod
    async def _unlock(self, proof: Proof) -> None:
        """Give back the lock `proof` stands for."""

    @abstractmethod
    async def _ping_server(self) -> None:
        """Make one cheap round trip to the server."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Close every connection (runs on the home loop)."""


__all__ = ["RemoteStore"]
