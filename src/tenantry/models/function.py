"""`FunctionModel`: a model whose answer is computed by your function. For tests, demos and
benchmarks: deterministic, in-process, and it can request tool calls.

    def answer(messages, tools):
        return "ok"                     # or a ModelResponse with tool_calls
    agent = Agent(model=FunctionModel(answer))

Usage: a response that reports tokens (`ModelResponse(usage=Usage(...))`) keeps them; any other
answer gets an estimate (characters / 4, `estimated_usage`), marked `estimated`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from tenantry.models.base import ModelBase, ModelResponse, estimated_usage
from tenantry.types import Message, ToolSpec

Answer = str | ModelResponse
AnswerFunction = Callable[[Sequence[Message], Sequence[ToolSpec]], Answer | Awaitable[Answer]]


class FunctionModel(ModelBase):
    """Answers with `function(messages, tools)`, sync or async; a str becomes the content."""

    def __init__(self, function: AnswerFunction, *, name: str = "function") -> None:
        self.function = function
        self.name = name

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        answer = self.function(messages, tools)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, ModelResponse):
            answer = ModelResponse(content=answer)
        if answer.usage.input_tokens or answer.usage.output_tokens:
            return answer
        usage = estimated_usage(messages, answer.content, answer.tool_calls)
        return replace(answer, usage=usage)
