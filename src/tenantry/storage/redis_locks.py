"""`RedisLocks`: the turn lock of `RedisStore`, one key per scope.

`SET key token NX PX lock_ttl` after the in-process lock (see `locks`), renewed every third
of lock_ttl while the turn runs (a slow model call keeps its lock), released by a
compare-and-delete script (`redis_lua.RELEASE`). A process that dies frees its locks after
at most lock_ttl. The turn's append script checks that the lock still holds the turn's
token and refuses the write otherwise (`ScopeLockLost`), so a turn that lost its lock can
never interleave with the next.
"""

from __future__ import annotations

import asyncio
import secrets
from abc import abstractmethod
from dataclasses import dataclass, field

from tenantry.errors import StoreClosed, StoreError
from tenantry.storage.redis_client import RedisParts
from tenantry.tenancy import Scope


@dataclass(slots=True)
class RedisLock:
    """A turn lock held: its key and the random token that proves it is this turn's."""

    key: str
    token: str
    renewal: asyncio.Task[None] | None = field(default=None, repr=False)
    released: bool = False
    """Set by `_unlock` before it cancels the renewal: the renewal stops on it even if the
    driver turned the cancellation into an error of its own (closing a broken connection
    can fail), which would otherwise look like a failed renewal to retry."""


class RedisLocks(RedisParts[RedisLock]):
    """The turn-lock primitives of `RedisStore`, on its client and scripts."""

    lock_ttl: float
    """Seconds a lock lives without renewal (a dead process's locks free after that)."""

    @abstractmethod
    def _lock_key(self, scope: Scope) -> str:
        """Give the key of the scope's turn lock."""

    async def _try_lock(self, scope: Scope) -> RedisLock | None:
        key = self._lock_key(scope)
        token = secrets.token_hex(16)
        ttl_ms = round(self.lock_ttl * 1000)
        if not await self._ready().set(key, token, nx=True, px=ttl_ms):
            return None
        lock = RedisLock(key, token)
        lock.renewal = asyncio.ensure_future(self._renew(lock, ttl_ms))
        return lock

    async def _renew(self, lock: RedisLock, ttl_ms: int) -> None:
        """Push the lock's expiry forward every third of its TTL until released or lost; a
        failed renewal is retried, and a lost lock is caught by the append's fence."""
        while not lock.released:
            await asyncio.sleep(self.lock_ttl / 3)
            try:
                if not await self._run(
                    lambda: self._script("renew", [lock.key], [lock.token, ttl_ms])
                ):
                    return
            except StoreClosed:
                return
            except StoreError:
                continue

    async def _unlock(self, lock: RedisLock) -> None:
        lock.released = True
        if lock.renewal is not None:
            lock.renewal.cancel()
        await self._script("release", [lock.key], [lock.token])


__all__ = ["RedisLock", "RedisLocks"]
