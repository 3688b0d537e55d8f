"""The database goes away while `tenantry serve` runs: every request during the outage gets a
quick 503 with Retry-After (never a 500, never a hang), the server recovers by itself once the
database is back (it is never restarted), and no acknowledged turn is lost.

The databases here are private instances started for this module (see `faults.py`), never the
shared ones, which other tests use at the same time: PostgreSQL, stopped cleanly ("fast") or
as in a crash ("immediate"), and Redis with `appendonly yes` + `appendfsync always`, killed
with SIGKILL, so that what it acknowledged must survive its restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import namespace_name
from tests.support.reliability.faults import (
    PrivatePostgres,
    PrivateRedis,
    private_postgres,
    private_redis,
    through_outage,
)

pytestmark = pytest.mark.slow

REQUEST_BOUND = 10.0
"""No request may take longer than this, outage or not (seconds)."""
RECOVERY_BOUND = 5.0
"""/readyz must answer 200 within this many seconds of the database answering again."""
OUTAGE = 8.0
"""Seconds the database stays down: long enough for a connection pool to stop retrying
often (psycopg_pool backs off 1, 2, 4 ... seconds) and for a queued request to hang."""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def redis() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_going_away_gives_503_and_the_server_recovers_by_itself(
    postgres: PrivatePostgres, mode: str, tmp_path: Path
) -> None:
    url = f"{postgres.url}?schema={namespace_name(tmp_path)}"
    report = await through_outage(
        url,
        tmp_path,
        stop=lambda: postgres.stop(mode),
        start=postgres.start,
        outage=OUTAGE,
        request_bound=REQUEST_BOUND,
        recovery_bound=RECOVERY_BOUND,
    )
    print(f"\npostgres ({mode} stop): {report.summary()}")
    assert report.problems == [], "\n".join(report.problems[:30])


async def test_redis_crashing_gives_503_and_loses_no_acknowledged_turn(
    redis: PrivateRedis, tmp_path: Path
) -> None:
    url = f"{redis.url}?prefix={namespace_name(tmp_path)}&lock_ttl=1"
    report = await through_outage(
        url,
        tmp_path,
        stop=redis.crash,
        start=redis.start,
        outage=OUTAGE,
        request_bound=REQUEST_BOUND,
        recovery_bound=RECOVERY_BOUND,
    )
    print(f"\nredis (kill -9, appendfsync always): {report.summary()}")
    assert report.problems == [], "\n".join(report.problems[:30])
