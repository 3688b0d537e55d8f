"""`InMemoryUsage`: the usage counters and budgets of `InMemoryStore`, in this process.

Per user, a dict of UTC day -> its counts (a list of `USAGE_COUNTS` then estimated 0/1,
added to in place: cheaper per turn than building a `Usage`); per user with an override,
their `Budget`. Guarded by the store's mutex, like its sessions, so a turn's
`_append` adds its usage under the same lock as its messages (`_count`). `top_usage` walks
every user's days of the period: fine for one process's tenants, which is all this store
holds. The store is not shared, so it has no shared rate limit.
"""

from __future__ import annotations

import threading
from datetime import date

from tenantry.storage.base import Store
from tenantry.types import USAGE_COUNTS, Budget, Usage, UsageDay


def _usage(row: list[int]) -> Usage:
    requests, input_tokens, output_tokens, cache_read, cache_write, tool_calls, estimated = row
    return Usage(
        requests, input_tokens, output_tokens, cache_read, cache_write, tool_calls, bool(estimated)
    )


class InMemoryUsage(Store):
    """The usage primitives of `InMemoryStore`, which creates `_mutex` and calls
    `_init_usage` when it is made."""

    _mutex: threading.Lock

    def _init_usage(self) -> None:
        self._usage: dict[str, dict[date, list[int]]] = {}
        self._budgets: dict[str, Budget] = {}

    def _count(self, user_id: str, day: date, usage: Usage) -> None:
        """Add `usage` to the user's day; the caller holds the mutex."""
        days = self._usage.setdefault(user_id, {})
        row = days.get(day)
        if row is None:
            days[day] = [*(getattr(usage, name) for name in USAGE_COUNTS), usage.estimated]
            return
        for i, name in enumerate(USAGE_COUNTS):
            row[i] += getattr(usage, name)
        row[-1] = row[-1] or usage.estimated

    def _forget_usage(self) -> None:
        """Drop every user's usage and budget; the caller holds the mutex."""
        self._usage.clear()
        self._budgets.clear()

    async def _add_usage(self, user_id: str, day: date, usage: Usage) -> None:
        with self._mutex:
            self._count(user_id, day, usage)

    async def _usage_days(self, user_id: str, start: date, end: date) -> list[UsageDay]:
        with self._mutex:
            days = self._usage.get(user_id, {})
            found = [UsageDay(day, _usage(row)) for day, row in days.items() if start <= day <= end]
        return sorted(found, key=lambda one: one.day)

    async def _top_usage(self, start: date, end: date, limit: int) -> list[tuple[str, Usage]]:
        sums: list[tuple[str, Usage]] = []
        with self._mutex:
            for user_id, days in self._usage.items():
                period = [_usage(row) for day, row in days.items() if start <= day <= end]
                if period:
                    sums.append((user_id, sum(period, Usage())))
        sums.sort(key=lambda pair: (-pair[1].total_tokens, pair[0]))
        return sums[:limit]

    async def _get_budget(self, user_id: str) -> Budget | None:
        with self._mutex:
            return self._budgets.get(user_id)

    async def _set_budget(self, user_id: str, budget: Budget | None) -> None:
        with self._mutex:
            if budget is None:
                self._budgets.pop(user_id, None)
            else:
                self._budgets[user_id] = budget

    async def _prune_usage(self, before: date) -> int:
        deleted = 0
        with self._mutex:
            for user_id in list(self._usage):
                days = self._usage[user_id]
                old = [day for day in days if day < before]
                for day in old:
                    del days[day]
                deleted += len(old)
                if not days:
                    del self._usage[user_id]
        return deleted


__all__ = ["InMemoryUsage"]
