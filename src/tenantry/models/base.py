"""The model protocol: given the messages (and the tools on offer), give the next reply.

A model is stateless towards tenants: everything it may use arrives in `messages`, built per
turn by the agent from the scope's history. `stream` yields text deltas and ends with the
whole `ModelResponse`; models without native streaming can inherit `ModelBase.stream`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tenantry.types import Message, ToolCall, ToolSpec, Usage

_ONE_REQUEST = Usage(requests=1)

CHARS_PER_TOKEN = 4
"""What an estimate counts as one token: about right for English text with GPT and Claude
tokenizers (other languages take more tokens per character)."""


def estimate_tokens(text: str) -> int:
    """Give an estimate of the tokens of `text`: its characters / 4, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimated_usage(
    messages: Sequence[Message], content: str, tool_calls: Sequence[ToolCall] = ()
) -> Usage:
    """Give the estimated usage of one model request (`estimate_tokens` of what was sent and
    of what came back, tool calls' names and arguments included), marked `estimated`: for
    models that report no usage of their own."""

    def calls(found: Sequence[ToolCall]) -> int:
        return sum(estimate_tokens(call.name) + estimate_tokens(call.arguments) for call in found)

    sent = 0
    for m in messages:  # once per request over the whole history window: kept lean
        sent -= -len(m.content) // CHARS_PER_TOKEN
        if m.tool_calls:
            sent += calls(m.tool_calls)
    return Usage(
        requests=1,
        input_tokens=sent,
        output_tokens=estimate_tokens(content) + calls(tool_calls),
        estimated=True,
    )


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """One model answer: text, and the tools it wants called (if any)."""

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = _ONE_REQUEST
    """What the request used; a model that cannot count gives `estimated_usage`."""


StreamItem = str | ModelResponse
"""What `Model.stream` yields: text deltas, then exactly one `ModelResponse`, last."""


@runtime_checkable
class Model(Protocol):
    """Anything that answers a list of messages. Must not keep per-tenant state."""

    @property
    def name(self) -> str: ...

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse: ...

    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]: ...


class ModelBase(ABC):
    """Convenience base: implement `complete`; `stream` then yields the reply in one delta."""

    name: str = "model"

    @abstractmethod
    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse: ...

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        response = await self.complete(messages, tools)
        if response.content:
            yield response.content
        yield response
