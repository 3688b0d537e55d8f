"""OpenTelemetry traces, checked with the SDK's in-memory exporter: the GenAI span tree, its
names and attributes, error status, nothing personal by default, the server's HTTP span as the
parent, and no cost or failure without a tracer provider or without OpenTelemetry at all."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tenantry import Agent, InMemoryStore, RunContext, tool
from tenantry.errors import InvalidInput, ModelHTTPError, ToolError
from tenantry.models import FunctionModel, ModelResponse
from tenantry.tracing import Tracing
from tenantry.types import Message, ToolCall, ToolSpec, Usage
from tests.support.servers import serve

ROOT = Path(__file__).resolve().parents[1]
SECRET = "my card number is 4111"


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def tracing(self, **options: Any) -> Tracing:
        return Tracing(tracer_provider=self.provider, **options)

    def spans(self) -> dict[str, ReadableSpan]:
        return {span.name: span for span in self.exporter.get_finished_spans()}


@pytest.fixture
def traced() -> Traced:
    return Traced()


def tool_then_answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str | ModelResponse:
    usage = Usage(requests=1, input_tokens=10, output_tokens=4, cache_read_tokens=6)
    if messages[-1].role == "tool":
        return ModelResponse("Order 42 is on its way.", usage=usage)
    call = ToolCall("call-1", "lookup_order", '{"order_id": 42}')
    return ModelResponse("", (call,), usage)


def agent_with(traced: Traced, **options: Any) -> Agent:
    tracer = traced.provider.get_tracer("the-app")

    @tool
    def lookup_order(ctx: RunContext, order_id: int) -> str:
        """Look up an order."""
        with tracer.start_as_current_span("orders-db query"):
            return f"order {order_id} shipped"

    return Agent(
        name="support",
        model=FunctionModel(tool_then_answer, name="scripted-model"),
        store=InMemoryStore(),
        tools=[lookup_order],
        tracing=traced.tracing(**options),
    )


def assert_the_genai_tree(traced: Traced) -> None:
    spans = traced.spans()
    assert sorted(spans) == [
        "chat scripted-model",
        "execute_tool lookup_order",
        "invoke_agent support",
        "orders-db query",
    ]
    turn = spans["invoke_agent support"]
    tool_span = spans["execute_tool lookup_order"]
    chats = [s for s in traced.exporter.get_finished_spans() if s.name == "chat scripted-model"]
    assert len(chats) == 2
    assert turn.parent is None
    for child in [*chats, tool_span]:
        assert child.parent is not None
        assert child.parent.span_id == turn.context.span_id
        assert child.context.trace_id == turn.context.trace_id
    # the tool's own span nests under execute_tool: it was current while the tool ran
    query = spans["orders-db query"]
    assert query.parent is not None
    assert query.parent.span_id == tool_span.context.span_id

    assert turn.kind == SpanKind.INTERNAL
    assert dict(turn.attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "support",
        "gen_ai.provider.name": "tenantry",
        "gen_ai.request.model": "scripted-model",
        "gen_ai.conversation.id": "s1",
        "gen_ai.usage.input_tokens": 20,
        "gen_ai.usage.output_tokens": 8,
        "gen_ai.usage.cache_read.input_tokens": 12,
    }
    assert chats[0].kind == SpanKind.CLIENT
    assert dict(chats[0].attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "tenantry",
        "gen_ai.request.model": "scripted-model",
        "gen_ai.conversation.id": "s1",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.usage.cache_read.input_tokens": 6,
    }
    assert dict(tool_span.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "lookup_order",
        "gen_ai.tool.call.id": "call-1",
        "gen_ai.tool.type": "function",
        "gen_ai.conversation.id": "s1",
    }
    assert all(s.status.status_code == StatusCode.UNSET for s in spans.values())


def assert_nothing_personal(traced: Traced) -> None:
    for span in traced.exporter.get_finished_spans():
        recorded = [span.name, *map(str, (span.attributes or {}).values())]
        recorded += [event.name for event in span.events]
        assert not any("alice" in text or "4111" in text for text in recorded), span.name
        assert not {"user.id", "user.hash"} & set(span.attributes or {})


async def test_a_turn_gives_the_genai_span_tree_and_nothing_personal(traced: Traced) -> None:
    output = await agent_with(traced).arun(SECRET, user_id="alice", session_id="s1")
    assert output.content == "Order 42 is on its way."
    assert_the_genai_tree(traced)
    assert_nothing_personal(traced)


async def test_a_streamed_turn_gives_the_same_tree(traced: Traced) -> None:
    items = [i async for i in agent_with(traced).astream(SECRET, user_id="alice", session_id="s1")]
    assert items[-1].content == "Order 42 is on its way."  # type: ignore[union-attr]
    assert_the_genai_tree(traced)
    assert_nothing_personal(traced)


async def test_a_failed_model_call_sets_error_status_without_its_message(traced: Traced) -> None:
    def failing(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        raise ModelHTTPError(529, f"overloaded while reading {SECRET}", model="m")

    agent = Agent(model=FunctionModel(failing), tracing=traced.tracing())
    with pytest.raises(ModelHTTPError):
        await agent.arun("hi", user_id="alice")
    spans = traced.spans()
    for name in ("invoke_agent agent", "chat function"):
        assert spans[name].status.status_code == StatusCode.ERROR
        assert spans[name].status.description == "ModelHTTPError"
        assert (spans[name].attributes or {})["error.type"] == "ModelHTTPError"
    assert_nothing_personal(traced)


async def test_a_failed_tool_sets_error_status_on_its_span(traced: Traced) -> None:
    @tool
    def lookup_order(order_id: int) -> str:
        """Always fails."""
        raise RuntimeError(SECRET)

    agent = Agent(
        model=FunctionModel(tool_then_answer),
        tools=[lookup_order],
        tracing=traced.tracing(),
    )
    with pytest.raises(ToolError):
        await agent.arun("hi", user_id="alice")
    spans = traced.spans()
    assert (spans["execute_tool lookup_order"].attributes or {})["error.type"] == "ToolError"
    assert spans["invoke_agent agent"].status.status_code == StatusCode.ERROR
    assert_nothing_personal(traced)


@pytest.mark.parametrize("mode", ["hash", "raw"])
async def test_the_user_id_goes_in_only_when_the_operator_opts_in(
    traced: Traced, mode: str
) -> None:
    await agent_with(traced, user_id=mode, hash_key="k1").arun("hi", user_id="alice")
    attributes = traced.spans()["invoke_agent support"].attributes or {}
    if mode == "raw":
        assert attributes["user.id"] == "alice"
        assert "user.hash" not in attributes
    else:
        expected = hmac.new(b"k1", b"alice", hashlib.sha256).hexdigest()
        assert attributes["user.hash"] == expected
        assert "user.id" not in attributes
    assert "user.id" not in (traced.spans()["chat scripted-model"].attributes or {})
    with pytest.raises(InvalidInput):
        Tracing(user_id="yes")  # type: ignore[arg-type]


def test_disabled_tracing_records_nothing(traced: Traced) -> None:
    agent_with(traced, enabled=False).run("hi", user_id="alice")
    # only the application's own span, made inside the tool
    assert [s.name for s in traced.exporter.get_finished_spans()] == ["orders-db query"]


def test_the_servers_http_span_is_the_parent_of_the_turn(traced: Traced) -> None:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    from tenantry.server import ServerSettings, create_app

    agent = agent_with(traced)
    app = create_app(agent, ServerSettings(_env_file=None, rate_limit_per_minute=0))
    instrumented = OpenTelemetryMiddleware(app, tracer_provider=traced.provider)
    with serve(instrumented) as url:
        reply = httpx.post(f"{url}/v1/chat", json={"message": "hi", "session_id": "s1"})
    assert reply.status_code == 200
    finished = traced.exporter.get_finished_spans()
    server = next(s for s in finished if s.kind == SpanKind.SERVER)
    assert server.name.startswith("POST")
    turn = traced.spans()["invoke_agent support"]
    assert turn.parent is not None
    assert turn.parent.span_id == server.context.span_id
    assert turn.context.trace_id == server.context.trace_id


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_with_a_global_provider_the_instrumentations_span_is_the_only_http_span() -> None:
    """FastAPI's own telemetry (newer FastAPI) would add an HTTP span of its own, in a trace
    of its own, and take the turn from the instrumentation's span: it is off."""
    out = _python(
        """
        import asyncio, httpx
        from opentelemetry import trace
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from tenantry.server import ServerSettings, create_app

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        settings = ServerSettings(_env_file=None, store_url="memory://", rate_limit_per_minute=0)
        app = create_app(settings=settings)

        async def main():
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=OpenTelemetryMiddleware(app))
                async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                    assert (await c.post("/v1/chat", json={"message": "hi"})).status_code == 200

        asyncio.run(main())
        spans = exporter.get_finished_spans()
        servers = [s for s in spans if s.kind == trace.SpanKind.SERVER and "a2a" not in s.name]
        turn = next(s for s in spans if s.name.startswith("invoke_agent"))
        print(len(servers), servers[0].name)
        print(turn.parent.span_id == servers[0].context.span_id)
        """
    )
    assert out.splitlines() == ["1 POST /v1/chat", "True"]


