"""`POST /v1/chat/completions`: the agent behind the OpenAI Chat Completions shape, so the
official `openai` client (and anything built on it) can talk to a tenantry server.

    client = OpenAI(base_url="http://localhost:8080/v1", api_key="<tenantry API key>")
    client.chat.completions.create(model="tenantry", user="user-a",
        messages=[{"role": "user", "content": "What's my name?"}])

The server keeps each conversation, so a request carries only the NEW user message: the last
message, which must be the user's; earlier messages in the request are ignored, and the
history the model sees is the scope's stored history. `model` is ignored too (the server's
agent decides). Whose conversation: with auth, the credential's user (OpenAI's `user` field,
if given, must be the same user unless the caller is admin); in open mode, the `user` field
(default "default"). Which session: `metadata["session_id"]` or the `X-Session-ID` header
(default "default"). Errors use the OpenAI shape `{"error": {"type", "message"}}` that the
client turns into its typed exceptions.

Chat Completions has no request id of its own, so retries are made safe by the same
`Idempotency-Key` header as /v1/chat, which the official client sends with
`extra_headers={"Idempotency-Key": key}` (and then resends on its own automatic retries):
a turn stored with that key is answered with its stored reply, no second model call.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tenantry.errors import InvalidMessage
from tenantry.server.errors import error_body
from tenantry.server.middleware import current_request_id
from tenantry.server.schemas import IdempotencyKey, UserId, error_responses
from tenantry.server.state import ServerState, State
from tenantry.server.turns import (
    REPLAYED_HEADER,
    TurnRequest,
    TurnStream,
    run_turn,
    start_stream,
)
from tenantry.tenancy import Scope, validate_session_id
from tenantry.types import Usage

router = APIRouter(tags=["openai-compatible"])


class CompletionMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class CompletionRequest(BaseModel):
    """The Chat Completions request; sampling options are accepted and left to the agent."""

    model_config = ConfigDict(extra="allow")

    messages: list[CompletionMessage] = Field(min_length=1)
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: UserId | None = Field(None, description="Whose conversation (open mode); see above.")
    metadata: dict[str, str] | None = Field(
        None, description='`{"session_id": "..."}` picks the session (default "default").'
    )


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, usage: Usage) -> CompletionUsage:
        return cls(
            prompt_tokens=usage.input_tokens,
            completion_tokens=usage.output_tokens,
            total_tokens=usage.total_tokens,
        )


class ReplyMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ReplyMessage
    finish_reason: Literal["stop"] = "stop"


class Completion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


def _new_text(body: CompletionRequest) -> str:
    """Give the text of the request's last message, which must be the user's new message."""
    last = body.messages[-1]
    if last.role != "user":
        raise InvalidMessage(
            f"the last message must be the user's new message (role 'user'), got {last.role!r}; "
            "the server keeps the conversation, so send only the new message"
        )
    if isinstance(last.content, list):
        text = "".join(
            str(part.get("text", "")) for part in last.content if part.get("type") == "text"
        )
    else:
        text = last.content or ""
    if not text.strip():
        raise InvalidMessage("the user's message must not be empty")
    return text


def _scope(body: CompletionRequest, request: Request, state: ServerState) -> Scope:
    session = (body.metadata or {}).get("session_id")
    if session is None:
        session = request.headers.get("x-session-id")
    tenant = state.admit(request, body.user)
    return Scope(tenant, validate_session_id(session))


def _chunk(completion_id: str, model: str, delta: dict[str, Any], **extra: Any) -> bytes:
    data = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": extra.pop("finish", None)}],
        **extra,
    }
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _chunks(
    stream: TurnStream, state: ServerState, include_usage: bool
) -> AsyncIterator[bytes]:
    request_id = current_request_id()
    model = state.agent.model.name
    completion_id = f"chatcmpl-{request_id}"
    yield _chunk(completion_id, model, {"role": "assistant", "content": ""})
    try:
        async for event in stream:
            if isinstance(event, str):
                yield _chunk(completion_id, model, {"content": event})
                continue
            yield _chunk(completion_id, model, {}, finish="stop")
            if include_usage:
                usage = CompletionUsage.of(event.usage).model_dump()
                data = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
                yield f"data: {json.dumps(data)}\n\n".encode()
    except Exception as exc:
        state.metrics.count_error(exc)
        yield f"data: {json.dumps(error_body(exc, request_id))}\n\n".encode()
    yield b"data: [DONE]\n\n"


@router.post(
    "/v1/chat/completions",
    response_model=Completion,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "A chat.completion, or with `stream: true` chat.completion.chunk "
            "events ending with `data: [DONE]`.",
        },
        **error_responses(400, 401, 403, 409, 413, 422, 429, 502, 503, 504),
    },
)
async def chat_completions(
    body: CompletionRequest,
    request: Request,
    response: Response,
    state: State,
    idempotency_key: IdempotencyKey = None,
) -> Completion | StreamingResponse:
    """OpenAI-compatible chat: send the user's new message, get the agent's reply."""
    text = _new_text(body)
    scope = _scope(body, request, state)
    turn = TurnRequest("openai", scope, text, idempotency_key)
    if body.stream:
        stream = await start_stream(state, turn)
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(
            _chunks(stream, state, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    output = await run_turn(state, turn)
    if output.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return Completion(
        id=f"chatcmpl-{output.run_id}",
        created=int(time.time()),
        model=state.agent.model.name,
        choices=[Choice(message=ReplyMessage(content=output.content))],
        usage=CompletionUsage.of(output.usage),
    )


__all__ = ["router"]
