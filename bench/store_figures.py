"""Store figures for the README and the issue note: append throughput and read latency.

For each backend (memory, sqlite, postgres, redis):

- append throughput: 1000 concurrent writers, each adding WRITES_PER_WRITER messages one
  `add` at a time to its own scope; messages per second over the whole run, the median of
  APPEND_RUNS runs;
- read latency: the median time of `get_messages(limit=50)` on a scope holding 10 messages
  and on one holding 100 000, with 10 000 other tenants (10 messages each) in the store.

PostgreSQL and Redis use TENANTRY_BENCH_POSTGRES_URL / TENANTRY_BENCH_REDIS_URL (falling back
to the TENANTRY_TEST_* variables) and are skipped when neither is set; each run uses its own
schema / key prefix and drops it afterwards. Results go to bench/results/store_figures.json
and .md. Run from the repository root:

    .venv/bin/python bench/store_figures.py [--backends memory,sqlite,postgres,redis]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tenantry
from tenantry import Message
from tenantry.storage.base import Store
from tenantry.storage.url import open_store

WRITERS = 1000
WRITES_PER_WRITER = 10
OTHER_TENANTS = 10_000
MESSAGES_PER_OTHER_TENANT = 10
BIG_SCOPE = 100_000
READS = 200
APPEND_RUNS = 3
"""Append runs per backend; the median is reported (the machine may be shared)."""
SETUP_CONCURRENCY = 50
RESULTS = Path(__file__).parent / "results"


def _url(name: str) -> str | None:
    return os.environ.get(f"TENANTRY_BENCH_{name}_URL") or os.environ.get(
        f"TENANTRY_TEST_{name}_URL"
    )


def _query(url: str) -> str:
    return url + ("&" if "?" in url else "?")


async def _bounded(jobs: list[Callable[[], Awaitable[None]]], limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(run(job) for job in jobs))


async def append_throughput(store: Store) -> float:
    """Messages per second with WRITERS concurrent writers, one message per call."""

    async def writer(n: int) -> None:
        for i in range(WRITES_PER_WRITER):
            await store.add(Message.user(f"writer {n} message {i}"), user_id=f"writer-{n}")

    started = time.perf_counter()
    await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    elapsed = time.perf_counter() - started
    return WRITERS * WRITES_PER_WRITER / elapsed


async def fill(store: Store) -> None:
    """10 000 other tenants, a scope of 10 and a scope of 100 000 messages."""

    def tenant(n: int) -> Callable[[], Awaitable[None]]:
        batch = [Message.user(f"tenant {n} message {i}") for i in range(MESSAGES_PER_OTHER_TENANT)]
        return lambda: store.add_many(batch, user_id=f"tenant-{n}")

    def big(start: int) -> Callable[[], Awaitable[None]]:
        batch = [Message.user(f"big message {i}") for i in range(start, start + 1000)]
        return lambda: store.add_many(batch, user_id="big")

    await _bounded([tenant(n) for n in range(OTHER_TENANTS)], SETUP_CONCURRENCY)
    for start in range(0, BIG_SCOPE, 1000):  # in order: the scope's history is sequential
        await big(start)()
    await store.add_many([Message.user(f"small {i}") for i in range(10)], user_id="small")
    assert await store.size("big") == BIG_SCOPE
    assert await store.size("small") == 10


async def median_read_ms(store: Store, user_id: str) -> float:
    timings = []
    for _ in range(READS):
        started = time.perf_counter()
        messages = await store.get_messages(user_id, limit=50)
        timings.append(time.perf_counter() - started)
        assert len(messages) == min(50, await store.size(user_id))
    return statistics.median(timings) * 1000


async def measure(name: str, url: str) -> dict[str, Any]:
    async with open_store(url) as store:
        print(f"{name}: appending ...", flush=True)
        runs = []
        for _ in range(APPEND_RUNS):
            await store.clear_all()
            runs.append(await append_throughput(store))
        await store.clear_all()
        print(f"{name}: filling {OTHER_TENANTS} tenants and a {BIG_SCOPE}-message scope ...")
        started = time.perf_counter()
        await fill(store)
        fill_seconds = time.perf_counter() - started
        small = await median_read_ms(store, "small")
        big = await median_read_ms(store, "big")
    figures = {
        "append_messages_per_s": round(statistics.median(runs)),
        "append_runs_messages_per_s": [round(run) for run in runs],
        "read50_median_ms_scope_of_10": round(small, 3),
        "read50_median_ms_scope_of_100000": round(big, 3),
        "fill_seconds": round(fill_seconds, 1),
    }
    print(f"{name}: {figures}", flush=True)
    return figures


async def _server_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    if pg := _url("POSTGRES"):
        import psycopg

        async with await psycopg.AsyncConnection.connect(pg) as conn:
            row = await (await conn.execute("SHOW server_version")).fetchone()
            versions["postgresql"] = str(row[0]) if row else "?"
    if rd := _url("REDIS"):
        from redis.asyncio import Redis

        async with Redis.from_url(rd) as client:
            versions["redis"] = str((await client.info("server"))["redis_version"])
    return versions


async def _drop(name: str, namespace: str) -> None:
    if name == "postgres":
        import psycopg

        async with await psycopg.AsyncConnection.connect(
            _url("POSTGRES") or "", autocommit=True
        ) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
    elif name == "redis":
        from redis.asyncio import Redis

        async with Redis.from_url(_url("REDIS") or "") as client:
            keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=5000)]
            for start in range(0, len(keys), 5000):
                await client.delete(*keys[start : start + 5000])


async def main(backends: list[str]) -> None:
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    namespace = f"tenantry_bench_{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        urls = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{tmp}/bench.db",
            "postgres": f"{_query(pg)}schema={namespace}" if (pg := _url("POSTGRES")) else None,
            "redis": f"{_query(rd)}prefix={namespace}" if (rd := _url("REDIS")) else None,
        }
        for name in backends:
            url = urls[name]
            if url is None:
                print(f"{name}: skipped, set TENANTRY_BENCH_{name.upper()}_URL")
                continue
            try:
                results[name] = await measure(name, url)
            finally:
                await _drop(name, namespace)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "python": platform.python_version(),
            "tenantry": tenantry.__version__,
            **await _server_versions(),
        },
        "workload": {
            "writers": WRITERS,
            "writes_per_writer": WRITES_PER_WRITER,
            "other_tenants": OTHER_TENANTS,
            "messages_per_other_tenant": MESSAGES_PER_OTHER_TENANT,
            "big_scope": BIG_SCOPE,
            "reads": READS,
        },
        "results": results,
    }
    _write(report)


def _write(report: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store_figures.json").write_text(json.dumps(report, indent=2) + "\n")
    machine = report["machine"]
    lines = [
        "# Store figures",
        "",
        f"Measured {report['date']} by `bench/store_figures.py` on {machine['platform']}, "
        f"{machine['cpus']} CPUs, Python {machine['python']}, tenantry {machine['tenantry']}"
        + "".join(
            f", {server} {machine[server]}"
            for server in ("postgresql", "redis")
            if server in machine
        )
        + " (servers on the same machine, over loopback); load average at the start "
        + ", ".join(str(x) for x in machine["load_average_at_start"])
        + " (a shared machine: the append figures vary from run to run, see the runs).",
        "",
        f"Append: {WRITERS} concurrent writers, {WRITES_PER_WRITER} single-message `add` calls "
        f"each, each writer its own scope; median of {APPEND_RUNS} runs. Read: median of "
        f"{READS} `get_messages(limit=50)` calls, with {OTHER_TENANTS} other tenants of "
        f"{MESSAGES_PER_OTHER_TENANT} messages each in the store (the scope of 10 returns 10 "
        "messages, the scope of 100 000 returns 50).",
        "",
        "| backend | append (messages/s, median) | append runs | read 50, scope of 10 (ms) | "
        "read 50, scope of 100 000 (ms) |",
        "|---|---:|---|---:|---:|",
    ]
    for name, figures in report["results"].items():
        lines.append(
            f"| {name} | {figures['append_messages_per_s']:,} | "
            f"{', '.join(f'{run:,}' for run in figures['append_runs_messages_per_s'])} | "
            f"{figures['read50_median_ms_scope_of_10']} | "
            f"{figures['read50_median_ms_scope_of_100000']} |"
        )
    (RESULTS / "store_figures.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="memory,sqlite,postgres,redis")
    asyncio.run(main(parser.parse_args().backends.split(",")))
