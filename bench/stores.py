"""Store throughput per backend, next to the raw driver doing the same writes and reads.

For each backend (memory, SQLite, PostgreSQL, Redis) and each number of concurrent callers
(1, 100, 1000), on one asyncio event loop:

- appends/s: every writer has its own scope and adds its messages one `add` call at a time
  (one call = one durable append); the raw baseline (`bench.raw_drivers`) writes the same
  messages one per round trip (one INSERT + commit, one RPUSH + LTRIM pipeline), and once
  more batched (executemany / one big pipeline per 1000 messages) as the driver's ceiling;
- reads/s: every reader reads the newest 50 messages of its own scope (which holds 60),
  `get_messages(limit=50)` against the raw SELECT / LRANGE that gives the same messages.

Each figure is the median of a few runs; tenantry and raw runs alternate, so drift on a shared
machine hits both. PostgreSQL and Redis are skipped (with the reason) when their URL is not
configured; each run uses its own schema / key prefix and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Config, Report, table
from bench.raw_drivers import RawMemory, RawPostgres, RawRedis, RawSQLite, RawStore, Row
from tenantry import InMemoryStore, Message, SQLiteStore
from tenantry.storage.base import Store

BACKENDS = ("memory", "sqlite", "postgres", "redis")
READ_LIMIT = 50
FILL = 60
"""Messages in each scope that readers read (more than READ_LIMIT)."""
REDIS_CAP = 10_000
"""max_messages of both Redis sides, so the raw LTRIM has its counterpart in tenantry's append
script; no scope ever gets near it, so nothing is trimmed."""
TARGET_RATIO = 0.70
TEXT = "a user message of about the length people type into a chat box, give or take: "

# Messages per measured run and backend: each of N writers writes max(2, total // N) of them
# (and each reader reads as often).
FULL_TOTAL = {"memory": 20_000, "sqlite": 2_000, "postgres": 1_000, "redis": 2_000}
SMOKE_TOTAL = {"memory": 200, "sqlite": 30, "postgres": 30, "redis": 30}


@dataclass(frozen=True)
class Side:
    """One thing measured: tenantry's store or a raw baseline, with its append and read."""

    name: str
    append: Callable[[str, Message], Awaitable[object]]
    read: Callable[[str], Awaitable[list[Any]]]


def tenantry_side(name: str, store: Store) -> Side:
    async def append(user_id: str, message: Message) -> None:
        await store.add(message, user_id=user_id)

    async def read(user_id: str) -> list[Any]:
        return await store.get_messages(user_id, limit=READ_LIMIT)

    return Side(name, append, read)


def raw_side(name: str, raw: RawStore) -> Side:
    async def append(user_id: str, message: Message) -> None:
        await raw.append(user_id, "default", message)

    async def read(user_id: str) -> list[Any]:
        return await raw.read(user_id, "default", READ_LIMIT)

    return Side(name, append, read)


async def concurrent_rate(
    callers: int, each: int, op: Callable[[int, int], Awaitable[object]]
) -> float:
    """Operations per second of `callers` concurrent tasks, each awaiting `op(n, i)` for i in
    range(each), one after the other."""

    async def caller(n: int) -> None:
        for i in range(each):
            await op(n, i)

    started = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(callers)))
    return callers * each / (time.perf_counter() - started)


def messages_for(callers: int, each: int, tag: str) -> list[list[Message]]:
    return [
        [Message.user(f"{TEXT}{tag} writer {n} message {i}") for i in range(each)]
        for n in range(callers)
    ]


async def append_rate(side: Side, callers: int, each: int, tag: str) -> float:
    """Messages/s of `callers` writers, each adding `each` messages to its own scope."""
    batch = messages_for(callers, each, tag)
    users = [f"{tag}-w{n}" for n in range(callers)]
    return await concurrent_rate(callers, each, lambda n, i: side.append(users[n], batch[n][i]))


async def read_rate(side: Side, callers: int, each: int) -> float:
    """Reads/s of `callers` readers, each reading its own filled scope `each` times."""
    got = await side.read("fill-0")
    assert len(got) == READ_LIMIT, f"{side.name} read {len(got)} messages, not {READ_LIMIT}"
    return await concurrent_rate(callers, each, lambda n, i: side.read(f"fill-{n}"))


