"""`AnthropicModel`: Claude through the Messages API, via the official `anthropic` SDK.

Our messages map onto the API's shape: system messages become `system`, an assistant's tool
calls become `tool_use` blocks, and tool results become `tool_result` blocks of the next user
turn (consecutive results merged into one turn, as the API requires). Usage counts cache reads
and writes; SDK errors become tenantry's typed model errors, keeping the provider's detail in
the message for the log.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tenantry.errors import MissingDependency, ModelError, ModelHTTPError, ModelUnreachable
from tenantry.models.base import ModelBase, ModelResponse, StreamItem
from tenantry.types import Message, ToolCall, ToolSpec, Usage

try:
    import anthropic
except ImportError:  # pragma: no cover - exercised only without the extra
    anthropic = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

# What a mid-stream `error` event's type means, as the HTTP status the API gives it elsewhere.
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def _arguments(call: ToolCall) -> dict[str, Any]:
    """The call's JSON arguments as the object `tool_use.input` must be ({} if they are not)."""
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _blocks(message: Message) -> tuple[str, list[dict[str, Any]]]:
    """The API role and content blocks of one of our non-system messages."""
    if message.role == "tool":
        result = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
        return "user", [{**result, "content": message.content}]
    blocks: list[dict[str, Any]] = []
    if message.content:  # the API refuses empty text blocks
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        use = {"type": "tool_use", "id": call.id, "name": call.name}
        blocks.append({**use, "input": _arguments(call)})
    return ("assistant" if message.role == "assistant" else "user"), blocks


def wire_messages(messages: Sequence[Message]) -> tuple[str, list[dict[str, Any]]]:
    """Give the `system` text and the `messages` list of a Messages API request.

    Messages of the same role in a row become one turn (tool results after a tool call, a user
    message after them), since the API wants user and assistant turns to alternate."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role, blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def wire_tool(spec: ToolSpec) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": spec.name, "input_schema": dict(spec.parameters)}
    if spec.description:
        tool["description"] = spec.description
    return tool


def usage_of(raw: Any) -> Usage:
    """Our Usage from the API's: input counts the uncached, cache-read and cache-write tokens."""
    if raw is None:
        return Usage(requests=1)
    cache_read = int(getattr(raw, "cache_read_input_tokens", 0) or 0)
    cache_write = int(getattr(raw, "cache_creation_input_tokens", 0) or 0)
    return Usage(
        requests=1,
        input_tokens=int(getattr(raw, "input_tokens", 0) or 0) + cache_read + cache_write,
        output_tokens=int(getattr(raw, "output_tokens", 0) or 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def response_of(message: Any) -> ModelResponse:
    """Our ModelResponse from an API `Message`: its text blocks joined, its tool_use blocks."""
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "tool_use":
            arguments = json.dumps(block.input, ensure_ascii=False)
            calls.append(ToolCall(id=block.id, name=block.name, arguments=arguments))
    usage = usage_of(message.usage)
    return ModelResponse(content="".join(text), tool_calls=tuple(calls), usage=usage)


class AnthropicModel(ModelBase):
    """Claude through `anthropic.AsyncAnthropic`; one client shared by every tenant.

    The SDK's own OpenTelemetry spans are off in the client made here, since tenantry's `chat`
    span records the same call (two spans would count its tokens twice); pass `client=` to
    configure the SDK yourself."""

    provider_name = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncAnthropic | None = None,
        max_tokens: int = 4096,
        temperature: float | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if anthropic is None:  # pragma: no cover - exercised only without the extra
            raise MissingDependency("anthropic", "anthropic")
        if not model:
            raise ModelError("name the Anthropic model, e.g. AnthropicModel('claude-sonnet-4-6')")
        self.name = model
        self.model = model
        self._settings: dict[str, Any] = {"max_tokens": max_tokens}
        if temperature is not None:
            self._settings["temperature"] = temperature
        if extra_body:
            self._settings["extra_body"] = dict(extra_body)
        self.client = client or self._client(api_key, base_url, timeout, max_retries)

    @staticmethod
    def _client(
        api_key: str | None, base_url: str | None, timeout: float, max_retries: int
    ) -> AsyncAnthropic:
        options: dict[str, Any] = {
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": max_retries,
            "open_telemetry": False,
        }
        try:
            client = anthropic.AsyncAnthropic(api_key=api_key, **options)
        except anthropic.AnthropicError as exc:  # a broken credentials profile on disk
            raise ModelError(f"cannot configure the Anthropic client: {exc}") from exc
        if client.api_key is None and client.auth_token is None and client.credentials is None:
            if base_url is None:
                raise ModelError(
                    "no Anthropic API key: set ANTHROPIC_API_KEY, pass api_key=..., or give "
                    "base_url of an Anthropic-compatible server that needs none"
                )
            return anthropic.AsyncAnthropic(api_key="no-key", **options)
        return client

    def _request(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> dict[str, Any]:
        system, turns = wire_messages(messages)
        request: dict[str, Any] = {"model": self.model, "messages": turns, **self._settings}
        if system:
            request["system"] = system
        if tools:
            request["tools"] = [wire_tool(t) for t in tools]
        return request

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        try:
            message = await self.client.messages.create(**self._request(messages, tools))
        except anthropic.AnthropicError as exc:
            raise self._error(exc) from exc
        return response_of(message)

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        try:
            async with self.client.messages.stream(**self._request(messages, tools)) as stream:
                async for text in stream.text_stream:
                    if text:
                        yield text
                message = await stream.get_final_message()
        except anthropic.AnthropicError as exc:
            raise self._error(exc) from exc
        yield response_of(message)

    def _error(self, exc: Exception) -> ModelError:
        if isinstance(exc, anthropic.APIStatusError):
            detail = exc.api_message or exc.message
            status = exc.status_code
            if status < 400:  # an `error` event inside a 200 stream: its type says what it was
                status = _ERROR_TYPE_STATUS.get(exc.type or "", 500)
            return ModelHTTPError(status, detail, model=self.model)
        if isinstance(exc, anthropic.APIConnectionError):
            return ModelUnreachable(f"cannot reach the Anthropic API for {self.model!r}: {exc}")
        return ModelError(f"model {self.model!r} failed: {exc}")

    async def aclose(self) -> None:
        """Close the HTTP client (only needed when you created many models)."""
        await self.client.close()


__all__ = ["AnthropicModel"]
