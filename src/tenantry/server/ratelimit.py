"""Per-tenant rate limit: a token bucket per tenant, in the shared store or in bounded memory.

`rate_limiter(store, ...)` picks where the buckets live: in the store when it is shared by
replicas (`Store.shares_rate_limit`: PostgreSQL, Redis), so N replicas still give a tenant
one bucket (`SharedRateLimiter`); else in this process (`RateLimiter`, memory and SQLite).
Both take the request with `await limiter.acquire(tenant)`, or raise RateLimited.

The in-process bucket:

A tenant may burst up to `per_minute` requests, refilled at `per_minute / 60` per second.
Buckets live in insertion-ordered dict ordered by last use: a bucket idle long enough to be
full again is the same as no bucket, so those are dropped from the old end on every call, and
the table never holds more than `max_tenants` buckets (the least recently used goes first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from tenantry.server.errors import RateLimited
from tenantry.storage.base import Store


def _refused(per_minute: int, wait: float) -> RateLimited:
    return RateLimited(
        f"too many requests: at most {per_minute} per minute per user; retry in {wait:.1f}s",
        retry_after=wait,
    )


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """Allow each tenant `per_minute` requests per minute in this process (0 disables it)."""

    shared = False

    def __init__(
        self,
        per_minute: int,
        *,
        max_tenants: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.max_tenants = max_tenants
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def hit(self, tenant: str) -> None:
        """Take one request from the tenant's budget, or raise RateLimited."""
        if self.per_minute <= 0:
            return
        now = self._clock()
        self._evict(now)
        capacity = float(self.per_minute)
        bucket = self._buckets.pop(tenant, None)
        if bucket is None:
            bucket = _Bucket(capacity, now)
        else:
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        self._buckets[tenant] = bucket
        if bucket.tokens < 1.0:
            raise _refused(self.per_minute, (1.0 - bucket.tokens) / self._rate)
        bucket.tokens -= 1.0

    async def acquire(self, tenant: str) -> None:
        """`hit`, with the shared limiter's signature."""
        self.hit(tenant)

    def _evict(self, now: float) -> None:
        refill_time = 60.0  # an idle bucket is full again after at most one minute
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if len(buckets) < self.max_tenants and now - oldest.updated < refill_time:
                return
            buckets.popitem(last=False)


class SharedRateLimiter:
    """Allow each tenant `per_minute` requests per minute across every replica sharing
    `store` (0 disables the limit): one bucket per tenant in the store (`rate_limit_hit`)."""

    shared = True

    def __init__(
        self, store: Store, per_minute: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.per_minute = per_minute
        self._clock = clock

    async def acquire(self, tenant: str) -> None:
        """Take one request from the tenant's bucket, or raise RateLimited."""
        if self.per_minute <= 0:
            return
        wait = await self.store.rate_limit_hit(
            tenant, per_minute=self.per_minute, now=self._clock()
        )
        if wait > 0:
            raise _refused(self.per_minute, wait)


Limiter = RateLimiter | SharedRateLimiter


def rate_limiter(store: Store, per_minute: int, *, max_tenants: int = 100_000) -> Limiter:
    """Give the limiter for `store`: the shared one if the store is shared, else in-process."""
    if store.shares_rate_limit:
        return SharedRateLimiter(store, per_minute)
    return RateLimiter(per_minute, max_tenants=max_tenants)


__all__ = ["Limiter", "RateLimiter", "SharedRateLimiter", "rate_limiter"]