def test_without_opentelemetry_installed_turns_run_untraced() -> None:
    out = _python(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if it were not installed
        from tenantry import Agent, InMemoryStore
        from tenantry import tracing
        agent = Agent(store=InMemoryStore(), model=__import__("tenantry").OfflineModel())
        print(agent.run("My name is Alice", user_id="a").content.startswith("Nice"))
        print(tracing._api is False, agent.tracing.tracer() is None)
        """
    )
    assert out.splitlines() == ["True", "True True"]


def test_a_provider_set_after_the_agent_was_built_is_used_from_the_next_turn() -> None:
    out = _python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from tenantry import Agent, InMemoryStore, OfflineModel, tracing
        tracing.RECHECK_SECONDS = 0.0  # ask again on every turn, not once a second
        agent = Agent(store=InMemoryStore(), model=OfflineModel())
        agent.run("hi", user_id="a")
        print(agent.tracing.tracer() is None)      # the API's proxy: nothing configured
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        agent.run("hi", user_id="a")
        print(sorted(s.name for s in exporter.get_finished_spans()))
        """
    )
    assert out.splitlines() == ["True", "['chat offline', 'invoke_agent agent']"]


def test_a_no_op_provider_is_treated_as_none() -> None:
    out = _python(
        """
        from opentelemetry import trace
        trace.set_tracer_provider(trace.NoOpTracerProvider())
        from tenantry import Agent, InMemoryStore, OfflineModel
        from tenantry.tracing import NO_TRACE
        agent = Agent(store=InMemoryStore(), model=OfflineModel())
        answered = agent.run("hi", user_id="a").content != ""
        print(answered, agent.tracing.turn("a", agent.model) is NO_TRACE)
        """
    )
    assert out == "True True"


