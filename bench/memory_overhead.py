"""What long-term memory costs a turn: the same turns with memory on and off, per backend.

Memory on is `MemoryConfig(learning=False)`: recall is included (the user's memories are
searched with the new message and the best five go into the system prompt), extraction is
not (it runs after the ack, in the background; with it on, the machine would also be doing
the background jobs while the turns are timed). Each of `users` users holds `memories`
memories and a session of `history` messages; the model is an in-process fake that answers
at once (and checks that recalled facts reached its system prompt), so what is timed is
tenantry: the turn lock, the history read, the recall, the atomic write.

Turns with memory on and off alternate user by user (each in a session of its own with the
same history), so drift on a shared machine hits both. Both agents have the same instructions,
as a deployed agent does, so both build a system prompt. Target: on / off <= 1.5 (mean).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.common import Config, Report, summary_ms, table
from bench.stores import skip_reason
from tenantry import Agent, FunctionModel, Message
from tenantry.memory import MemoryConfig
from tenantry.models.tasks import MEMORY_OPEN
from tenantry.storage.base import Store
from tenantry.storage.url import open_store
from tenantry.types import ToolSpec

BACKENDS = ("memory", "sqlite", "postgres", "redis")
TARGET = 1.5
INSTRUCTIONS = "You are the support assistant of Example Ltd. Answer briefly."
"""Both agents' instructions: a real agent has some, so both turns build a system prompt and
the difference is what recall adds to it."""
THINGS = ("cat", "dog", "city", "job", "drink", "team", "car", "book", "song", "sport")
VALUES = ("Tom", "Rex", "Berlin", "nurse", "tea", "Ajax", "Volvo", "Dune", "Hey Jude", "chess")


class Counting:
    """The fake model: answers "ok" at once and counts the prompts that held recalled facts."""

    def __init__(self) -> None:
        self.recalled = 0
        self.calls = 0

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        self.calls += 1
        if messages and messages[0].role == "system" and MEMORY_OPEN in messages[0].content:
            self.recalled += 1
        return "ok"


def memory_text(n: int) -> str:
    thing, value = THINGS[n % len(THINGS)], VALUES[(n * 7) % len(VALUES)]
    return f"The user's {thing} is {value} (fact {n})."


def question(n: int) -> str:
    return f"Tell me something about my {THINGS[n % len(THINGS)]}, please."


@asynccontextmanager
async def opened(name: str, config: Config) -> AsyncIterator[Store]:
    """Give a fresh store of the backend; drop its data afterwards."""
    namespace = f"tenantry_bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-") as tmp:
        url = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}",
            "postgres": f"{config.postgres_url}{'&' if '?' in (config.postgres_url or '') else '?'}"
            f"schema={namespace}",
            "redis": f"{config.redis_url}{'&' if '?' in (config.redis_url or '') else '?'}"
            f"prefix={namespace}",
        }[name]
        store = open_store(url)
        try:
            yield store
        finally:
            await store.close()
            await _drop(name, config, namespace)


async def _drop(name: str, config: Config, namespace: str) -> None:
    if name == "postgres" and config.postgres_url:
        import psycopg

        async with await psycopg.AsyncConnection.connect(config.postgres_url, autocommit=True) as c:
            await c.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
    elif name == "redis" and config.redis_url:
        from redis.asyncio import Redis

        async with Redis.from_url(config.redis_url) as client:
            keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=5000)]
            for start in range(0, len(keys), 5000):
                await client.delete(*keys[start : start + 5000])


async def seed(store: Store, users: int, memories: int, history: int) -> None:
    """Give every user its memories, and two sessions ("off", "on") of `history` messages."""
    for u in range(users):
        user = f"user-{u}"
        for n in range(memories):
            await store.add_memory(memory_text(u + n), user_id=user)
        for session in ("off", "on"):
            turns = [
                Message.user(f"earlier message {i}") if i % 2 == 0 else Message.assistant("ok")
                for i in range(history)
            ]
            await store.add_many(turns, user_id=user, session_id=session)


async def measure_backend(name: str, config: Config) -> dict[str, Any]:
    users = config.pick(50, 3)
    memories = config.pick(30, 5)
    history = config.pick(40, 6)
    rounds = config.pick({"memory": 40, "sqlite": 20, "postgres": 10, "redis": 20}[name], 2)
    async with opened(name, config) as store:
        await seed(store, users, memories, history)
        model = Counting()
        off = Agent(
            model=FunctionModel(model), store=store, history_window=50, instructions=INSTRUCTIONS
        )
        on = off.replace(memory=MemoryConfig(learning=False))
        times: dict[str, list[float]] = {"off": [], "on": []}
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        for warm in range(users):  # pools filled, statements prepared, threads started
            await off.arun(question(warm), user_id=f"user-{warm}", session_id="off")
            await on.arun(question(warm), user_id=f"user-{warm}", session_id="on")
        model.recalled = model.calls = 0
        for r in range(rounds):
            for u in range(users):
                order = (("off", off), ("on", on)) if (r + u) % 2 else (("on", on), ("off", off))
                for label, agent in order:
                    started, used = time.perf_counter(), time.process_time()
                    await agent.arun(question(r + u), user_id=f"user-{u}", session_id=label)
                    times[label].append(time.perf_counter() - started)
                    cpu[label].append(time.process_time() - used)
        recall = []
        for u in range(users):
            started = time.perf_counter()
            await store.search_memories(question(u), user_id=f"user-{u}", limit=5)
            recall.append(time.perf_counter() - started)
    off_ms, on_ms = summary_ms(times["off"]), summary_ms(times["on"])
    cpu_off, cpu_on = statistics.fmean(cpu["off"]), statistics.fmean(cpu["on"])
    return {
        "off": off_ms,
        "on": on_ms,
        "recall_search": summary_ms(recall),
        "ratio_mean": round(on_ms["mean_ms"] / off_ms["mean_ms"], 3),
        "ratio_p50": round(on_ms["p50_ms"] / off_ms["p50_ms"], 3),
        "cpu_off_ms": round(cpu_off * 1000, 3),
        "cpu_on_ms": round(cpu_on * 1000, 3),
        "ratio_cpu": round(cpu_on / cpu_off, 3) if cpu_off else None,
        "prompts_with_facts": model.recalled,
        "turns_with_memory": len(times["on"]),
        "sizes": {"users": users, "memories": memories, "history": history, "rounds": rounds},
    }


async def measure_all(config: Config) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in BACKENDS:
        reason = skip_reason(name, config)
        if reason:
            results[name] = {"skipped": reason}
            continue
        started = time.perf_counter()
        results[name] = await measure_backend(name, config)
        print(f"memory_overhead: {name} in {time.perf_counter() - started:.1f} s", flush=True)
    return results


def markdown(results: dict[str, Any]) -> list[str]:
    rows, verdicts = [], []
    for name, figures in results.items():
        if "skipped" in figures:
            rows.append([name, figures["skipped"], "", "", "", "", "", ""])
            continue
        rows.append(
            [
                name,
                figures["off"]["mean_ms"],
                figures["on"]["mean_ms"],
                f"{figures['ratio_mean']:.2f}×",
                f"{figures['ratio_p50']:.2f}×",
                f"{figures['ratio_cpu'] or 0:.2f}×",
                figures["recall_search"]["p50_ms"],
                f"{figures['prompts_with_facts']} / {figures['turns_with_memory']}",
            ]
        )
        verdicts.append(figures["ratio_mean"] <= TARGET)
    sizes = next((f["sizes"] for f in results.values() if "sizes" in f), {})
    return [
        f"{sizes.get('users', '?')} users, each with {sizes.get('memories', '?')} memories and "
        f"a session of {sizes.get('history', '?')} messages; {sizes.get('rounds', '?')} rounds "
        "of one turn per user with memory off and one with it on (recall of 5, learning off), "
        "alternating; an in-process fake model.",
        "",
        *table(
            [
                "backend",
                "turn, memory off (mean ms)",
                "turn, memory on (mean ms)",
                "on / off (mean)",
                "on / off (p50)",
                "on / off (CPU per turn)",
                "search_memories p50 (ms)",
                "prompts with recalled facts",
            ],
            rows,
        ),
        "",
        f"Target: on / off ≤ {TARGET} (mean): "
        + ("met on every backend measured." if all(verdicts) else "**missed** (see the table)."),
    ]


def run(config: Config) -> list[Report]:
    results = asyncio.run(measure_all(config))
    measured = [r for r in results.values() if "ratio_mean" in r]
    return [
        Report(
            name="memory_overhead",
            title="Turn overhead of long-term memory (recall included, extraction excluded)",
            workload={"target_ratio": TARGET, "backends": list(BACKENDS)},
            results={
                **results,
                "worst_ratio_mean": max((r["ratio_mean"] for r in measured), default=None),
                "median_ratio_mean": statistics.median([r["ratio_mean"] for r in measured])
                if measured
                else None,
            },
            lines=markdown(results),
        )
    ]


__all__ = ["run"]
