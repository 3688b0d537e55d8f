"""OpenTelemetry traces of agent turns, named as the GenAI semantic conventions name them.

Per turn a span `invoke_agent {agent name}`; under it `chat {model}` per model call and
`execute_tool {tool name}` per tool call, with `gen_ai.operation.name`, `gen_ai.provider.name`,
`gen_ai.request.model`, `gen_ai.conversation.id` (the session id) and the token usage; a failure
sets error status and `error.type` (the exception's class, never its message). The turn span's
parent is whatever span is current when the turn starts: the server's HTTP span when the ASGI
instrumentation is on.

Nothing personal by default: no message text, no tool arguments or results, no user id. The
user id goes in only when the operator opts in, `Tracing(user_id="hash")` (an HMAC-SHA256 of it
as `user.hash`, keyed with `hash_key`, so it cannot be looked up in a list of known ids) or
`"raw"` (`user.id`).

Only `opentelemetry-api` is used (`tenantry[otel]`); the SDK and exporters are the
application's. It is imported lazily: without it, or with no tracer provider configured (the
API's proxy, asked again at most once a second) or a no-op one, a turn costs one cached check
and no span object.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from tenantry.models.base import Model, ModelResponse
from tenantry.tenancy import Scope
from tenantry.types import RunOutput, ToolCall, Usage

UserIdMode = Literal["off", "hash", "raw"]
_INSTRUMENTATION = "tenantry"

RECHECK_SECONDS = 1.0
"""While no tracer provider is configured, how often a turn asks again (an application may
configure OpenTelemetry after it built its agent). Once one is, the answer is kept: the API
lets a process set its global provider only once."""

_api: Any = None
"""The `opentelemetry.trace` module once imported; False when it is not installed."""
_global_tracer: Any = None
"""The global provider's tracer once one is set; False when that provider records nothing."""
_recheck_at = 0.0


def _trace_api() -> Any:
    global _api
    if _api is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _api = False
        else:
            _api = trace
    return _api


def _tracer_of(provider: Any) -> Any:
    from tenantry import __version__

    api = _trace_api()
    if isinstance(provider, api.NoOpTracerProvider):
        return None
    tracer = provider.get_tracer(_INSTRUMENTATION, __version__)
    return None if isinstance(tracer, api.NoOpTracer) else tracer


def _global() -> Any:
    """The global provider's tracer, or None when nothing would be recorded."""
    global _global_tracer, _recheck_at
    if _global_tracer is not None:
        return _global_tracer or None
    now = time.monotonic()
    if now < _recheck_at:
        return None
    api = _trace_api()
    if not api:
        _global_tracer = False
        return None
    provider = api.get_tracer_provider()
    if isinstance(provider, api.ProxyTracerProvider):  # nothing configured (yet)
        _recheck_at = now + RECHECK_SECONDS
        return None
    _global_tracer = _tracer_of(provider) or False
    return _global_tracer or None


class Tracing:
    """How an agent's turns are traced: `Agent(tracing=Tracing(user_id="hash"))`.

    `tracer_provider` defaults to the global one; `enabled=False` records nothing."""

    __slots__ = ("_tracer", "enabled", "hash_key", "tracer_provider", "user_id")

    def __init__(
        self,
        *,
        user_id: UserIdMode = "off",
        hash_key: str | bytes = b"",
        tracer_provider: Any = None,
        enabled: bool = True,
    ) -> None:
        if user_id not in ("off", "hash", "raw"):
            from tenantry.errors import InvalidInput

            raise InvalidInput(f"Tracing(user_id=...) is 'off', 'hash' or 'raw', got {user_id!r}")
        self.user_id = user_id
        self.hash_key = hash_key.encode() if isinstance(hash_key, str) else hash_key
        self.tracer_provider = tracer_provider
        self.enabled = enabled
        self._tracer: Any = None

    def __repr__(self) -> str:
        return f"Tracing(user_id={self.user_id!r}, enabled={self.enabled})"

    def tracer(self) -> Any:
        """The tracer turns use, or None when nothing would be recorded."""
        if not self.enabled:
            return None
        if self.tracer_provider is None:
            return _global()
        if self._tracer is None and _trace_api():
            self._tracer = _tracer_of(self.tracer_provider) or False
        return self._tracer or None

    def turn(self, agent_name: str, model: Model) -> NoTrace:
        """Start tracing one turn (NO_TRACE when nothing is recorded)."""
        tracer = self.tracer()
        if tracer is None:
            return NO_TRACE
        return TurnTrace(tracer, self, agent_name, model)

    def user_attribute(self, user_id: str) -> tuple[str, str] | None:
        if self.user_id == "raw":
            return "user.id", user_id
        if self.user_id == "hash":
            digest = hmac.new(self.hash_key, user_id.encode(), hashlib.sha256).hexdigest()
            return "user.hash", digest
        return None


