"""The steps of a turn that leave the agent: the model call (its failures become
`ModelError`, with nothing of the turn stored), the runs of the tools the model asks for, and
the history window a prompt may open with. `Agent._turn` (in `agent`) strings them together
between its lock, its read and its write."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import NoReturn

from tenantry.errors import ModelError, TenantryError
from tenantry.models.base import Model, ModelResponse
from tenantry.tools import RunContext
from tenantry.toolsets import RunTool
from tenantry.tracing import NO_TRACE, NoTrace
from tenantry.types import Message, ToolSpec


def opening_window(history: list[Message]) -> list[Message]:
    """Drop leading messages that cannot open a conversation (a tool result whose call fell
    outside the window would be rejected by the model's API)."""
    for start, message in enumerate(history):
        if message.role == "user":
            return history[start:] if start else history
    return []


async def call_model(
    model: Model, messages: Sequence[Message], specs: Sequence[ToolSpec]
) -> ModelResponse:
    """Give the model's answer to `messages`; its failure is a ModelError."""
    try:
        return await model.complete(messages, specs)
    except TenantryError:
        raise
    except Exception as exc:
        model_failed(model, exc)


async def stream_model(
    model: Model, messages: Sequence[Message], specs: Sequence[ToolSpec]
) -> AsyncIterator[str | ModelResponse]:
    """Yield the model's text deltas, then its whole response; its failure, or a stream
    that ends without a response, is a ModelError."""
    response: ModelResponse | None = None
    try:
        async for item in model.stream(messages, specs):
            if isinstance(item, ModelResponse):
                response = item
            else:
                yield item
    except TenantryError:
        raise
    except Exception as exc:
        model_failed(model, exc)
    if response is None:
        raise ModelError(f"model {model.name!r} ended its stream without a response")
    yield response


def model_failed(model: Model, exc: Exception) -> NoReturn:
    raise ModelError(
        f"model {model.name!r} failed: {type(exc).__name__}: {exc}; nothing of this turn was stored"
    ) from exc


async def run_tools(
    response: ModelResponse,
    ctx: RunContext,
    by_name: Mapping[str, RunTool],
    trace: NoTrace = NO_TRACE,
) -> list[Message]:
    """Run the tools `response` asks for, one after the other; give their result messages
    (an unknown tool's result names the tools there are)."""
    results = []
    for call in response.tool_calls:
        found = by_name.get(call.name)
        if found is None:
            known = ", ".join(sorted(by_name)) or "none"
            content = f"Unknown tool {call.name!r}; available tools: {known}."
        else:
            with trace.tool(call):
                content = await found.run(call.arguments, ctx)
        results.append(Message.tool(content, tool_call_id=call.id, name=call.name))
    return results


__all__ = ["call_model", "opening_window", "run_tools", "stream_model"]