async def fill(store: Store, raw: RawStore, extras: list[Store], scopes: int) -> None:
    """Give `scopes` scopes FILL messages each, in every store."""
    for n in range(scopes):
        messages = [Message.user(f"{TEXT}fill {n} message {i}") for i in range(FILL)]
        for target in [store, *extras]:
            await target.add_many(messages, user_id=f"fill-{n}")
        await raw.append_batched([(f"fill-{n}", "default", m) for m in messages])


def median(values: list[float]) -> float:
    return round(statistics.median(values))


async def measure_level(
    sides: list[Side], callers: int, total: int, runs: int, level_tag: str
) -> dict[str, Any]:
    """Append and read rates of every side at one concurrency, medians of `runs` runs, the
    order of sides rotating from run to run."""
    each = max(2, total // callers)
    appends: dict[str, list[float]] = {side.name: [] for side in sides}
    reads: dict[str, list[float]] = {side.name: [] for side in sides}
    for run in range(runs):
        order = sides[run % len(sides) :] + sides[: run % len(sides)]
        for side in order:
            tag = f"{level_tag}r{run}"
            appends[side.name].append(await append_rate(side, callers, each, tag))
            reads[side.name].append(await read_rate(side, callers, each))
    return {
        "callers": callers,
        "per_caller": each,
        "appends_per_s": {name: median(values) for name, values in appends.items()},
        "append_runs": {name: [round(v) for v in values] for name, values in appends.items()},
        "reads_per_s": {name: median(values) for name, values in reads.items()},
        "read_runs": {name: [round(v) for v in values] for name, values in reads.items()},
    }


async def batched_rate(raw: RawStore, total: int, tag: str) -> float:
    """Messages/s of the raw driver writing `total` messages batched (the ceiling)."""
    rows: list[Row] = [
        (f"{tag}-w{n % 100}", "default", m)
        for n, m in enumerate(m for ms in messages_for(1, total, tag) for m in ms)
    ]
    started = time.perf_counter()
    await raw.append_batched(rows)
    return total / (time.perf_counter() - started)


@asynccontextmanager
async def opened(name: str, config: Config, namespace: str) -> AsyncIterator[list[Any]]:
    """Give [tenantry store, raw store, extra (name, store) pairs] for a backend; drop their
    data afterwards."""
    if name == "memory":
        yield [InMemoryStore(), RawMemory(), []]
    elif name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="tenantry-bench-") as tmp:
            store, raw = SQLiteStore(Path(tmp) / "tenantry.db"), RawSQLite(f"{tmp}/raw.db")
            try:
                yield [store, raw, []]
            finally:
                await store.close()
                await raw.close()
    elif name == "postgres":
        async with _postgres(config.postgres_url or "", namespace, config.smoke) as sides:
            yield sides
    else:
        async with _redis(config.redis_url or "", namespace) as sides:
            yield sides


@asynccontextmanager
async def _postgres(url: str, schema: str, smoke: bool) -> AsyncIterator[list[Any]]:
    import psycopg

    from tenantry.storage.postgres import PostgresStore

    store = PostgresStore(url, schema=schema)
    no_rls = PostgresStore(url, schema=f"{schema}_norls", rls=False)
    raw = RawPostgres(url, f"{schema}_raw")
    try:
        await raw.open()
        yield [store, raw, [] if smoke else [("tenantry, rls=false", no_rls)]]
    finally:
        await store.close()
        await no_rls.close()
        await raw.close()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for name in (schema, f"{schema}_norls", f"{schema}_raw"):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@asynccontextmanager
async def _redis(url: str, prefix: str) -> AsyncIterator[list[Any]]:
    from redis.asyncio import Redis

    from tenantry.storage.redis import RedisStore

    store = RedisStore(url, prefix=prefix, max_messages=REDIS_CAP)
    raw = RawRedis(url, f"{prefix}-raw", cap=REDIS_CAP)
    try:
        yield [store, raw, []]
    finally:
        await store.close()
        await raw.close()
        async with Redis.from_url(url) as client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=5000)]
            for start in range(0, len(keys), 5000):
                await client.delete(*keys[start : start + 5000])


