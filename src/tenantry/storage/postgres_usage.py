"""`PostgresUsage`: the usage counters, budgets and shared rate limit of `PostgresStore` —
their tables, functions, queries and the store's usage primitives.

Tables (schema version 4, in the store's schema, under row-level security like the others:
each row carries its user_id):

- `usage_days`: one row per user per UTC day with usage, keyed (user_id, day), holding the
  sums of `types.USAGE_COUNTS` (bigint) and `estimated` (true once any part was). Indexed by
  day too, for `top_usage` and pruning.
- `budgets`: one row per user with a budget override (a NULL limit is no limit).
- `rate_buckets`: one token bucket per user (tokens left, time of the last refill), the rate
  limit every replica shares.

Functions: `count_usage(user, day, counts, estimated)` adds to a user's day (an upsert, so
concurrent turns of one user queue on the row and none is lost); `append_turn` calls it in
the turn's own transaction when given the turn's usage (its last three parameters, NULL by
default), so a turn and its usage commit together in one round trip. `rate_limit_hit(user,
per_minute, now)` takes a request from the user's bucket (the upsert row-locks it, so
replicas take turns) and gives 0 or the seconds to wait. Both run with the caller's rights,
so row-level security applies inside them as outside.

`top_usage` and pruning span tenants, so they run as the connecting role, like
`list_users`; `top_usage` reads the period's rows through the day index (every user's rows
of the period: what an operator's report costs, never a turn).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

from tenantry.storage.base import PRUNE_BATCH
from tenantry.storage.remote import RemoteStore
from tenantry.storage.usage import month_start
from tenantry.types import BUDGET_LIMITS, USAGE_COUNTS, Admission, Budget, Usage, UsageDay

if TYPE_CHECKING:
    from tenantry.storage.postgres_pool import PostgresConnections

P = TypeVar("P")

COUNTS = ", ".join(USAGE_COUNTS)
LIMITS = ", ".join(BUDGET_LIMITS)
_SUMS = (
    ", ".join(f"coalesce(sum({n}), 0)" for n in USAGE_COUNTS)
    + ", coalesce(bool_or(estimated), false)"
)


def usage_ddl(schema: str) -> str:
    """Give the statements that create the usage tables and functions in `schema` (each one
    a no-op if it is there already)."""
    counts = ",\n    ".join(f"{name} bigint NOT NULL DEFAULT 0" for name in USAGE_COUNTS)
    limits = ",\n    ".join(f"{name} bigint" for name in BUDGET_LIMITS)
    values = ", ".join(f"p_counts[{i}]" for i in range(1, len(USAGE_COUNTS) + 1))
    adds = ", ".join(f"{name} = u.{name} + excluded.{name}" for name in USAGE_COUNTS)
    return f"""
