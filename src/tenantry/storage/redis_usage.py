"""`RedisUsage`: the usage counters and budgets of the Redis store.

IN PROGRESS (branch usage-store, step 2): the primitives below refuse every usage write
and read until the Redis tables/keys land; nothing is silently dropped.
"""

from __future__ import annotations

from datetime import date
from typing import TypeVar

from tenantry.storage.remote import RemoteStore
from tenantry.types import Budget, Usage, UsageDay

P = TypeVar("P")


def _pending() -> NotImplementedError:
    return NotImplementedError("usage accounting on Redis is not implemented yet")


class RedisUsage(RemoteStore[P]):
    """The usage primitives of the Redis store."""

    async def _add_usage(self, user_id: str, day: date, usage: Usage) -> None:
        raise _pending()

    async def _usage_days(self, user_id: str, start: date, end: date) -> list[UsageDay]:
        raise _pending()

    async def _top_usage(self, start: date, end: date, limit: int) -> list[tuple[str, Usage]]:
        raise _pending()

    async def _get_budget(self, user_id: str) -> Budget | None:
        raise _pending()

    async def _set_budget(self, user_id: str, budget: Budget | None) -> None:
        raise _pending()

    async def _prune_usage(self, before: date) -> int:
        return 0  # nothing can be stored yet


__all__ = ["RedisUsage"]
