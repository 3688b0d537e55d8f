"""Randomised isolation across processes: three processes share one store (PostgreSQL,
Redis, an SQLite file) and the same 2000 scopes of 1000 users, each running a random mix of
every store call, memory call and agent turn from many tasks; no read in any process, nor the
final read of every scope and every user's memories, may return another scope's token or
another user's memory."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tenantry import SQLiteStore
from tests.conftest import (
    CLEANUPS,
    CLUSTER_BACKEND,
    POSTGRES_URL_VARIABLE,
    REDIS_URL_VARIABLE,
    namespace_name,
    server_url,
)
from tests.support.reliability.isolation_processes import Plan, run_processes, split
from tests.support.reliability.workloads import MEMORY_KINDS, USAGE_KINDS

PROCESSES = 3
OPERATIONS = 20_001
"""In total, over the processes (6667 each)."""
USERS, SESSIONS_PER_USER = 1000, 2
MAX_MEMORIES = 3
"""Small, so that the cap drops memories while other processes read and update them."""
EVERY_KIND = {
    *MEMORY_KINDS,
    *USAGE_KINDS,
    "turn",
    "keyed_turn",
    "add",
    "add_many",
    "get_messages",
    "snapshot",
    "set_state",
    "get_state",
    "size",
    "list_sessions",
    "clear_session",
    "clear_user",
    "list_users",
}


def _with_query(url: str) -> str:
    return url + ("&" if "?" in url else "?")


@pytest.fixture(params=["postgres", "redis", "sqlite", CLUSTER_BACKEND])
async def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL every process can open: its own schema, key prefix or file."""
    backend = str(request.param)
    name = namespace_name(tmp_path)
    cap = f"max_memories={MAX_MEMORIES}"
    if backend == "postgres":
        yield f"{_with_query(server_url(POSTGRES_URL_VARIABLE))}schema={name}&{cap}"
    elif backend == "redis":
        yield f"{_with_query(server_url(REDIS_URL_VARIABLE))}prefix={name}&{cap}"
    elif backend == CLUSTER_BACKEND:
        yield f"{request.getfixturevalue('redis_cluster_url')}/?prefix={name}&{cap}"
    else:
        yield f"sqlite:///{tmp_path / 'shared.db'}?{cap}"
    if backend in CLEANUPS:
        await CLEANUPS[backend](tmp_path)


@pytest.mark.slow
async def test_no_process_ever_reads_another_scopes_data(shared_url: str) -> None:
    plan = Plan(shared_url, USERS, SESSIONS_PER_USER, OPERATIONS, concurrency=32, seed=11)
    result = await run_processes(plan, processes=PROCESSES, timeout=300)
    total = result.total
    assert total.violations == []
    assert result.final.violations == []
    assert len(result.workers) == PROCESSES
    for report, share in zip(result.workers, split(OPERATIONS, PROCESSES), strict=True):
        assert report.operations == share  # every process did its whole share
        # a keyed turn is refused only when its user took that key name before: by chance
        assert set(report.by_kind) - {"keyed_turn_refused"} == EVERY_KIND
        assert report.turns > 300
        assert report.reads_checked > 2000
    assert total.operations == OPERATIONS
    assert total.by_kind["foreign_memory"] > 300
    # per scope its messages and state; per user its memories, usage and budget; list_users
    assert result.final.reads_checked == 2 * USERS * SESSIONS_PER_USER + 3 * USERS + 1
    print(f"\n{shared_url.split(':')[0]}: {result.to_dict()}")


def test_the_operations_are_split_evenly_and_whole() -> None:
    assert split(20_000, 3) == [6667, 6667, 6666]
    assert sum(split(7, 7)) == 7


async def test_a_new_sqlite_file_opens_while_another_process_is_writing_to_it(
    tmp_path: Path,
) -> None:
    """Found by the soak's isolation run: SQLite refuses at once ("database is locked",
    without waiting for the busy timeout) to switch a file to WAL while another connection
    holds a write lock on it, as when several processes open a new file together."""
    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the other process is creating its tables
    other.execute("CREATE TABLE IF NOT EXISTS elsewhere (x)")
    done = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    done.start()
    try:
        async with SQLiteStore(path, busy_timeout=10) as store:
            await store.ping()  # waits for the other writer instead of failing
            assert await store.list_users() == []
    finally:
        done.join()
        other.close()
