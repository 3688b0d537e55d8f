"""Fixtures shared by every test: a store factory parametrised over every backend.

A backend is one entry in BACKENDS: a function that, given a per-test namespace (a tmp dir,
a schema name, a key prefix ...), gives a new store over that namespace. Calling `make_store`
twice in one test gives two stores over the same data, which is how reopening is tested.

PostgreSQL and Redis run when TENANTRY_TEST_POSTGRES_URL / TENANTRY_TEST_REDIS_URL are set
(`.ci/run` sets both); each test then gets its own schema / key prefix, dropped afterwards.
Unset, their tests skip and say which variable to set.

Redis Cluster ("redis_cluster") is one more backend, for the store's own tests (tests/storage
parametrises over it, see its conftest): TENANTRY_TEST_REDIS_CLUSTER_URL names a cluster to use
(redis+cluster://host:port,...); unset, the session starts a private one (3 primaries + 3
replicas, `tests.support.redis_cluster`), or skips without redis-server.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantry.storage.base import Store
from tenantry.storage.memory import InMemoryStore
from tenantry.storage.sqlite import SQLiteStore

MakeStore = Callable[..., Store]


class FakeClock:
    """An injectable clock: time moves only when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _memory(namespace: Path, **options: Any) -> Store:
    return InMemoryStore(**options)


def _sqlite(namespace: Path, **options: Any) -> Store:
    return SQLiteStore(namespace / "tenantry.db", **options)


POSTGRES_URL_VARIABLE = "TENANTRY_TEST_POSTGRES_URL"
REDIS_URL_VARIABLE = "TENANTRY_TEST_REDIS_URL"


def server_url(variable: str) -> str:
    """Give the test server URL in `variable`, or skip the test saying what to set."""
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} is not set; set it to run this test against a real server")
    return url


def namespace_name(namespace: Path) -> str:
    """Give a short name, unique to this test, for a schema or a key prefix."""
    return "tenantry_test_" + hashlib.blake2b(str(namespace).encode(), digest_size=8).hexdigest()


def _postgres(namespace: Path, **options: Any) -> Store:
    from tenantry.storage.postgres import PostgresStore

    url = server_url(POSTGRES_URL_VARIABLE)
    return PostgresStore(url, schema=namespace_name(namespace), **options)


async def drop_postgres_schema(schema: str) -> None:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(os.environ[POSTGRES_URL_VARIABLE], autocommit=True)
    async with conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _redis(namespace: Path, **options: Any) -> Store:
    from tenantry.storage.redis import RedisStore

    url = server_url(REDIS_URL_VARIABLE)
    return RedisStore(url, prefix=namespace_name(namespace), **options)


async def delete_redis_prefix(prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(os.environ[REDIS_URL_VARIABLE])
    async with client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])


REDIS_CLUSTER_URL_VARIABLE = "TENANTRY_TEST_REDIS_CLUSTER_URL"
CLUSTER_BACKEND = "redis_cluster"


def _redis_cluster(namespace: Path, **options: Any) -> Store:
    from tenantry.storage.redis import RedisStore

    url = os.environ[REDIS_CLUSTER_URL_VARIABLE].replace("+cluster", "", 1)
    return RedisStore(url, cluster=True, prefix=namespace_name(namespace), **options)


async def delete_redis_cluster_prefix(prefix: str, url: str | None = None) -> None:
    """Delete every key under `prefix` on the test cluster (every primary, by SCAN)."""
    from tenantry.storage.redis_client import connect

    url = (url or os.environ[REDIS_CLUSTER_URL_VARIABLE]).replace("+cluster", "", 1)
    client = connect(url, cluster=True, pool_size=10)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            async with client.pipeline(transaction=False) as pipe:
                for key in keys[start : start + 1000]:
                    pipe.delete(key)
                await pipe.execute()
    finally:
        await client.aclose()


async def _cleanup_redis_cluster(namespace: Path) -> None:
    await delete_redis_cluster_prefix(namespace_name(namespace))


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """The test cluster's URL: TENANTRY_TEST_REDIS_CLUSTER_URL, or a private cluster's, which
    runs until the session ends."""
    given = os.environ.get(REDIS_CLUSTER_URL_VARIABLE)
    if given:
        yield given
        return
    from tests.support.redis_cluster import redis_cluster

    with redis_cluster() as cluster:
        os.environ[REDIS_CLUSTER_URL_VARIABLE] = cluster.url
        try:
            yield cluster.url
        finally:
            del os.environ[REDIS_CLUSTER_URL_VARIABLE]


async def _cleanup_postgres(namespace: Path) -> None:
    await drop_postgres_schema(namespace_name(namespace))


async def _cleanup_redis(namespace: Path) -> None:
    await delete_redis_prefix(namespace_name(namespace))


BACKENDS: dict[str, Callable[..., Store]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
    "redis": _redis,
    CLUSTER_BACKEND: _redis_cluster,
}
CLEANUPS: dict[str, Callable[[Path], Awaitable[None]]] = {
    "postgres": _cleanup_postgres,
    "redis": _cleanup_redis,
    CLUSTER_BACKEND: _cleanup_redis_cluster,
}
"""What to drop after a test that made stores of that backend (their data outlives them)."""
PERSISTENT = {"sqlite", "postgres", "redis", CLUSTER_BACKEND}
"""Backends whose data outlives the store object (a second `make_store()` sees it)."""


@pytest.fixture(params=sorted(set(BACKENDS) - {CLUSTER_BACKEND}))
def backend(request: pytest.FixtureRequest) -> str:
    """Every backend but Redis Cluster (tests/storage overrides this with every one)."""
    return str(request.param)


@pytest.fixture
async def make_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[MakeStore]:
    created: list[Store] = []
    if backend == CLUSTER_BACKEND:
        request.getfixturevalue("redis_cluster_url")

    def make(**options: Any) -> Store:
        store = BACKENDS[backend](tmp_path, **options)
        created.append(store)
        return store

    yield make
    for store in created:
        await store.close()
    if created and backend in CLEANUPS:
        await CLEANUPS[backend](tmp_path)


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    return make_store()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
