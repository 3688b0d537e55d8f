"""Crash durability: kill -9 a real `tenantry serve` at random moments under 200 concurrent
chat clients, restart it on the same store each time, and check that every acknowledged turn
is stored whole with the reply its client got, that no half turn exists, and that session
state matches the stored turns (see `crash.py` for exactly what is checked).

SQLite (a temp file), PostgreSQL (a schema of its own) and Redis (a key prefix of its own):
a tenantry process crash never loses an acknowledged turn on any of them. What a crash of the
Redis server itself loses depends on its persistence settings; `test_faults.py` restarts a
private Redis with `appendfsync always`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tenantry import Message, SQLiteStore
from tests.conftest import (
    CLEANUPS,
    POSTGRES_URL_VARIABLE,
    REDIS_URL_VARIABLE,
    namespace_name,
    server_url,
)
from tests.support.reliability.counting_server import STATE_KEY, reply_text
from tests.support.reliability.crash import (
    Ledger,
    Sent,
    check_stored,
    counting_server,
    crash_rounds,
    make_scopes,
    wait_ready,
)

pytestmark = pytest.mark.slow

KILLS = 6
MIN_KILLS = 5
CLIENTS = 200
SECONDS_PER_BACKEND = 45.0
"""Once MIN_KILLS kills are done, no new kill round starts past this (a slow machine runs
fewer rounds; every round run is checked in full)."""


def _with_query(url: str) -> str:
    return url + ("&" if "?" in url else "?")


@pytest.fixture(params=["sqlite", "postgres", "redis"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    backend = str(request.param)
    name = namespace_name(tmp_path)
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'crash.db'}"
        return
    if backend == "postgres":
        yield f"{_with_query(server_url(POSTGRES_URL_VARIABLE))}schema={name}"
    else:
        # A killed server's turn locks expire after lock_ttl; keep restarts quick.
        yield f"{_with_query(server_url(REDIS_URL_VARIABLE))}prefix={name}&lock_ttl=1"
    await CLEANUPS[backend](tmp_path)


async def test_kill_9_under_load_loses_no_acknowledged_turn_and_leaves_no_half_turn(
    store_url: str, tmp_path: Path
) -> None:
    report = await crash_rounds(
        store_url,
        tmp_path,
        kills=KILLS,
        clients=CLIENTS,
        seed=20251130,
        deadline=time.monotonic() + SECONDS_PER_BACKEND,
        min_kills=MIN_KILLS,
    )
    print(f"\n{store_url.split(':', 1)[0]}: {report.summary()}")
    assert report.problems == [], "\n".join(report.problems[:30])
    assert report.kills >= MIN_KILLS, report.summary()
    assert report.acknowledged >= 5 * report.kills, report.summary()
    assert all(r.in_flight_at_kill > 0 for r in report.rounds), "a kill fell outside the load"
    assert report.turns_stored >= report.acknowledged


async def test_the_check_finds_lost_half_and_unexplained_turns(tmp_path: Path) -> None:
    """The check above is not vacuous: each kind of damage it looks for is reported."""
    db = tmp_path / "check.db"
    (alice, bob) = scopes = make_scopes(2, 1)
    with counting_server(f"sqlite:///{db}", tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            await wait_ready(http)
            sent = []
            for seq in range(3):
                turn = Sent(0, alice, f"r0-c0-{seq} ü", time.monotonic())
                body = {"user_id": alice[0], "session_id": alice[1], "message": turn.text}
                response = await http.post("/v1/chat", json=body)
                turn.status, turn.reply = response.status_code, response.json()["reply"]
                sent.append(turn)
            clean = await check_stored(http, Ledger(), scopes, sent, [])
            assert clean.problems == []
            assert clean.new_turns == 3

            ghost = Sent(1, bob, "r0-c1-0 ü", 0.0, status=200, reply=reply_text(1, "r0-c1-0 ü"))
            lost = await check_stored(http, Ledger(), scopes, [*sent[:2], ghost], [])
            assert any("acknowledged turn(s) but no stored session" in p for p in lost.problems)
            assert any("never sent or refused" in p for p in lost.problems)
            explained = await check_stored(http, Ledger(), scopes, sent[:2], sent[2:])
            assert explained.problems == []
            assert explained.committed_unacknowledged == 1

            async with SQLiteStore(db) as store:  # damage written behind the server's back
                await store.add(Message.user("r0-c0-9 ü"), user_id=alice[0], session_id=alice[1])
                await store.set_state({STATE_KEY: 7}, user_id=bob[0], session_id=bob[1])
            damaged = await check_stored(http, Ledger(), scopes, sent, [])
            assert any("half or broken turn at message 12" in p for p in damaged.problems)
            assert any("state {'turns': 7} but 0 turns stored" in p for p in damaged.problems)
