"""SQLiteStore's window cache: a turn of a busy scope reads no messages, and what it is given
is always what the file holds, whatever another process (here: another store on the same
file, with a cache of its own) or an older tenantry wrote or deleted meanwhile."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tenantry import (
    Agent,
    Budget,
    BudgetExceeded,
    FunctionModel,
    IdempotencyKeyReused,
    Message,
    SQLiteStore,
)
from tenantry.errors import InvalidInput
from tenantry.models import ModelResponse
from tenantry.storage.idempotency import IdempotencyRecord, request_hash
from tenantry.storage.sqlite_sql import SCHEMA_VERSION
from tenantry.storage.sqlite_windows import new_version
from tests.conftest import FakeClock


class CountedReads:
    """Counts the message reads (`SQLiteStore._newest`) of every store while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        newest = SQLiteStore._newest

        def counted(*args: Any, **kwargs: Any) -> list[Message]:
            self.count += 1
            return newest(*args, **kwargs)

        monkeypatch.setattr(SQLiteStore, "_newest", staticmethod(counted))


async def _window(store: SQLiteStore, user: str, session: str, limit: int) -> list[str]:
    return [m.content for m in (await store.snapshot(user, session, limit=limit)).messages]


async def test_a_busy_scopes_turns_read_no_messages_after_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = CountedReads(monkeypatch)
    async with SQLiteStore(tmp_path / "t.db") as store:
        agent = Agent(
            model=FunctionModel(lambda m, t: ModelResponse(f"reply {len(m)}")),
            store=store,
            history_window=4,
        )
        for n in range(6):
            await agent.arun(f"turn {n}", user_id="alice")
        assert reads.count == 1  # the first turn's (an empty scope's) read only
        seen = await _window(store, "alice", "default", 4)
    assert seen == ["turn 4", "reply 5", "turn 5", "reply 5"]  # the model saw 4 + 1 messages
    async with SQLiteStore(tmp_path / "t.db", window_cache=0) as plain:
        assert await _window(plain, "alice", "default", 4) == seen


async def test_a_budget_set_after_the_window_was_cached_refuses_the_next_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn of a user without a budget override reads its scope's row and the fact that
    there is no override in one statement; an override set since, here or by another
    process, is seen, and the user's usage is read with it."""
    reads = CountedReads(monkeypatch)
    path = tmp_path / "t.db"
    async with SQLiteStore(path) as store, SQLiteStore(path) as admin:
        agent = Agent(model=FunctionModel(lambda m, t: "ok"), store=store, history_window=4)
        for n in range(3):
            await agent.arun(f"turn {n}", user_id="alice")
        assert reads.count == 1  # the window cached since the first turn
        await admin.set_budget("alice", Budget(requests_per_day=4))
        await agent.arun("turn 3", user_id="alice")  # the 4th request of the day
        with pytest.raises(BudgetExceeded):
            await agent.arun("turn 4", user_id="alice")
        await admin.set_budget("alice", None)
        output = await agent.arun("turn 5", user_id="alice")
        assert [m.content for m in output.messages] == ["turn 5", "ok"]
        assert reads.count == 1  # the window stayed cached through all of it
        assert await _window(store, "alice", "default", 4) == ["turn 3", "ok", "turn 5", "ok"]


async def test_a_write_by_another_process_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with SQLiteStore(path) as mine, SQLiteStore(path) as other:
        await mine.add_many([Message.user("one"), Message.assistant("two")], user_id="u")
        assert await _window(mine, "u", "default", 20) == ["one", "two"]
        await other.add(Message.user("three"), user_id="u")
        assert await _window(mine, "u", "default", 20) == ["one", "two", "three"]
        await mine.add(Message.assistant("four"), user_id="u")  # found the row changed
        assert await _window(mine, "u", "default", 2) == ["three", "four"]


async def test_a_session_deleted_and_written_again_elsewhere_is_never_given_from_memory(
    tmp_path: Path,
) -> None:
    """The new session has the old one's row id, message count and write time (a frozen
    clock): only the row's version tells them apart."""
    path, clock = tmp_path / "t.db", FakeClock()
    async with SQLiteStore(path, clock=clock) as mine, SQLiteStore(path, clock=clock) as other:
        await mine.add_many([Message.user("secret"), Message.assistant("kept")], user_id="u")
        assert await _window(mine, "u", "default", 20) == ["secret", "kept"]
        before = _row(path)
        await other.clear("u")
        await other.add_many([Message.user("new"), Message.assistant("start")], user_id="u")
        after = _row(path)
        assert before[:3] == after[:3]  # same scope_id, message_count, updated_at
        assert before[3] != after[3]
        assert await _window(mine, "u", "default", 20) == ["new", "start"]


