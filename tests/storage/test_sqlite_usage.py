"""What SQLiteStore promises of usage beyond the contract: a file of schema version 2 is
upgraded in place, and a user's usage is read through its primary key only."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

from tenantry import Budget, Message, SQLiteStore, Usage, UsageDay
from tenantry.storage.sqlite import SCHEMA_VERSION
from tests.conftest import FakeClock

DAY = date(2026, 3, 10)
NOON = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()


async def _version_2_file(path: Path) -> None:
    """Write a file as tenantry's schema version 2 left it (no usage tables), holding one
    turn and one memory."""
    async with SQLiteStore(path) as store:
        await store.add_many([Message.user("written by version 2")], user_id="u", state={"k": 1})
        await store.add_memory("The user's name is Alice", user_id="u")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(
        """
        DROP TABLE usage_days;
        DROP TABLE budgets;
        UPDATE tenantry_schema SET version = 2;
        """
    )
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not tables & {"usage_days", "budgets"}
    conn.close()


async def test_a_version_2_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    await _version_2_file(path)
    clock = FakeClock(NOON)
    stores = [SQLiteStore(path, clock=clock) for _ in range(3)]  # several processes at once
    try:
        assert await asyncio.gather(*(store.size("u") for store in stores)) == [1, 1, 1]
        store = stores[0]
        assert [m.content for m in await store.get_messages("u")] == ["written by version 2"]
        assert await store.get_state("u") == {"k": 1}
        assert [m.text for m in await store.list_memories(user_id="u")] == [
            "The user's name is Alice"
        ]
        assert await store.get_usage("u", start=DAY, end=DAY) == []
        turn = Usage(requests=1, input_tokens=10, output_tokens=2)
        await store.add_many([Message.assistant("written by version 3")], user_id="u", usage=turn)
        await stores[1].set_budget("u", Budget(tokens_per_day=100))
        assert await stores[2].get_usage("u", start=DAY, end=DAY) == [UsageDay(DAY, turn)]
    finally:
        for store in stores:
            await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(version) FROM tenantry_schema").fetchone() == (SCHEMA_VERSION,)
    assert SCHEMA_VERSION == 3
    conn.close()
    async with SQLiteStore(path) as reopened:
        assert await reopened.size("u") == 2
        assert await reopened.get_budget("u") == Budget(tokens_per_day=100)


async def test_a_users_usage_is_read_through_its_primary_key(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with SQLiteStore(path) as store:
        await store.add_usage(Usage(requests=1), user_id="u", now=NOON)
    conn = sqlite3.connect(path)
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM usage_days WHERE user_id = ? AND day BETWEEN ? AND ?",
        ("u", "2026-03-01", "2026-03-10"),
    ).fetchall()
    conn.close()
    details = " ".join(row[-1] for row in plan)
    assert "PRIMARY KEY" in details
    assert "user_id=?" in details
