"""Memory search latency: does it stay flat in other users' memories, and how fast is it?

For each backend (memory, SQLite, PostgreSQL, Redis), one user ("me") holds 10, 1,000 or
10,000 memories, and the store holds 10 or 100,000 memories of other users (10 per user), all
written with the same 500-word vocabulary, so a plain full-text index would share every
posting list between users. We time `search_memories(two-word query, limit=5)` for "me".
Other users' memories (and "me"'s, past the first few) are bulk-loaded straight into the
backend's tables or keys, exactly as the store writes them, as bench/stores.py does for its
growth axis; on SQLite the full-text index is then merged into one segment in both setups,
as FTS5's automerge does over time.

Side by side, with the same data and offline: agno's memory read path
(`MemoryManager.get_user_memories`, what its agent puts in the prompt: every memory of the
user) on `SqliteDb`, and LangGraph's `InMemoryStore.search` with an index (semantic, the
vectors of a deterministic bag-of-words embedder), next to tenantry's `InMemoryStore` given
the same vectors. LangGraph's `PostgresStore` is not measured: it needs
langgraph-checkpoint-postgres (not in the bench extra) and pgvector for search.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import Config, Report, summary_ms, table
from tenantry import InMemoryStore, SQLiteStore
from tenantry.storage.base import Store
from tests.support.fake_openai import bag_of_words

BACKENDS = ("memory", "sqlite", "postgres", "redis")
VOCABULARY = [f"topic{i}" for i in range(500)]
DIMENSIONS = 64
TARGET_RATIO = 1.1
TARGET_P50_MS = 2.0


def _fact(rng: random.Random, n: int) -> str:
    a, b, c = rng.sample(VOCABULARY, 3)
    return f"The user mentioned {a}, {b} and {c} on day {n}"


def _facts(user: str, count: int, seed: int) -> Iterator[tuple[str, str, int]]:
    """(user, text, n) of `count` memories."""
    rng = random.Random(seed)
    for n in range(count):
        yield user, _fact(rng, n), n


def _others(count: int) -> Iterator[tuple[str, str, int]]:
    """`count` memories of other users, 10 each."""
    for start in range(0, count, 10):
        yield from _facts(f"other-{start // 10}", min(10, count - start), start)


# --- bulk loading, straight into each backend's layout -----------------------------------------


async def _load(store: Store, rows: list[tuple[str, str, int]], backend: str) -> None:
    if backend == "memory":
        for user, text, _ in rows:
            await store.add_memory(text, user_id=user)
    elif backend == "sqlite":
        await _load_sqlite(store, rows)
    elif backend == "postgres":
        await _load_postgres(store, rows)
    else:
        await _load_redis(store, rows)


async def _load_sqlite(store: Any, rows: list[tuple[str, str, int]]) -> None:
    from tenantry.storage.sqlite_memories import FIELDS, _terms

    def load(conn: sqlite3.Connection) -> None:
        for user, text, n in rows:
            (seq,) = conn.execute(
                f"INSERT INTO memories (stamp, {FIELDS}) VALUES "
                "((SELECT coalesce(max(stamp), 0) + 1 FROM memories WHERE user_id = ?),"
                " ?, ?, ?, ?, ?, 1, NULL, NULL) RETURNING seq",
                (user, uuid.uuid4().hex, user, text, float(n), float(n)),
            ).fetchone()
            conn.execute(
                "INSERT INTO memory_terms (rowid, terms) VALUES (?, ?)", (seq, _terms(user, text))
            )
        conn.execute("INSERT INTO memory_terms (memory_terms) VALUES ('optimize')")

    await store._write(load)


async def _load_postgres(store: Any, rows: list[tuple[str, str, int]]) -> None:
    import psycopg

    from tenantry.storage.postgres_memories import _tsvector

    await store.ping()
    schema = f'"{store.schema}"'
    async with await psycopg.AsyncConnection.connect(store._db.url, autocommit=True) as conn:
        cur = await conn.execute(f"SELECT coalesce(max(stamp), 0) FROM {schema}.memories")
        (base,) = await cur.fetchone() or (0,)
        async with (
            conn.cursor() as cursor,
            cursor.copy(
                f"COPY {schema}.memories (user_id, memory_id, stamp, text, terms, created_at,"
                " updated_at, version) FROM STDIN"
            ) as copy,
        ):
            for i, (user, text, n) in enumerate(rows):
                row = (user, uuid.uuid4().hex, base + i + 1, text, _tsvector(user, text))
                await copy.write_row((*row, float(n), float(n), 1))
        await conn.execute(
            f"INSERT INTO {schema}.memory_users (user_id, memory_count, next_stamp)"
            f" SELECT user_id, count(*), max(stamp) FROM {schema}.memories GROUP BY user_id"
            " ON CONFLICT (user_id) DO UPDATE SET memory_count = excluded.memory_count,"
            " next_stamp = excluded.next_stamp"
        )
        await conn.execute(f"ANALYZE {schema}.memories")


async def _load_redis(store: Any, rows: list[tuple[str, str, int]]) -> None:
    from tenantry.storage.redis_memories import _encode
    from tenantry.storage.search import tokens
    from tenantry.types import Memory

    client = store._ready()
    for start in range(0, len(rows), 2000):
        async with client.pipeline(transaction=False) as pipe:
            for user, text, n in rows[start : start + 2000]:
                keys = store._memory_keys(user)
                memory_id = uuid.uuid4().hex
                stamp = 1_000_000 + start + n  # after anything added through the store
                memory = Memory(memory_id, user, text, float(n), float(n))
                pipe.hset(keys.memories, memory_id, _encode(memory))
                terms = f"{memory_id} {stamp} {' '.join(tokens(text))}"
                pipe.hset(keys.terms, memory_id, terms)
                pipe.zadd(keys.order, {memory_id: stamp})
            await pipe.execute()


# --- measuring ---------------------------------------------------------------------------------


def _queries(count: int) -> list[str]:
    rng = random.Random(99)
    pairs = (rng.sample(VOCABULARY, 2) for _ in range(count))
    return [f"what about {a} and {b}?" for a, b in pairs]


async def _time(call: Callable[[str], Awaitable[object]], queries: list[str]) -> dict[str, float]:
    for query in queries[:5]:  # warm up: threads, connections, plans, caches
        await call(query)
    samples = []
    for query in queries:
        started = time.perf_counter()
        await call(query)
        samples.append(time.perf_counter() - started)
    return summary_ms(samples)


@contextmanager
def _tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-") as tmp:
        yield Path(tmp)


async def _open(backend: str, config: Config, tmp: Path, tag: str) -> Store:
    namespace = f"tenantry_bench_{uuid.uuid4().hex[:8]}"
    if backend == "memory":
        return InMemoryStore(max_memories=None)
    if backend == "sqlite":
        return SQLiteStore(tmp / f"{tag}.db", max_memories=None)
    if backend == "postgres":
        from tenantry.storage.postgres import PostgresStore

        return PostgresStore(config.postgres_url or "", schema=namespace, max_memories=None)
    from tenantry.storage.redis import RedisStore

    return RedisStore(config.redis_url or "", prefix=namespace, max_memories=None)


async def _drop(backend: str, store: Store) -> None:
    await store.clear_all()  # the memories of every user: the registry / truncate / delete
    await store.close()
    if backend == "postgres":
        import psycopg

        url, schema = store._db.url, store.schema  # type: ignore[attr-defined]
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def measure_backend(backend: str, config: Config, sizes: dict[str, Any]) -> dict[str, Any]:
    """p50 / p99 per (own, others); own memories grow in place, in both stores."""
    queries = _queries(sizes["queries"])
    results: dict[str, Any] = {}
    with _tmp() as tmp:
        for others in sizes["others"]:
            store = await _open(backend, config, tmp, f"others{others}")
            try:
                await store.add_memory("first through the store", user_id="me")
                await _load(store, list(_others(others)), backend)
                have = 1
                for own in sizes["own"]:
                    await _load(store, list(_facts("me", own - have, 1000 + have)), backend)
                    have = own

                    async def search(q: str, store: Store = store) -> object:
                        return await store.search_memories(q, user_id="me", limit=5)

                    figures = await _time(search, queries)
                    results.setdefault(str(own), {})[str(others)] = figures
                    print(f"memories: {backend} own={own} others={others}: {figures}", flush=True)
            finally:
                await _drop(backend, store)
    return results


# --- peers -------------------------------------------------------------------------------------


def _embed(texts: list[str]) -> list[list[float]]:
    return [bag_of_words(text, DIMENSIONS) for text in texts]


async def measure_peers(sizes: dict[str, Any]) -> dict[str, Any]:
    queries = _queries(sizes["queries"])
    results: dict[str, Any] = {}
    for name, side in (
        ("tenantry InMemoryStore, semantic", _tenantry_semantic),
        ("LangGraph InMemoryStore, semantic", _langgraph),
        ("agno MemoryManager.get_user_memories (SqliteDb)", _agno),
    ):
        try:
            results[name] = await side(sizes, queries)
        except ImportError as exc:
            results[name] = {"skipped": f"not installed: {exc}"}
        print(f"memories: {name}: {results[name]}", flush=True)
    return results


async def _tenantry_semantic(sizes: dict[str, Any], queries: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for others in sizes["others"]:
        store = InMemoryStore(max_memories=None)
        for user, text, _ in _others(others):
            await store.add_memory(text, user_id=user, embedding=_embed([text])[0])
        have = 0
        for own in sizes["own"]:
            for user, text, _ in _facts("me", own - have, 1000 + have):
                await store.add_memory(text, user_id=user, embedding=_embed([text])[0])
            have = own

            async def search(q: str, store: Store = store) -> object:
                vector = _embed([q])[0]
                return await store.search_memories(q, user_id="me", limit=5, embedding=vector)

            out.setdefault(str(own), {})[str(others)] = await _time(search, queries)
    return out


async def _langgraph(sizes: dict[str, Any], queries: list[str]) -> dict[str, Any]:
    from langgraph.store.base import PutOp
    from langgraph.store.memory import InMemoryStore as GraphStore

    out: dict[str, Any] = {}
    for others in sizes["others"]:
        store = GraphStore(index={"dims": DIMENSIONS, "embed": _embed, "fields": ["text"]})

        def put(rows: list[tuple[str, str, int]], store: Any = store) -> None:
            for start in range(0, len(rows), 1000):
                store.batch(
                    PutOp(("memories", user), uuid.uuid4().hex, {"text": text})
                    for user, text, _ in rows[start : start + 1000]
                )

        put(list(_others(others)))
        have = 0
        for own in sizes["own"]:
            put(list(_facts("me", own - have, 1000 + have)))
            have = own

            async def search(q: str, store: Any = store) -> object:
                return store.search(("memories", "me"), query=q, limit=5)

            out.setdefault(str(own), {})[str(others)] = await _time(search, queries)
    return out


async def _agno(sizes: dict[str, Any], queries: list[str]) -> dict[str, Any]:
    import os

    os.environ["AGNO_TELEMETRY"] = "false"
    from agno.db.schemas.memory import UserMemory
    from agno.db.sqlite import SqliteDb
    from agno.memory.manager import MemoryManager

    out: dict[str, Any] = {}
    with _tmp() as tmp:
        for others in sizes["others"]:
            db = SqliteDb(db_file=str(tmp / f"agno{others}.db"))
            manager = MemoryManager(db=db)

            def put(rows: list[tuple[str, str, int]], db: Any = db) -> None:
                for start in range(0, len(rows), 1000):
                    db.upsert_memories(
                        [
                            UserMemory(memory=text, memory_id=uuid.uuid4().hex, user_id=user)
                            for user, text, _ in rows[start : start + 1000]
                        ]
                    )

            put(list(_others(others)))
            have = 0
            for own in sizes["own"]:
                put(list(_facts("me", own - have, 1000 + have)))
                have = own

                async def read(q: str, manager: Any = manager) -> object:
                    return manager.get_user_memories(user_id="me")

                out.setdefault(str(own), {})[str(others)] = await _time(read, queries)
    return out


# --- report ------------------------------------------------------------------------------------


def _rows(name: str, figures: dict[str, Any], sizes: dict[str, Any]) -> list[list[Any]]:
    few, many = (str(x) for x in sizes["others"])
    rows = []
    for own in (str(x) for x in sizes["own"]):
        a, b = figures[own][few], figures[own][many]
        ratio = round(b["p50_ms"] / a["p50_ms"], 2) if a["p50_ms"] else 0.0
        rows.append([name, int(own), a["p50_ms"], b["p50_ms"], b["p99_ms"], ratio])
    return rows


def markdown(results: dict[str, Any], sizes: dict[str, Any]) -> list[str]:
    few, many = sizes["others"]
    header = [
        "store",
        "the user's memories",
        f"p50 ms, {few:,} others'",
        f"p50 ms, {many:,} others'",
        f"p99 ms, {many:,} others'",
        "ratio",
    ]
    rows, peer_rows, verdicts = [], [], []
    for name, figures in results["backends"].items():
        if "skipped" in figures:
            rows.append([name, "-", figures["skipped"], "", "", ""])
            continue
        mine = _rows(name, figures, sizes)
        rows += mine
        worst = max(row[5] for row in mine)
        flat = f"{name}: flat in other users (ratio <= {TARGET_RATIO})"
        verdicts.append([flat, f"{worst:.2f}", worst <= TARGET_RATIO])
        if name in ("sqlite", "postgres"):
            p50 = figures[str(sizes["own"][-1])][str(many)]["p50_ms"]
            verdicts.append(
                [
                    f"{name}: p50 < {TARGET_P50_MS:g} ms at {sizes['own'][-1]:,} memories",
                    f"{p50:.3f} ms",
                    p50 < TARGET_P50_MS,
                ]
            )
    for name, figures in results["peers"].items():
        if "skipped" in figures:
            peer_rows.append([name, "-", figures["skipped"], "", "", ""])
        else:
            peer_rows += _rows(name, figures, sizes)
    return [
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f'Each figure: {sizes["queries"]} searches `search_memories("what about topicA and '
        'topicB?", limit=5)` of one user, one after the other, after 5 to warm up; ratio is '
        f"p50 with {many:,} other users' memories ÷ p50 with {few:,}.",
        "",
        "## Keyword search per backend",
        "",
        *table(header, rows),
        "",
        "## Side by side (same data, offline)",
        "",
        "agno's agent reads every memory of the user into its prompt "
        "(`get_user_memories`), there is no query; LangGraph's `InMemoryStore` search walks "
        "every namespace of the store, then ranks the user's items by cosine; tenantry's "
        "semantic search reads the user's vectors only.",
        "",
        *table(header, peer_rows),
        "",
        "## Where we stand",
        "",
        *table(
            ["target", "measured", "met"],
            [[t, m, "yes" if ok else "no"] for t, m, ok in verdicts],
        ),
    ]


def skip_reason(name: str, config: Config) -> str | None:
    if name == "postgres" and not config.postgres_url:
        return "skipped: set TENANTRY_BENCH_POSTGRES_URL (or TENANTRY_TEST_POSTGRES_URL)"
    if name == "redis" and not config.redis_url:
        return "skipped: set TENANTRY_BENCH_REDIS_URL (or TENANTRY_TEST_REDIS_URL)"
    return None


def run(config: Config) -> list[Report]:
    sizes = {
        "own": config.pick([10, 1_000, 10_000], [10, 100]),
        "others": config.pick([10, 100_000], [10, 1_000]),
        "queries": config.pick(300, 20),
    }

    async def main() -> dict[str, Any]:
        backends: dict[str, Any] = {}
        for name in BACKENDS:
            reason = skip_reason(name, config)
            started = time.perf_counter()
            backends[name] = (
                {"skipped": reason} if reason else await measure_backend(name, config, sizes)
            )
            print(f"memories: {name} done in {time.perf_counter() - started:.1f} s", flush=True)
        return {"backends": backends, "peers": await measure_peers(sizes)}

    results = asyncio.run(main())
    workload = {
        **sizes,
        "limit": 5,
        "vocabulary": len(VOCABULARY),
        "words_per_memory": 3,
        "other_memories_per_user": 10,
        "embedding_dimensions": DIMENSIONS,
    }
    return [
        Report(
            name="memories",
            title="Memory search: latency against other users' memories",
            workload=workload,
            results=results,
            lines=markdown(results, sizes),
        )
    ]
