"""Chat routes: `POST /v1/chat`, `POST /v1/chat/stream` (Server-Sent Events) and the seed's
`POST /chat`. The tenant comes from `ServerState.admit`, never from trust in the body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from tenantry.server.errors import ShuttingDown, error_body
from tenantry.server.schemas import MessageText, SessionId, UsageBody, UserId, error_responses
from tenantry.server.state import ServerState, State
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


class SeedChatRequest(BaseModel):
    """The seed's request: `{"user_id", "message"}`."""

    user_id: UserId | None = None
    message: MessageText


class SeedChatReply(BaseModel):
    """The seed's response: `{"user_id", "reply"}`."""

    user_id: str
    reply: str


async def run_turn(state: ServerState, transport: str, text: str, scope: Scope) -> RunOutput:
    """Run one turn of `scope`, counted and timed in the metrics."""
    async with state.metrics.turn(transport, scope):
        return await state.agent.arun(text, user_id=scope.user_id, session_id=scope.session_id)


@router.post("/v1/chat", response_model=ChatReply, responses=_TURN_ERRORS)
async def chat(body: ChatRequest, request: Request, state: State) -> ChatReply:
    """Send a message and get the agent's reply."""
    scope = Scope.of(state.admit(request, body.user_id), body.session_id)
    return ChatReply.of(await run_turn(state, "chat", body.message, scope))


@router.post("/chat", response_model=SeedChatReply, responses=_TURN_ERRORS)
async def seed_chat(body: SeedChatRequest, request: Request, state: State) -> SeedChatReply:
    """The seed's route, verbatim: `{"user_id", "message"}` → `{"user_id", "reply"}`."""
    scope = Scope.of(state.admit(request, body.user_id))
    output = await run_turn(state, "chat", body.message, scope)
    return SeedChatReply(user_id=output.user_id, reply=output.content)


# --- streaming ------------------------------------------------------------------------------

StreamItem = str | RunOutput | BaseException


def sse(event: str, data: Any) -> bytes:
    """Give one Server-Sent Event; its data is one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _produce(
    state: ServerState,
    text: str,
    scope: Scope,
    queue: asyncio.Queue[StreamItem],
    transport: str = "stream",
) -> None:
    try:
        async with state.metrics.turn(transport, scope):
            async for item in state.agent.astream(
                text, user_id=scope.user_id, session_id=scope.session_id
            ):
                queue.put_nowait(item)
    except Exception as exc:
        queue.put_nowait(exc)
    except asyncio.CancelledError:  # shutdown's grace period ran out: tell the client
        queue.put_nowait(ShuttingDown("the server stopped before this turn finished; retry"))
        raise


async def _events(
    first: StreamItem, queue: asyncio.Queue[StreamItem], state: ServerState, request_id: str
) -> AsyncIterator[bytes]:
    item = first
    while True:
        if isinstance(item, str):
            yield sse("delta", {"text": item})
        elif isinstance(item, RunOutput):
            yield sse("done", ChatReply.of(item).model_dump())
            return
        else:
            state.metrics.count_error(item)
            yield sse("error", error_body(item, request_id))
            return
        item = await queue.get()


async def start_stream(
    state: ServerState, text: str, scope: Scope, transport: str
) -> tuple[str | RunOutput, asyncio.Queue[StreamItem]]:
    """Start a streamed turn in its own task; give its first item and the queue of the rest.

    An error before the first item (busy scope, store down) is raised here, so the caller can
    still answer with a plain HTTP error."""
    queue: asyncio.Queue[StreamItem] = asyncio.Queue()
    state.spawn(_produce(state, text, scope, queue, transport))
    first = await queue.get()
    if isinstance(first, BaseException):
        raise first
    return first, queue


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


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
async def chat_stream(body: ChatRequest, request: Request, state: State) -> StreamingResponse:
    """Send a message and receive the reply as Server-Sent Events.

    The turn runs in its own task: a client that goes away does not cut it short, and
    shutdown waits for it. Errors before the first delta (busy scope, store down) are plain
    HTTP errors; later ones arrive as an `error` event.
    """
    scope = Scope.of(state.admit(request, body.user_id), body.session_id)
    first, queue = await start_stream(state, body.message, scope, "stream")
    return StreamingResponse(
        _events(first, queue, state, request_id_of(request)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


__all__ = [
    "ChatReply",
    "ChatRequest",
    "StreamItem",
    "request_id_of",
    "router",
    "run_turn",
    "sse",
    "start_stream",
]
