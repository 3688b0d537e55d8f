"""Per-tenant rate limit: a token bucket per tenant, in bounded memory.

A tenant may burst up to `per_minute` requests, refilled at `per_minute / 60` per second.
Buckets live in insertion-ordered dict ordered by last use: a bucket idle long enough to be
full again is the same as no bucket, so those are dropped from the old end on every call, and
the table never holds more than `max_tenants` buckets (the least recently used goes first).
The limit is per process: with several replicas each enforces it separately.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from tenantry.server.errors import RateLimited


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """Allow each tenant `per_minute` requests per minute (0 disables the limit)."""

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
            wait = (1.0 - bucket.tokens) / self._rate
            raise RateLimited(
                f"too many requests: at most {self.per_minute} per minute per user; "
                f"retry in {wait:.1f}s",
                retry_after=wait,
            )
        bucket.tokens -= 1.0

    def _evict(self, now: float) -> None:
        refill_time = 60.0  # an idle bucket is full again after at most one minute
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if len(buckets) < self.max_tenants and now - oldest.updated < refill_time:
                return
            buckets.popitem(last=False)


__all__ = ["RateLimiter"]
