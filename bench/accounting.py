"""What usage accounting costs a turn: the same turns with accounting on and off, per backend.

Accounting on (the default) reads the user's usage and budget (`read_admission`, alongside
the history read) and checks them before the model is called, and adds the turn's usage to
the user's counters of the day in the turn's own commit; off does neither. Each of `users`
users has a session of `history` messages per mode; a default budget far above what the run
uses keeps every turn admitted, so the check runs in full. The model is an in-process fake
that answers at once with a reported usage, so what is timed is tenantry: the turn lock, the
reads, the check, the atomic write.

Turns with accounting on and off alternate user by user, so drift on a shared machine hits
both. Target: on / off <= 1.1 (mean): it rides in the same commit.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

from bench.common import Config, Report, summary_ms, table
from bench.memory_overhead import opened
from bench.stores import skip_reason
from tenantry import Agent, FunctionModel, Message
from tenantry.models import ModelResponse
from tenantry.storage.base import Store
from tenantry.types import Budget, ToolSpec, Usage
from tenantry.usage import Budgets

BACKENDS = ("memory", "sqlite", "postgres", "redis")
TARGET = 1.1
TURN = Usage(requests=1, input_tokens=120, output_tokens=30)
BUDGET = Budget(tokens_per_day=10**12, requests_per_day=10**9, tokens_per_month=10**13)


def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
    return ModelResponse("ok", usage=TURN)


async def seed(store: Store, users: int, history: int) -> None:
    """Give every user two sessions ("off", "on") of `history` messages."""
    for u in range(users):
        for session in ("off", "on"):
            turns = [
                Message.user(f"earlier message {i}") if i % 2 == 0 else Message.assistant("ok")
                for i in range(history)
            ]
            await store.add_many(turns, user_id=f"user-{u}", session_id=session)


async def measure_backend(name: str, config: Config) -> dict[str, Any]:
    users = config.pick(50, 3)
    history = config.pick(40, 6)
    rounds = config.pick({"memory": 40, "sqlite": 20, "postgres": 10, "redis": 20}[name], 2)
    async with opened(name, config) as store:
        await seed(store, users, history)
        on = Agent(model=FunctionModel(answer), store=store, budgets=Budgets(BUDGET))
        off = on.replace(accounting=False)
        agents = {"off": off, "on": on}
        times: dict[str, list[float]] = {"off": [], "on": []}
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        for warm in range(users):  # pools filled, statements prepared, threads started
            for label, agent in agents.items():
                await agent.arun("warm up", user_id=f"user-{warm}", session_id=label)
        for r in range(rounds):
            for u in range(users):
                order = ("off", "on") if (r + u) % 2 else ("on", "off")
                for label in order:
                    started, used = time.perf_counter(), time.process_time()
                    await agents[label].arun(f"turn {r}", user_id=f"user-{u}", session_id=label)
                    times[label].append(time.perf_counter() - started)
                    cpu[label].append(time.process_time() - used)
        counted = await store.usage_total("user-0", start=_today(), end=_today())
    off_ms, on_ms = summary_ms(times["off"]), summary_ms(times["on"])
    cpu_off, cpu_on = statistics.fmean(cpu["off"]), statistics.fmean(cpu["on"])
    return {
        "off": off_ms,
        "on": on_ms,
        "ratio_mean": round(on_ms["mean_ms"] / off_ms["mean_ms"], 3),
        "ratio_p50": round(on_ms["p50_ms"] / off_ms["p50_ms"], 3),
        "cpu_off_ms": round(cpu_off * 1000, 3),
        "cpu_on_ms": round(cpu_on * 1000, 3),
        "ratio_cpu": round(cpu_on / cpu_off, 3) if cpu_off else None,
        "counted_requests_user_0": counted.requests,
        "turns_with_accounting_user_0": rounds + 1,
        "sizes": {"users": users, "history": history, "rounds": rounds},
    }


def _today() -> Any:
    from tenantry.storage.usage import usage_day

    return usage_day(time.time())


async def measure_all(config: Config) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in BACKENDS:
        reason = skip_reason(name, config)
        if reason:
            results[name] = {"skipped": reason}
            continue
        started = time.perf_counter()
        results[name] = await measure_backend(name, config)
        print(f"accounting: {name} in {time.perf_counter() - started:.1f} s", flush=True)
    return results


def markdown(results: dict[str, Any]) -> list[str]:
    rows, verdicts = [], []
    for name, figures in results.items():
        if "skipped" in figures:
            rows.append([name, figures["skipped"], "", "", "", ""])
            continue
        rows.append(
            [
                name,
                figures["off"]["mean_ms"],
                figures["on"]["mean_ms"],
                f"{figures['ratio_mean']:.2f}×",
                f"{figures['ratio_p50']:.2f}×",
                f"{figures['ratio_cpu'] or 0:.2f}×",
            ]
        )
        verdicts.append(figures["ratio_mean"] <= TARGET)
    sizes = next((f["sizes"] for f in results.values() if "sizes" in f), {})
    return [
        f"{sizes.get('users', '?')} users, each with a session of {sizes.get('history', '?')} "
        f"messages per mode; {sizes.get('rounds', '?')} rounds of one turn per user with "
        "accounting off and one with it on (admission read and budget check before the model, "
        "usage in the turn's commit), alternating; an in-process fake model.",
        "",
        *table(
            [
                "backend",
                "turn, accounting off (mean ms)",
                "turn, accounting on (mean ms)",
                "on / off (mean)",
                "on / off (p50)",
                "on / off (CPU per turn)",
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
            name="accounting",
            title="Turn overhead of usage accounting and budgets",
            workload={"target_ratio": TARGET, "backends": list(BACKENDS)},
            results={
                **results,
                "worst_ratio_mean": max((r["ratio_mean"] for r in measured), default=None),
            },
            lines=markdown(results),
        )
    ]


__all__ = ["run"]