async def measure_backend(name: str, config: Config, levels: tuple[int, ...]) -> dict[str, Any]:
    total = config.pick(FULL_TOTAL, SMOKE_TOTAL)[name]
    runs = config.pick(3, 1)
    namespace = f"tenantry_bench_{uuid.uuid4().hex[:8]}"
    async with opened(name, config, namespace) as (store, raw, extras):
        sides = [tenantry_side("tenantry", store), raw_side("raw", raw)]
        sides += [tenantry_side(label, extra) for label, extra in extras]
        await fill(store, raw, [extra for _, extra in extras], max(levels))
        for side in sides:  # warm up: pools filled, threads started, statements prepared
            await append_rate(side, max(levels), 1, "warm")
            await read_rate(side, max(levels), 1)
        results = [
            await measure_level(sides, callers, total, runs, f"c{callers}") for callers in levels
        ]
        batched = [await batched_rate(raw, total, f"batch{run}") for run in range(runs)]
    return {
        "levels": results,
        "raw_batched_per_s": median(batched),
        "raw_batched_runs": [round(v) for v in batched],
        "messages_per_run": total,
    }


async def server_versions(config: Config) -> dict[str, str]:
    versions: dict[str, str] = {}
    if config.postgres_url:
        import psycopg

        async with await psycopg.AsyncConnection.connect(config.postgres_url) as conn:
            row = await (await conn.execute("SHOW server_version")).fetchone()
            versions["postgresql"] = str(row[0]) if row else "?"
    if config.redis_url:
        from redis.asyncio import Redis

        async with Redis.from_url(config.redis_url) as client:
            versions["redis"] = str((await client.info("server"))["redis_version"])
    return versions


def skip_reason(name: str, config: Config) -> str | None:
    if name == "postgres" and not config.postgres_url:
        return "skipped: set TENANTRY_BENCH_POSTGRES_URL (or TENANTRY_TEST_POSTGRES_URL)"
    if name == "redis" and not config.redis_url:
        return "skipped: set TENANTRY_BENCH_REDIS_URL (or TENANTRY_TEST_REDIS_URL)"
    return None