CREATE TABLE IF NOT EXISTS {schema}.usage_days (
    user_id text COLLATE "C" NOT NULL,
    day date NOT NULL,
    {counts},
    estimated boolean NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, day)
);
CREATE INDEX IF NOT EXISTS usage_days_by_day ON {schema}.usage_days (day);
CREATE TABLE IF NOT EXISTS {schema}.budgets (
    user_id text COLLATE "C" PRIMARY KEY,
    {limits}
);
CREATE TABLE IF NOT EXISTS {schema}.rate_buckets (
    user_id text COLLATE "C" PRIMARY KEY,
    tokens double precision NOT NULL,
    updated double precision NOT NULL
);
CREATE OR REPLACE FUNCTION {schema}.count_usage(
    p_user text, p_day date, p_counts bigint[], p_estimated boolean
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.usage_days AS u (user_id, day, {COUNTS}, estimated)
    VALUES (p_user, p_day, {values}, p_estimated)
    ON CONFLICT (user_id, day) DO UPDATE SET {adds},
        estimated = u.estimated OR excluded.estimated;
END $$;
CREATE OR REPLACE FUNCTION {schema}.rate_limit_hit(
    p_user text, p_per_minute integer, p_now double precision
) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    rate double precision := p_per_minute / 60.0;
    have double precision;
BEGIN
    INSERT INTO {schema}.rate_buckets AS r (user_id, tokens, updated)
    VALUES (p_user, p_per_minute, p_now)
    ON CONFLICT (user_id) DO UPDATE SET
        tokens = least(p_per_minute, r.tokens + greatest(p_now - r.updated, 0) * rate),
        updated = greatest(r.updated, p_now)
    RETURNING r.tokens INTO have;
    IF have >= 1 THEN
        UPDATE {schema}.rate_buckets SET tokens = have - 1 WHERE user_id = p_user;
        RETURN 0;
    END IF;
    RETURN (1 - have) / rate;
END $$;
"""


def usage_params(day: date | None, usage: Usage | None) -> dict[str, Any]:
    """Give the parameters `count_usage` takes (and `append_turn`'s last three): None for a
    turn without usage."""
    if usage is None:
        return {"day": None, "counts": None, "estimated": False}
    counts = [getattr(usage, name) for name in USAGE_COUNTS]
    return {"day": day, "counts": counts, "estimated": usage.estimated}


class UsageQueries:
    """The usage queries, with the (quoted) schema name filled in once."""

    def __init__(self, schema: str) -> None:
        self.count = (
            f"SELECT {schema}.count_usage(%(u)s, %(day)s, %(counts)s::bigint[], %(estimated)s)"
        )
        self.days = (
            f"SELECT day, {COUNTS}, estimated FROM {schema}.usage_days"
            " WHERE user_id = %(u)s AND day BETWEEN %(start)s AND %(end)s ORDER BY day"
        )
        # The month's days and the budget in one statement: one round trip per admission.
        today = ", ".join(
            f"coalesce(sum({n}) FILTER (WHERE day = %(end)s), 0)" for n in USAGE_COUNTS
        )
        self.admission = (
            f"SELECT s.*, b.user_id IS NOT NULL, {', '.join(f'b.{n}' for n in BUDGET_LIMITS)}"
            f" FROM (SELECT {today}, coalesce(bool_or(estimated) FILTER (WHERE day = %(end)s),"
            f" false), {_SUMS} FROM {schema}.usage_days"
            " WHERE user_id = %(u)s AND day BETWEEN %(start)s AND %(end)s) s"
            f" LEFT JOIN {schema}.budgets b ON b.user_id = %(u)s"
        )
        self.top = (
            f"SELECT user_id, {_SUMS} FROM {schema}.usage_days"
            " WHERE day BETWEEN %(start)s AND %(end)s GROUP BY user_id"
            " ORDER BY sum(input_tokens) + sum(output_tokens) DESC, user_id LIMIT %(limit)s"
        )
        self.budget = f"SELECT {LIMITS} FROM {schema}.budgets WHERE user_id = %(u)s"
        self.set_budget = (
            f"INSERT INTO {schema}.budgets (user_id, {LIMITS})"
            f" VALUES (%(u)s, {', '.join(f'%({n})s' for n in BUDGET_LIMITS)})"
            " ON CONFLICT (user_id) DO UPDATE SET "
            + ", ".join(f"{n} = excluded.{n}" for n in BUDGET_LIMITS)
        )
        self.delete_budget = f"DELETE FROM {schema}.budgets WHERE user_id = %(u)s"
        self.prune = (
            f"DELETE FROM {schema}.usage_days WHERE (user_id, day) IN"
            f" (SELECT user_id, day FROM {schema}.usage_days WHERE day < %(before)s"
            " LIMIT %(batch)s FOR UPDATE SKIP LOCKED)"
        )
        self.rate = f"SELECT {schema}.rate_limit_hit(%(u)s, %(per_minute)s, %(now)s)"


def _usage(row: Sequence[Any]) -> Usage:
    """Give the Usage of a row of USAGE_COUNTS then `estimated`."""
    counts = {name: int(row[i]) for i, name in enumerate(USAGE_COUNTS)}
    return Usage(**counts, estimated=bool(row[len(USAGE_COUNTS)]))


class PostgresUsage(RemoteStore[P]):
    """The usage primitives of `PostgresStore`, on its tenant transactions."""

    _uq: UsageQueries
    _db: PostgresConnections

    @abstractmethod
    async def _tenant(self, user_id: str, sql: str, params: dict[str, Any]) -> list[Any]: ...

    @property
    def shares_rate_limit(self) -> bool:
        return True

    async def _as_user(self, user_id: str, sql: str, params: dict[str, Any]) -> list[Any]:
        return await self._run(lambda: self._tenant(user_id, sql, {"u": user_id, **params}))

    async def _as_owner(self, sql: str, params: dict[str, Any]) -> list[Any]:
        """Give the rows of `sql` run as the connecting role (spanning tenants)."""

        async def run() -> list[Any]:
            async with self._db.transaction(None) as conn:
                cur = await conn.execute(sql, params)
                return await cur.fetchall() if cur.description else []

        return await self._run(run)

    async def _add_usage(self, user_id: str, day: date, usage: Usage) -> None:
        await self._as_user(user_id, self._uq.count, usage_params(day, usage))

    async def _usage_days(self, user_id: str, start: date, end: date) -> list[UsageDay]:
        rows = await self._as_user(user_id, self._uq.days, {"start": start, "end": end})
        return [UsageDay(row[0], _usage(row[1:])) for row in rows]

    async def _read_admission(self, user_id: str, day: date) -> Admission:
        params = {"start": month_start(day), "end": day}
        ((*row,),) = await self._as_user(user_id, self._uq.admission, params)
        n = len(USAGE_COUNTS) + 1
        limits = row[2 * n + 1 :]
        budget = Budget(*(None if v is None else int(v) for v in limits)) if row[2 * n] else None
        return Admission(_usage(row[:n]), _usage(row[n : 2 * n]), budget)

    async def _top_usage(self, start: date, end: date, limit: int) -> list[tuple[str, Usage]]:
        rows = await self._as_owner(self._uq.top, {"start": start, "end": end, "limit": limit})
        return [(row[0], _usage(row[1:])) for row in rows]

    async def _get_budget(self, user_id: str) -> Budget | None:
        rows = await self._as_user(user_id, self._uq.budget, {})
        return Budget(*(None if v is None else int(v) for v in rows[0])) if rows else None

    async def _set_budget(self, user_id: str, budget: Budget | None) -> None:
        if budget is None:
            await self._as_user(user_id, self._uq.delete_budget, {})
        else:
            await self._as_user(user_id, self._uq.set_budget, budget.to_dict())

    async def _prune_usage(self, before: date) -> int:
        params = {"before": before, "batch": PRUNE_BATCH}

        async def batch() -> int:
            async with self._db.transaction(None) as conn:
                cur = await conn.execute(self._uq.prune, params)
                return cur.rowcount

        return await self._in_batches(lambda: self._run(batch))

    async def _rate_limit_hit(self, user_id: str, per_minute: int, now: float) -> float:
        params = {"per_minute": per_minute, "now": now}
        ((wait,),) = await self._as_user(user_id, self._uq.rate, params)
        return float(wait)


__all__ = ["PostgresUsage", "UsageQueries", "usage_ddl", "usage_params"]