def test_tenantry_serve_names_users_in_its_traces_only_as_configured() -> None:
    out = _python(
        """
        import asyncio, json
        import httpx
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from tenantry.server import ServerSettings, create_app
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

        async def turn(**tracing):
            settings = ServerSettings(
                _env_file=None, store_url="memory://", model="offline",
                allowed_hosts=["testserver"], **tracing,
            )
            app = create_app(settings=settings)  # the agent `tenantry serve` runs
            transport = httpx.ASGITransport(app=app)
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                await client.post("/v1/chat", json={"message": "hi", "user_id": "alice"})
            (span,) = [s for s in exporter.get_finished_spans() if "invoke_agent" in s.name]
            exporter.clear()
            return {k: v for k, v in span.attributes.items() if k.startswith("user.")}

        key = "k" * 16
        print(json.dumps([
            asyncio.run(turn()),
            asyncio.run(turn(tracing_user_id="hash", tracing_hash_key=key)),
            asyncio.run(turn(tracing_user_id="raw")),
        ]))
        """
    )
    off, hashed, raw = json.loads(out)
    assert off == {}
    assert hashed == {"user.hash": hmac.new(b"k" * 16, b"alice", hashlib.sha256).hexdigest()}
    assert raw == {"user.id": "alice"}


def test_hashing_user_ids_in_traces_needs_a_key() -> None:
    from pydantic import ValidationError

    from tenantry.server import ServerSettings

    with pytest.raises(ValidationError, match="TENANTRY_TRACING_HASH_KEY"):
        ServerSettings(_env_file=None, tracing_user_id="hash")
    with pytest.raises(ValidationError, match="at least 16"):
        ServerSettings(_env_file=None, tracing_user_id="hash", tracing_hash_key="short")
    with pytest.raises(ValidationError, match="'off', 'hash' or 'raw'"):
        ServerSettings(_env_file=None, tracing_user_id="on")
