"""`SQLiteUsage`: the usage counters and budgets of `SQLiteStore`, in two tables of its file
(schema version 3).

- `usage_days`: one row per user per UTC day with usage, keyed (user_id, day) with the day
  as YYYY-MM-DD text (which sorts by date), holding the sums of `types.USAGE_COUNTS` and
  `estimated` (1 once any part was). Indexed by day too, for `top_usage` and pruning.
- `budgets`: one row per user with a budget override; a NULL limit is no limit.

A turn's `_append` calls `count_usage` inside its own transaction on the writer thread, so
the counters commit (or roll back) with the turn's messages. The file is not shared between
machines, so the store has no shared rate limit.
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, TypeVar

from tenantry.storage.base import Store
from tenantry.storage.usage import UNREAD_ADMISSION, admission_of, month_start
from tenantry.types import BUDGET_LIMITS, USAGE_COUNTS, Admission, Budget, Usage, UsageDay

T = TypeVar("T")

USAGE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS usage_days (
    user_id TEXT NOT NULL,
    day TEXT NOT NULL,
    {", ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in USAGE_COUNTS)},
    estimated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_by_day ON usage_days (day);
CREATE TABLE IF NOT EXISTS budgets (
    user_id TEXT PRIMARY KEY,
    {", ".join(f"{name} INTEGER" for name in BUDGET_LIMITS)}
) WITHOUT ROWID;
"""
"""The usage tables: created with the others (`sqlite_sql.SCHEMA`), so a file of version 2
gets them on upgrade by the same IF NOT EXISTS."""

COUNTS = ", ".join(USAGE_COUNTS)
SUMS = ", ".join(f"sum({name})" for name in USAGE_COUNTS) + ", max(estimated)"
_COUNT = (
    f"INSERT INTO usage_days (user_id, day, {COUNTS}, estimated) "
    f"VALUES (?, ?, {', '.join('?' * len(USAGE_COUNTS))}, ?) "
    "ON CONFLICT (user_id, day) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in USAGE_COUNTS)
    + ", estimated = max(estimated, excluded.estimated)"
)
_TOKENS = "sum(input_tokens) + sum(output_tokens)"


def count_usage(conn: sqlite3.Connection, user_id: str, day: date, usage: Usage) -> None:
    """Add `usage` to the user's row of `day`, in the caller's transaction."""
    counts = [getattr(usage, name) for name in USAGE_COUNTS]
    conn.execute(_COUNT, (user_id, day.isoformat(), *counts, int(usage.estimated)))


def read_admission(
    conn: sqlite3.Connection, user_id: str, day: date, *, budgeted_only: bool = False
) -> Admission:
    """Give the user's admission of `day` (its days of the month and its budget), in the
    caller's read transaction; with `budgeted_only`, without the usage of a user with no
    budget override (`Store.snapshot_and_admission`)."""
    budget = _budget(conn, user_id)
    if budgeted_only and budget is None:
        return UNREAD_ADMISSION
    return admission_of(_days(conn, user_id, month_start(day), day), day, budget)


def delete_all_usage(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM usage_days")
    conn.execute("DELETE FROM budgets")


def _usage(row: Sequence[Any]) -> Usage:
    """Give the Usage of a row of USAGE_COUNTS then `estimated`."""
    counts = {name: int(row[i]) for i, name in enumerate(USAGE_COUNTS)}
    return Usage(**counts, estimated=bool(row[len(USAGE_COUNTS)]))


def _days(conn: sqlite3.Connection, user_id: str, start: date, end: date) -> list[UsageDay]:
    rows = conn.execute(
        f"SELECT day, {COUNTS}, estimated FROM usage_days"
        " WHERE user_id = ? AND day BETWEEN ? AND ? ORDER BY day",
        (user_id, start.isoformat(), end.isoformat()),
    )
    return [UsageDay(date.fromisoformat(row[0]), _usage(row[1:])) for row in rows]


def _budget(conn: sqlite3.Connection, user_id: str) -> Budget | None:
    row = conn.execute(
        f"SELECT {', '.join(BUDGET_LIMITS)} FROM budgets WHERE user_id = ?", (user_id,)
    ).fetchone()
    return None if row is None else Budget(*row)


class SQLiteUsage(Store):
    """The usage primitives of `SQLiteStore`, on its transactions (`_write`, `_query`)."""

    @abstractmethod
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    @abstractmethod
    async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def _add_usage(self, user_id: str, day: date, usage: Usage) -> None:
        await self._write(lambda conn: count_usage(conn, user_id, day, usage))

    async def _usage_days(self, user_id: str, start: date, end: date) -> list[UsageDay]:
        return await self._query(lambda conn: _days(conn, user_id, start, end))

    async def _read_admission(self, user_id: str, day: date) -> Admission:
        return await self._query(lambda conn: read_admission(conn, user_id, day))

    async def _top_usage(self, start: date, end: date, limit: int) -> list[tuple[str, Usage]]:
        def read(conn: sqlite3.Connection) -> list[tuple[str, Usage]]:
            rows = conn.execute(
                f"SELECT user_id, {SUMS} FROM usage_days WHERE day BETWEEN ? AND ?"
                f" GROUP BY user_id ORDER BY {_TOKENS} DESC, user_id LIMIT ?",
                (start.isoformat(), end.isoformat(), limit),
            )
            return [(row[0], _usage(row[1:])) for row in rows]

        return await self._query(read)

    async def _get_budget(self, user_id: str) -> Budget | None:
        return await self._query(lambda conn: _budget(conn, user_id))

    async def _set_budget(self, user_id: str, budget: Budget | None) -> None:
        def write(conn: sqlite3.Connection) -> None:
            if budget is None:
                conn.execute("DELETE FROM budgets WHERE user_id = ?", (user_id,))
                return
            limits = [getattr(budget, name) for name in BUDGET_LIMITS]
            conn.execute(
                f"INSERT OR REPLACE INTO budgets (user_id, {', '.join(BUDGET_LIMITS)})"
                f" VALUES (?, {', '.join('?' * len(BUDGET_LIMITS))})",
                (user_id, *limits),
            )

        await self._write(write)

    async def _prune_usage(self, before: date) -> int:
        def prune(conn: sqlite3.Connection) -> int:
            cursor = conn.execute("DELETE FROM usage_days WHERE day < ?", (before.isoformat(),))
            return cursor.rowcount

        return await self._write(prune)


__all__ = ["USAGE_SCHEMA", "SQLiteUsage", "count_usage", "delete_all_usage", "read_admission"]
