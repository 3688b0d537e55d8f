"""Models report real usage where the provider does, and an honest, labelled estimate where it
does not: the offline model, FunctionModel, an OpenAI-compatible server that sends no usage."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from tenantry import FunctionModel, Message, OfflineModel, OpenAIChatModel
from tenantry.models import ModelResponse
from tenantry.models.base import estimated_usage
from tenantry.types import ToolSpec, Usage

SENT = [Message.system("You are terse."), Message.user("What is the capital of France?")]


async def test_the_offline_model_estimates_and_says_so() -> None:
    response = await OfflineModel().complete(SENT)
    assert response.usage == estimated_usage(SENT, response.content)
    assert response.usage.estimated
    assert response.usage.input_tokens == (14 + 3) // 4 + (30 + 3) // 4


async def test_a_function_model_estimates_unless_the_answer_reports_tokens() -> None:
    def plain(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        return "Paris."

    def reported(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        return ModelResponse("Paris.", usage=Usage(requests=1, input_tokens=9, output_tokens=2))

    estimated = (await FunctionModel(plain).complete(SENT)).usage
    assert estimated == estimated_usage(SENT, "Paris.")
    assert estimated.estimated
    real = (await FunctionModel(reported).complete(SENT)).usage
    assert real == Usage(requests=1, input_tokens=9, output_tokens=2)
    assert not real.estimated


async def test_an_openai_compatible_server_without_usage_gets_an_estimate() -> None:
    model = OpenAIChatModel("m", api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    message = SimpleNamespace(content="Paris.", tool_calls=None)
    answer = SimpleNamespace(choices=[SimpleNamespace(message=message)], usage=None)

    async def create(**_: Any) -> SimpleNamespace:
        return answer

    model.client.chat.completions.create = create  # type: ignore[method-assign,assignment]
    usage = (await model.complete(SENT)).usage
    assert usage == estimated_usage(SENT, "Paris.")
    assert usage.estimated
