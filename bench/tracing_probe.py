"""One tracing-overhead measurement in a fresh interpreter, for `bench.tracing`:

    python -m bench.tracing_probe MODE --turns N --rounds R

prints one JSON object: the mean time per turn of each of R rounds of N turns. MODE says what
OpenTelemetry looks like to the process (each needs its own interpreter: a global tracer
provider can be set only once):

- `absent`: `opentelemetry` cannot be imported (as if it were not installed);
- `unset`: installed, no tracer provider configured (the API's proxy);
- `noop`: the API's `NoOpTracerProvider` set as the global provider;
- `sdk`: the SDK's `TracerProvider` recording every span into an exporter that drops them
  (what recording costs; not a zero-cost case).

A turn is one tool round trip over an InMemoryStore (two model calls, one tool call: four spans
when recorded), spread over 100 tenants; the model answers at once, in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

MODES = ("absent", "unset", "noop", "sdk")


def configure(mode: str) -> None:
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
        return
    if mode == "unset":
        return
    from opentelemetry import trace

    if mode == "noop":
        trace.set_tracer_provider(trace.NoOpTracerProvider())
        return
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)


async def measure(turns: int, rounds: int) -> list[float]:
    from tenantry import Agent, InMemoryStore, tool
    from tenantry.models import FunctionModel, ModelResponse
    from tenantry.types import Message, ToolCall, ToolSpec

    @tool
    async def lookup_order(order_id: int) -> str:
        """Look up an order."""
        return f"order {order_id} shipped"

    call = (ToolCall("call-1", "lookup_order", '{"order_id": 42}'),)

    def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str | ModelResponse:
        return "It shipped." if messages[-1].role == "tool" else ModelResponse("", call)

    agent = Agent(
        model=FunctionModel(answer),
        store=InMemoryStore(max_messages=40),
        tools=[lookup_order],
    )
    for n in range(200):  # warm-up
        await agent.arun("Where is my order?", user_id=f"user-{n % 100}")
    means = []
    for _ in range(rounds):
        started = time.perf_counter()
        for n in range(turns):
            await agent.arun("Where is my order?", user_id=f"user-{n % 100}")
        means.append((time.perf_counter() - started) / turns)
    return means


def hooks_ns(calls: int, repeats: int = 5) -> float:
    """Nanoseconds the agent's tracing hooks add to a turn of that shape (one turn trace and
    its scope, two model-call spans, one tool span), without a model or a store: the part of
    a turn that differs between the modes, free of the noise of whole turns. The best of
    `repeats` runs, less the same loop without the hooks."""
    from tenantry.models import ModelResponse, OfflineModel
    from tenantry.tenancy import Scope
    from tenantry.tracing import DEFAULT_TRACING
    from tenantry.types import ToolCall

    model, scope, response = OfflineModel(), Scope.of("user-1"), ModelResponse("ok")
    call = ToolCall("call-1", "lookup_order", "{}")

    async def empty() -> Any:
        return
        yield

    async def with_hooks() -> int:
        started = time.perf_counter_ns()
        for _ in range(calls):
            trace = DEFAULT_TRACING.turn("agent", model)
            items = trace.wrap(empty())
            trace.scope(scope)
            for _ in range(2):
                with trace.chat(attach=True) as span:
                    span.done(response)
            with trace.tool(call):
                pass
            async for _ in items:
                pass
        return time.perf_counter_ns() - started

    async def without() -> int:
        started = time.perf_counter_ns()
        for _ in range(calls):
            items = empty()
            for _ in range(2):
                pass
            async for _ in items:
                pass
        return time.perf_counter_ns() - started

    async def best() -> tuple[int, int]:
        hooked = min([await with_hooks() for _ in range(repeats)])
        bare = min([await without() for _ in range(repeats)])
        return hooked, bare

    hooked, bare = asyncio.run(best())
    return (hooked - bare) / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_probe")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    configure(args.mode)
    means = asyncio.run(measure(args.turns, args.rounds))
    hook_cost = hooks_ns(args.turns * 5)
    from tenantry import tracing

    result: dict[str, Any] = {
        "mode": args.mode,
        "round_means_s": means,
        "hooks_ns_per_turn": hook_cost,
        "opentelemetry_importable": tracing._trace_api() is not False,
        "traced": tracing.DEFAULT_TRACING.tracer() is not None,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
