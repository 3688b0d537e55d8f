"""The chat protocol: `POST /v1/chat`, `POST /v1/chat/stream` (Server-Sent Events) and the
legacy `POST /chat` of the seed. The tenant comes from `ServerState.admit`, never from trust
in the body; the turn runs through `turns`, like every transport's.

`Idempotency-Key: <the client's id of the turn>` on /v1/chat and /v1/chat/stream makes a
retry safe: a turn already stored with that key (same session and message) is answered with
its stored reply, with no second model call (`Idempotent-Replayed: true` on /v1/chat; the
stream replays it as one delta); one still running is waited for; the same key with another
body is 422 IdempotencyKeyReused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from tenantry.server.errors import error_body
from tenantry.server.middleware import current_request_id
from tenantry.server.schemas import (
    IdempotencyKey,
    MessageText,
    SessionId,
    UsageBody,
    UserId,
    error_responses,
)
from tenantry.server.state import ServerState, State
from tenantry.server.turns import (
    REPLAYED_HEADER,
    TurnRequest,
    TurnStream,
    run_turn,
    start_stream,
)
from tenantry.tenancy import Scope
from tenantry.types import RunOutput

router = APIRouter(tags=["chat"])
_TURN_ERRORS = error_responses(400, 401, 403, 409, 413, 422, 429, 502, 503, 504)


class ChatRequest(BaseModel):
    message: MessageText
    user_id: UserId | None = Field(
        None,
        description="Open mode: whose conversation (default 'default'). With auth: "
        "the credential's user (omit it); another user's id is 403 unless admin.",
    )
    session_id: SessionId | None = Field(None, description="Which session (default 'default').")


class ChatReply(BaseModel):
    user_id: str
    session_id: str
    reply: str
    run_id: str
    usage: UsageBody

    @classmethod
    def of(cls, output: RunOutput) -> ChatReply:
        return cls(
            user_id=output.user_id,
            session_id=output.session_id,
            reply=output.content,
            run_id=output.run_id,
            usage=UsageBody.of(output.usage),
        )


class LegacyChatRequest(BaseModel):
    """The legacy (seed) request: `{"user_id", "message"}`."""

    user_id: UserId | None = None
    message: MessageText


class LegacyChatReply(BaseModel):
    """The legacy (seed) response: `{"user_id", "reply"}`."""

    user_id: str
    reply: str


@router.post("/v1/chat", response_model=ChatReply, responses=_TURN_ERRORS)
async def chat(
    body: ChatRequest,
    request: Request,
    response: Response,
    state: State,
    idempotency_key: IdempotencyKey = None,
) -> ChatReply:
    """Send a message and get the agent's reply."""
    scope = Scope.of(state.admit(request, body.user_id), body.session_id)
    output = await run_turn(state, TurnRequest("chat", scope, body.message, idempotency_key))
    if output.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return ChatReply.of(output)


@router.post("/chat", response_model=LegacyChatReply, responses=_TURN_ERRORS)
async def legacy_chat(body: LegacyChatRequest, request: Request, state: State) -> LegacyChatReply:
    """The seed's route, verbatim: `{"user_id", "message"}` → `{"user_id", "reply"}`."""
    scope = Scope.of(state.admit(request, body.user_id))
    output = await run_turn(state, TurnRequest("chat", scope, body.message))
    return LegacyChatReply(user_id=output.user_id, reply=output.content)


# --- streaming ------------------------------------------------------------------------------


def sse(event: str, data: Any) -> bytes:
    """Give one Server-Sent Event; its data is one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _events(stream: TurnStream, state: ServerState) -> AsyncIterator[bytes]:
    try:
        async for event in stream:
            if isinstance(event, RunOutput):
                yield sse("done", ChatReply.of(event).model_dump())
            else:
                yield sse("delta", {"text": event})
    except Exception as exc:
        state.metrics.count_error(exc)
        yield sse("error", error_body(exc, current_request_id()))


@router.post(
    "/v1/chat/stream",
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": '`delta` events `{"text"}`, then one `done` event with the same '
            'body as /v1/chat (or one `error` event `{"error"}` if the turn fails late).',
        },
        **_TURN_ERRORS,
    },
)
async def chat_stream(
    body: ChatRequest, request: Request, state: State, idempotency_key: IdempotencyKey = None
) -> StreamingResponse:
    """Send a message and receive the reply as Server-Sent Events.

    The turn runs in its own task: a client that goes away does not cut it short, and
    shutdown waits for it. Errors before the first delta (busy scope, store down) are plain
    HTTP errors; later ones arrive as an `error` event. With an `Idempotency-Key` of a turn
    already stored, its stored reply comes as one delta, then `done`.
    """
    scope = Scope.of(state.admit(request, body.user_id), body.session_id)
    turn = TurnRequest("stream", scope, body.message, idempotency_key)
    stream = await start_stream(state, turn)
    return StreamingResponse(
        _events(stream, state),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


__all__ = [
    "ChatReply",
    "ChatRequest",
    "LegacyChatReply",
    "LegacyChatRequest",
    "router",
    "sse",
]
