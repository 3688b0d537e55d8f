"""One memory measurement in a fresh interpreter, for `bench.memory`:

    python -m bench.memory_probe KIND --tenants N --messages M

prints one JSON object. KIND is one of:

- `interpreter`: this interpreter with nothing imported (besides this module's stdlib);
- `tenantry-import`: after `import tenantry`: the baseline of the tenantry figures;
- `tenantry-turns`: one tenantry agent over an InMemoryStore, N tenants each given M messages
  by M / 2 real turns (user message + reply);
- `tenantry-add-many`: the same messages written with one `add_many` per tenant;
- `tenantry-tracemalloc`: the bytes tracemalloc counts for the store's content after writing
  N tenants x M messages (`add_many`), and the text those messages hold;
- `agno-agents`: N agno `Agent` instances, each with its own fake model (the picture of one
  agent per user);
- `agno-shared`: one agno `Agent` over agno's `InMemoryDb`, N users each given M messages by
  M / 2 real runs.

RSS is read from /proc/self/status (psutil where /proc is missing) after a full collection;
`rss_before` is taken after the imports and the agent, so `rss_delta` is what the data costs.
Models answer at once, without network; agno's telemetry is off.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from typing import Any

USER_TEXT = "Hello, this is tenant {n} with message {i}; I would like some help with my order."
REPLY_TEXT = "Thank you, noted ({count} messages so far). Anything else I can help you with?"


def rss() -> int:
    """This process's resident set size in bytes."""
    gc.collect()
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return int(psutil.Process().memory_info().rss)


def user_text(n: int, i: int) -> str:
    return USER_TEXT.format(n=n, i=i)


def tenantry_agent() -> Any:
    from tenantry import Agent, FunctionModel, InMemoryStore

    def answer(messages: Any, tools: Any) -> str:
        return REPLY_TEXT.format(count=len(messages))

    return Agent(name="memory", model=FunctionModel(answer), store=InMemoryStore())


def text_bytes(messages: Any) -> int:
    return sum(len(m.content.encode()) for m in messages)


async def tenantry_turns(tenants: int, messages: int) -> dict[str, Any]:
    agent = tenantry_agent()
    before = rss()
    for i in range(messages // 2):
        for n in range(tenants):
            await agent.arun(user_text(n, i), user_id=f"tenant-{n}")
    after = rss()
    stored = [m for n in range(tenants) for m in await agent.store.get_messages(f"tenant-{n}")]
    return {"rss_before": before, "rss": after, "stored": len(stored), "text": text_bytes(stored)}


async def tenantry_add_many(tenants: int, messages: int) -> dict[str, Any]:
    from tenantry import Message

    agent = tenantry_agent()
    before = rss()
    for n in range(tenants):
        batch = []
        for i in range(messages // 2):
            batch.append(Message.user(user_text(n, i)))
            batch.append(Message.assistant(REPLY_TEXT.format(count=2 * i + 1)))
        await agent.store.add_many(batch, user_id=f"tenant-{n}")
    after = rss()
    stored = [m for n in range(tenants) for m in await agent.store.get_messages(f"tenant-{n}")]
    return {"rss_before": before, "rss": after, "stored": len(stored), "text": text_bytes(stored)}


async def tenantry_tracemalloc(tenants: int, messages: int) -> dict[str, Any]:
    """Bytes the store holds, counted by tracemalloc: messages and per-scope structures."""
    import tracemalloc

    from tenantry import InMemoryStore, Message

    store = InMemoryStore()
    await store.add(Message.user("warm"), user_id="warm-up")  # first-use allocations
    gc.collect()
    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    text = 0
    for n in range(tenants):
        batch = []
        for i in range(messages // 2):
            batch.append(Message.user(user_text(n, i)))
            batch.append(Message.assistant(REPLY_TEXT.format(count=2 * i + 1)))
        text += text_bytes(batch)
        await store.add_many(batch, user_id=f"tenant-{n}")
        del batch
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stored = tenants * (messages // 2) * 2
    return {"traced": current - start, "stored": stored, "text": text}


def agno_model() -> Any:
    """A fake agno model that answers at once; a new class per call keeps agno's imports in
    this function."""
    from dataclasses import dataclass

    from agno.models.base import Model
    from agno.models.response import ModelResponse

    @dataclass
    class Instant(Model):
        id: str = "instant"
        name: str = "instant"
        provider: str = "bench"

        def _reply(self, messages: Any) -> ModelResponse:
            response = ModelResponse()
            response.role = "assistant"
            response.content = REPLY_TEXT.format(count=len(messages or ()))
            return response

        def invoke(self, *args: Any, **kwargs: Any) -> ModelResponse:
            return self._reply(kwargs.get("messages"))

        async def ainvoke(self, *args: Any, **kwargs: Any) -> ModelResponse:
            return self._reply(kwargs.get("messages"))

        def invoke_stream(self, *args: Any, **kwargs: Any) -> Any:
            yield self._reply(kwargs.get("messages"))

        async def ainvoke_stream(self, *args: Any, **kwargs: Any) -> Any:
            yield self._reply(kwargs.get("messages"))

        def _parse_provider_response(self, response: Any, **kwargs: Any) -> ModelResponse:
            return response  # type: ignore[no-any-return]

        def _parse_provider_response_delta(self, response: Any) -> ModelResponse:
            return response  # type: ignore[no-any-return]

    return Instant


async def agno_agents(tenants: int, messages: int) -> dict[str, Any]:
    from agno.agent import Agent

    model = agno_model()
    Agent(model=model(), telemetry=False)  # first-use allocations
    before = rss()
    agents = [Agent(name=f"agent-{n}", model=model(), telemetry=False) for n in range(tenants)]
    after = rss()
    return {"rss_before": before, "rss": after, "agents": len(agents), "stored": 0, "text": 0}


async def agno_shared(tenants: int, messages: int) -> dict[str, Any]:
    from agno.agent import Agent
    from agno.db.base import SessionType
    from agno.db.in_memory import InMemoryDb

    db = InMemoryDb()
    agent = Agent(name="memory", model=agno_model()(), db=db, telemetry=False)
    before = rss()
    for i in range(messages // 2):
        for n in range(tenants):
            await agent.arun(user_text(n, i), user_id=f"tenant-{n}", session_id=f"tenant-{n}")
    after = rss()
    stored = text = 0
    for n in range(tenants):
        session: Any = db.get_session(f"tenant-{n}", SessionType.AGENT, deserialize=False)
        for run in (session or {}).get("runs") or ():
            for message in run.get("messages") or ():
                if message.get("role") in ("user", "assistant"):
                    stored += 1
                    text += len(str(message.get("content") or "").encode())
    return {"rss_before": before, "rss": after, "stored": stored, "text": text}


async def nothing(tenants: int, messages: int) -> dict[str, Any]:
    return {"rss": rss()}


async def tenantry_import(tenants: int, messages: int) -> dict[str, Any]:
    import tenantry  # noqa: F401

    return {"rss": rss()}


KINDS = {
    "interpreter": nothing,
    "tenantry-import": tenantry_import,
    "tenantry-turns": tenantry_turns,
    "tenantry-add-many": tenantry_add_many,
    "tenantry-tracemalloc": tenantry_tracemalloc,
    "agno-agents": agno_agents,
    "agno-shared": agno_shared,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_probe", description=__doc__)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=10)
    args = parser.parse_args(argv)
    if args.kind.startswith("agno"):
        os.environ["AGNO_TELEMETRY"] = "false"
    started = time.perf_counter()
    result = asyncio.run(KINDS[args.kind](args.tenants, args.messages))
    result["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
