"""`OpenAIChatModel`: any OpenAI-compatible Chat Completions endpoint, via the official SDK.

`base_url` points it at Ollama (http://localhost:11434/v1), vLLM, LM Studio, llama.cpp's
server or OpenRouter. Local servers need no key: when `base_url` is given and no key is found,
a placeholder key is sent. With `model=None` the model is the one the server lists at
`/models` (asked before the first call), which must be exactly one. SDK errors become
tenantry's typed model errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tenantry.errors import MissingDependency, ModelError, ModelHTTPError, ModelUnreachable
from tenantry.models.base import ModelBase, ModelResponse, StreamItem, estimated_usage
from tenantry.types import Message, ToolCall, ToolSpec, Usage

try:
    import openai
except ImportError:  # pragma: no cover - exercised only without the extra
    openai = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from openai import AsyncOpenAI


def _wire_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    data: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        data["content"] = message.content or None
        data["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return data


def _wire_tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": dict(spec.parameters),
        },
    }


def _usage(raw: Any) -> Usage | None:
    """Our Usage from the API's `usage`; None when the server sent none (some
    OpenAI-compatible servers do not), and the caller then estimates it."""
    if raw is None:
        return None
    details = getattr(raw, "prompt_tokens_details", None)
    return Usage(
        requests=1,
        input_tokens=int(getattr(raw, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(raw, "completion_tokens", 0) or 0),
        cache_read_tokens=int(getattr(details, "cached_tokens", 0) or 0),
    )


class OpenAIChatModel(ModelBase):
    """Chat Completions through `openai.AsyncOpenAI`; one client shared by every tenant."""

    provider_name = "openai"
    AUTO = "auto"
    """The name of a model that will be the server's only one, until it has been asked."""

    def __init__(
        self,
        model: str | None = "gpt-4o-mini",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncOpenAI | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if openai is None:  # pragma: no cover - exercised only without the extra
            raise MissingDependency("openai", "openai")
        self.name = model or self.AUTO
        self.model = model
        self._settings: dict[str, Any] = {}
        if temperature is not None:
            self._settings["temperature"] = temperature
        if max_tokens is not None:
            self._settings["max_tokens"] = max_tokens
        if extra_body:
            self._settings["extra_body"] = dict(extra_body)
        self.client = client or self._client(api_key, base_url, timeout, max_retries)

    @staticmethod
    def _client(
        api_key: str | None, base_url: str | None, timeout: float, max_retries: int
    ) -> AsyncOpenAI:
        options: dict[str, Any] = {"timeout": timeout, "max_retries": max_retries}
        try:
            return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, **options)
        except openai.OpenAIError as exc:
            if base_url is None:
                raise ModelError(
                    "no OpenAI API key: set OPENAI_API_KEY, pass api_key=..., or give base_url "
                    "of a local OpenAI-compatible server"
                ) from exc
            # Local servers (Ollama, vLLM, LM Studio) accept any key.
            return openai.AsyncOpenAI(api_key="no-key", base_url=base_url, **options)

    async def resolve(self) -> str:
        """Give the model's name; with none given, the only model the server lists."""
        if self.model is not None:
            return self.model
        try:
            served = sorted({entry.id async for entry in self.client.models.list()})
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        if len(served) != 1:
            listed = ", ".join(served[:10]) + (", ..." if len(served) > 10 else "")
            raise ModelError(
                f"no model was named and {self.client.base_url} serves {len(served)} models"
                f"{f' ({listed})' if served else ''}: set TENANTRY_MODEL (or pass model=...) "
                "to the one to use"
            )
        self.model = self.name = served[0]
        return self.model

    def _request(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [_wire_message(m) for m in messages],
            **self._settings,
        }
        if tools:
            request["tools"] = [_wire_tool(t) for t in tools]
        return request

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        await self.resolve()
        try:
            response = await self.client.chat.completions.create(**self._request(messages, tools))
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        if not response.choices:
            raise ModelError(f"model {self.model!r} returned no choices")
        message = response.choices[0].message
        calls = tuple(
            ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments or "{}")
            for call in message.tool_calls or ()
            if getattr(call, "function", None) is not None
        )
        content = message.content or ""
        usage = _usage(response.usage) or estimated_usage(messages, content, calls)
        return ModelResponse(content=content, tool_calls=calls, usage=usage)

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        await self.resolve()
        request = self._request(messages, tools)
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage: Usage | None = None
        try:
            chunks = await self.client.chat.completions.create(**request)
            async for chunk in chunks:
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        yield delta.content
                    for part in delta.tool_calls or ():
                        call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                        if part.id:
                            call["id"] = part.id
                        if part.function is not None:
                            call["name"] += part.function.name or ""
                            call["arguments"] += part.function.arguments or ""
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        tool_calls = tuple(
            ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"] or "{}")
            for _, c in sorted(calls.items())
        )
        content = "".join(text)
        usage = usage or estimated_usage(messages, content, tool_calls)
        yield ModelResponse(content=content, tool_calls=tool_calls, usage=usage)

    def _error(self, exc: Exception) -> ModelError:
        if isinstance(exc, openai.APIStatusError):
            return ModelHTTPError(exc.status_code, exc.message, model=self.name)
        if isinstance(exc, openai.APIConnectionError):
            return ModelUnreachable(f"cannot reach the model API for {self.name!r}: {exc}")
        return ModelError(f"model {self.name!r} failed: {exc}")

    async def aclose(self) -> None:
        """Close the HTTP client (only needed when you created many models)."""
        await self.client.close()