async def measure_all(config: Config, levels: tuple[int, ...]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in BACKENDS:
        reason = skip_reason(name, config)
        if reason:
            results[name] = {"skipped": reason}
            print(f"stores: {name} {reason}", flush=True)
            continue
        started = time.perf_counter()
        results[name] = await measure_backend(name, config, levels)
        print(f"stores: {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    return results


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def markdown(results: dict[str, Any], levels: tuple[int, ...], runs: int) -> list[str]:
    lines = [
        "Each writer adds messages to its own scope, one `add` (one durable append) at a time; "
        "each reader calls `get_messages(limit=50)` on its own scope of 60 messages. The raw "
        "baseline does the same per message with the bare driver and the same threads / pool "
        "size / durability (SQLite: sqlite3, one INSERT per message on one writer thread, WAL, "
        "synchronous=NORMAL; PostgreSQL: psycopg, one autocommit INSERT per message, pool of "
        "10; Redis: redis-py, one MULTI/EXEC pipeline RPUSH + LTRIM per message, pool of 20; "
        "memory: a dict of deques, no driver). **raw, per message** is the honest equivalent "
        "(same round trips per message): the target ratio is against it. **raw, batched** "
        f"(1000 messages per executemany / pipeline, one caller) is the driver's ceiling, "
        f"which one-message appends cannot reach. Medians of {runs} run(s); "
        "tenantry and raw runs alternate. Redis runs with max_messages=10 000 on both sides "
        "(nothing is trimmed); the other backends without a cap.",
        "",
        "## Appends (messages/s)",
        "",
    ]
    rows, read_rows, extra_rows, verdicts = [], [], [], []
    for name, figures in results.items():
        if "skipped" in figures:
            rows.append([name, "-", figures["skipped"], "", "", "", ""])
            continue
        batched = figures["raw_batched_per_s"]
        level_ratios = []
        for level in figures["levels"]:
            a, r = level["appends_per_s"], level["reads_per_s"]
            level_ratios.append(ratio(a["tenantry"], a["raw"]))
            rows.append(
                [
                    name,
                    level["callers"],
                    a["tenantry"],
                    a["raw"],
                    f"{ratio(a['tenantry'], a['raw']):.0%}",
                    batched,
                    f"{ratio(a['tenantry'], batched):.0%}",
                ]
            )
            read_rows.append(
                [
                    name,
                    level["callers"],
                    r["tenantry"],
                    r["raw"],
                    f"{ratio(r['tenantry'], r['raw']):.0%}",
                ]
            )
            for label in a:
                if label not in ("tenantry", "raw"):
                    extra_rows.append(
                        [
                            name,
                            label,
                            level["callers"],
                            a[label],
                            f"{ratio(a[label], a['raw']):.0%}",
                            r[label],
                            f"{ratio(r[label], r['raw']):.0%}",
                        ]
                    )
        met = all(x >= TARGET_RATIO for x in level_ratios)
        shown = " / ".join(f"{x:.0%}" for x in level_ratios)
        what = "no driver: for information" if name == "memory" else ("yes" if met else "no")
        verdicts.append([f"{name}: appends ≥ 70 % of raw per message", shown, what])
    lines += table(
        [
            "backend",
            "writers",
            "tenantry",
            "raw, per message",
            "tenantry / raw",
            "raw, batched (ceiling)",
            "tenantry / batched",
        ],
        rows,
    )
    lines += ["", "## Reads: `get_messages(limit=50)`/s", ""]
    lines += table(["backend", "readers", "tenantry", "raw", "tenantry / raw"], read_rows)
    if extra_rows:
        lines += ["", "## Variants", ""]
        lines += table(
            ["backend", "variant", "callers", "appends/s", "vs raw", "reads/s", "vs raw"],
            extra_rows,
        )
    lines += ["", "## Where we stand", ""]
    lines += table(
        ["target", f"measured (tenantry / raw at {', '.join(str(x) for x in levels)})", "met"],
        verdicts,
    )
    return lines


def plot(results: dict[str, Any], out: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = {k: v for k, v in results.items() if "skipped" not in v}
    if not measured:
        return None
    fig, axes = plt.subplots(2, len(measured), figsize=(4 * len(measured), 7), squeeze=False)
    for column, (name, figures) in enumerate(measured.items()):
        levels = figures["levels"]
        labels = [str(level["callers"]) for level in levels]
        for row, key in enumerate(("appends_per_s", "reads_per_s")):
            ax = axes[row][column]
            sides = list(levels[0][key])
            width = 0.8 / len(sides)
            for i, side in enumerate(sides):
                xs = [x + i * width for x in range(len(levels))]
                ax.bar(xs, [level[key][side] for level in levels], width, label=side)
            if key == "appends_per_s":
                ax.axhline(figures["raw_batched_per_s"], ls="--", c="grey", label="raw, batched")
            ax.set_xticks([x + 0.4 - width / 2 for x in range(len(levels))], labels)
            ax.set_yscale("log")
            ax.set_title(f"{name}: {'appends' if row == 0 else 'reads (limit=50)'}/s")
            ax.set_xlabel("concurrent callers")
            ax.legend(fontsize=7)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "stores.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def run(config: Config) -> list[Report]:
    levels: tuple[int, ...] = config.pick((1, 100, 1000), (1, 5, 20))
    runs = config.pick(3, 1)

    async def main() -> tuple[dict[str, Any], dict[str, str]]:
        return await measure_all(config, levels), await server_versions(config)

    results, servers = asyncio.run(main())
    plots = [p for p in [plot(results, config.out)] if p]
    workload = {
        "levels": list(levels),
        "runs": runs,
        "messages_per_run": config.pick(FULL_TOTAL, SMOKE_TOTAL),
        "read_limit": READ_LIMIT,
        "messages_per_read_scope": FILL,
        "redis_max_messages": REDIS_CAP,
        "servers": servers,
        "event_loop": "asyncio (default policy)",
    }
    return [
        Report(
            name="stores",
            title="Store throughput against the raw drivers",
            workload=workload,
            results=results,
            lines=markdown(results, levels, runs),
            plots=plots,
        )
    ]