class _NoCall:
    def done(self, response: ModelResponse) -> None:
        pass


class NoTrace:
    """What an untraced turn records: nothing, at the cost of a few calls."""

    __slots__ = ()
    _call = contextlib.nullcontext(_NoCall())
    _tool = contextlib.nullcontext()

    def wrap(self, items: AsyncIterator[str | RunOutput]) -> AsyncIterator[str | RunOutput]:
        return items

    def scope(self, scope: Scope) -> None:
        pass

    def chat(self, attach: bool) -> contextlib.AbstractContextManager[Any]:
        return self._call

    def tool(self, call: ToolCall) -> contextlib.AbstractContextManager[Any]:
        return self._tool


NO_TRACE = NoTrace()


class _Call:
    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span

    def done(self, response: ModelResponse) -> None:
        if self.span.is_recording():
            self.span.set_attributes(_usage(response.usage))


def _usage(usage: Usage) -> dict[str, int]:
    found = {
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
    }
    if usage.cache_read_tokens:
        found["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        found["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
    return found


def _failed(span: Any, exc: BaseException) -> None:
    api = _trace_api()
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(api.Status(api.StatusCode.ERROR, type(exc).__qualname__))


class TurnTrace(NoTrace):
    """The spans of one turn. The turn span is never made current (the turn is a generator
    that yields to its caller); its children name it as their parent."""

    __slots__ = ("_api", "_common", "_parent", "_span", "_tracer", "_tracing")

    def __init__(self, tracer: Any, tracing: Tracing, agent_name: str, model: Model) -> None:
        api = self._api = _trace_api()
        self._tracer = tracer
        self._tracing = tracing
        self._common: dict[str, str] = {
            "gen_ai.provider.name": str(getattr(model, "provider_name", "tenantry")),
            "gen_ai.request.model": model.name,
        }
        self._span = tracer.start_span(
            f"invoke_agent {agent_name}",
            kind=api.SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent_name,
                **self._common,
            },
        )
        self._parent = api.set_span_in_context(self._span)

    def scope(self, scope: Scope) -> None:
        self._common["gen_ai.conversation.id"] = scope.session_id
        if self._span.is_recording():
            self._span.set_attribute("gen_ai.conversation.id", scope.session_id)
            user = self._tracing.user_attribute(scope.user_id)
            if user is not None:
                self._span.set_attribute(*user)

    async def wrap(self, items: AsyncIterator[str | RunOutput]) -> AsyncIterator[str | RunOutput]:
        """Pass the turn's items through; end the turn span with its usage or its error."""
        span = self._span
        try:
            async for item in items:
                if isinstance(item, RunOutput) and span.is_recording():
                    span.set_attributes(_usage(item.usage))
                yield item
        except Exception as exc:
            _failed(span, exc)
            raise
        finally:
            await items.aclose()  # type: ignore[attr-defined]
            span.end()

    @contextlib.contextmanager
    def _child(
        self, name: str, kind: Any, attributes: dict[str, Any], attach: bool
    ) -> Iterator[Any]:
        span = self._tracer.start_span(name, context=self._parent, kind=kind, attributes=attributes)
        try:
            if attach:
                # neither records the exception nor its message as status: they may be personal
                with self._api.use_span(
                    span, end_on_exit=False, record_exception=False, set_status_on_exception=False
                ):
                    yield span
            else:
                yield span
        except Exception as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()

    @contextlib.contextmanager
    def chat(self, attach: bool) -> Iterator[Any]:
        """A model call's span; current while it runs when `attach` (not across yields)."""
        name = f"chat {self._common['gen_ai.request.model']}"
        attributes = {"gen_ai.operation.name": "chat", **self._common}
        with self._child(name, self._api.SpanKind.CLIENT, attributes, attach) as span:
            yield _Call(span)

    @contextlib.contextmanager
    def tool(self, call: ToolCall) -> Iterator[Any]:
        """A tool call's span, current while the tool runs."""
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
            "gen_ai.tool.type": "function",
        }
        conversation = self._common.get("gen_ai.conversation.id")
        if conversation is not None:
            attributes["gen_ai.conversation.id"] = conversation
        with self._child(
            f"execute_tool {call.name}", self._api.SpanKind.INTERNAL, attributes, True
        ):
            yield None


DEFAULT_TRACING = Tracing()

__all__ = ["DEFAULT_TRACING", "NO_TRACE", "Tracing", "TurnTrace", "UserIdMode"]