def _row(path: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect(path)
    try:
        row: tuple[Any, ...] = conn.execute(
            "SELECT scope_id, message_count, updated_at, version FROM scopes"
        ).fetchone()
        return row
    finally:
        conn.close()


async def test_a_write_of_an_older_tenantry_without_a_version_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with SQLiteStore(path) as store:
        await store.add(Message.user("one"), user_id="u")
        assert await _window(store, "u", "default", 20) == ["one"]
        conn = sqlite3.connect(path, isolation_level=None)  # as schema version 4 wrote a turn
        conn.execute(
            "UPDATE scopes SET message_count = message_count + 1, updated_at = updated_at + 1"
        )
        conn.execute(
            "INSERT INTO messages (scope_id, id, role, content, created_at) "
            "VALUES (1, 'old-1', 'assistant', 'from 4', 1)"
        )
        conn.close()
        assert await _window(store, "u", "default", 20) == ["one", "from 4"]


async def test_a_refused_write_leaves_the_window_as_the_file_has_it(tmp_path: Path) -> None:
    record = IdempotencyRecord("k", "default", request_hash("default", "hi"), "{}", 1e12)
    async with SQLiteStore(tmp_path / "t.db") as store:
        await store.add_many([Message.user("hi")], user_id="u", idempotency=record)
        assert await _window(store, "u", "default", 20) == ["hi"]
        with pytest.raises(IdempotencyKeyReused):
            await store.add_many([Message.user("again")], user_id="u", idempotency=record)
        assert await _window(store, "u", "default", 20) == ["hi"]


async def test_the_cache_keeps_at_most_its_capacity_of_scopes(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "t.db", window_cache=3) as store:
        for n in range(8):
            await store.add(Message.user(f"m{n}"), user_id=f"user-{n}")
            assert await _window(store, f"user-{n}", "default", 20) == [f"m{n}"]
        windows = store._windows
        assert windows is not None
        assert len(windows) == 3
        for n in range(8):  # evicted ones are read again
            assert await _window(store, f"user-{n}", "default", 20) == [f"m{n}"]
    with pytest.raises(InvalidInput):
        SQLiteStore(tmp_path / "u.db", window_cache=-1)


@pytest.mark.parametrize("seed", range(4))
async def test_windows_always_match_the_file_under_random_writes_and_deletions(
    tmp_path: Path, seed: int
) -> None:
    """Two caching stores (two processes) write, delete and read three users' sessions in a
    random order with a frozen clock (write times never tell writes apart); every window a
    caching store gives equals what a store without a cache reads from the file then."""
    rng = random.Random(seed)
    path, clock = tmp_path / "t.db", FakeClock()
    caps = [None, 3][seed % 2]
    stores = [SQLiteStore(path, clock=clock, max_messages=caps) for _ in range(2)]
    truth = SQLiteStore(path, clock=clock, max_messages=caps, window_cache=0)
    scopes = [(u, s) for u in ("alice", "bob", "carol") for s in ("default", "work")]
    written = 0
    try:
        for _ in range(400):
            store, (user, session) = rng.choice(stores), rng.choice(scopes)
            action = rng.random()
            if action < 0.45:
                batch = [Message.user(f"m{written + i}") for i in range(rng.randint(1, 3))]
                written += len(batch)
                await store.add_many(batch, user_id=user, session_id=session)
            elif action < 0.5:
                await store.clear(user, session)
            elif action < 0.52:
                await store.clear(user)
            elif action < 0.53:
                await store.set_state({"n": written}, user_id=user, session_id=session)
            elif action < 0.56:  # a turn's read below then needs this user's usage, or not
                budget = rng.choice([None, Budget(requests_per_day=1000)])
                await store.set_budget(user, budget)
            elif action < 0.78:
                limit = rng.choice([1, 2, 5, 20])
                got = await store.snapshot(user, session, limit=limit)
                want = await truth.snapshot(user, session, limit=limit)
                assert got == want, (user, session, limit)
            else:  # as a turn reads: with the admission, its usage only under an override
                limit = rng.choice([1, 2, 5, 20])
                turn = {"limit": limit, "now": clock(), "budgeted_only": True}
                got_turn = await store.snapshot_and_admission(user, session, **turn)
                want_turn = await truth.snapshot_and_admission(user, session, **turn)
                assert got_turn == want_turn, (user, session, limit)
    finally:
        for s in [*stores, truth]:
            await s.close()


async def test_a_version_4_file_is_upgraded_and_its_rows_get_versions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    async with SQLiteStore(path) as first:
        await first.add(Message.user("written by version 4"), user_id="u")
    conn = sqlite3.connect(path, isolation_level=None)  # what version 4 looked like
    conn.execute("ALTER TABLE scopes DROP COLUMN version")
    conn.execute("UPDATE tenantry_schema SET version = 4")
    conn.close()
    async with SQLiteStore(path) as store:
        assert await _window(store, "u", "default", 20) == ["written by version 4"]
        await store.add(Message.assistant("and by 5"), user_id="u")
        assert await _window(store, "u", "default", 20) == ["written by version 4", "and by 5"]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM tenantry_schema").fetchall() == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION >= 5  # version 5 brought the scope versions
    assert conn.execute("SELECT version FROM scopes").fetchone()[0] != 0  # set by the write
    conn.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_worker_draws_other_versions_than_its_parent() -> None:
    """Workers forked from one server (uvicorn --workers, gunicorn) write one file: their
    scope versions must not repeat each other's."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next versions, then exit at once
        os.write(write, " ".join(str(new_version()) for _ in range(4)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = [int(v) for v in os.read(read, 4096).split()]
    os.close(read)
    os.close(write)
    mine = [new_version() for _ in range(4)]
    assert len(child) == 4
    assert not set(child) & set(mine)
