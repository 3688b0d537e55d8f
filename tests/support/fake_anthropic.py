"""A local stand-in for Anthropic's Messages API: scripted replies, recorded requests.

It answers `POST /v1/messages` as the API does, as JSON or as its Server-Sent Events
(message_start, content blocks with text and input_json deltas, message_delta, message_stop),
and can fail with an HTTP status or with an `error` event in the middle of a stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class AnthropicReply:
    """One scripted answer: text and/or tool uses (id, name, input), or an error."""

    text: str = ""
    tool_uses: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    error: str = ""
    stream_error: str = ""
    """An error event type sent after the first text delta of a streamed answer."""
    usage: dict[str, int] = field(
        default_factory=lambda: {
            "input_tokens": 11,
            "output_tokens": 7,
            "cache_read_input_tokens": 3,
            "cache_creation_input_tokens": 2,
        }
    )


@dataclass
class FakeAnthropic:
    replies: list[AnthropicReply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self.replies.pop(0) if self.replies else AnthropicReply(text="default reply")
        if reply.status != 200:
            error = {"type": ERROR_TYPES.get(reply.status, "api_error"), "message": reply.error}
            return JSONResponse({"type": "error", "error": error}, status_code=reply.status)
        if body.get("stream"):
            return StreamingResponse(self._events(body, reply), media_type="text/event-stream")
        return JSONResponse(
            {
                **_message(body, reply),
                "content": _content(reply),
                "stop_reason": "tool_use" if reply.tool_uses else "end_turn",
                "usage": reply.usage,
            }
        )

    async def _events(self, body: dict[str, Any], reply: AnthropicReply) -> AsyncIterator[bytes]:
        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

        start_usage = {**reply.usage, "output_tokens": 1}
        yield event("message_start", {"message": {**_message(body, reply), "usage": start_usage}})
        yield event("ping", {})
        index = 0
        if reply.text:
            yield event(
                "content_block_start",
                {"index": index, "content_block": {"type": "text", "text": ""}},
            )
            for n, word in enumerate(reply.text.split(" ")):
                piece = word if n == 0 else " " + word
                yield event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "text_delta", "text": piece}},
                )
                if reply.stream_error:
                    error = {"type": reply.stream_error, "message": "failed mid-stream"}
                    yield event("error", {"error": error})
                    return
            yield event("content_block_stop", {"index": index})
            index += 1
        for call_id, name, arguments in reply.tool_uses:
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            yield event("content_block_start", {"index": index, "content_block": block})
            text = json.dumps(arguments)
            half = len(text) // 2
            for part in (text[:half], text[half:]):
                delta = {"type": "input_json_delta", "partial_json": part}
                yield event("content_block_delta", {"index": index, "delta": delta})
            yield event("content_block_stop", {"index": index})
            index += 1
        stop = "tool_use" if reply.tool_uses else "end_turn"
        yield event(
            "message_delta",
            {
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": reply.usage["output_tokens"]},
            },
        )
        yield event("message_stop", {})


def _message(body: dict[str, Any], reply: AnthropicReply) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }


def _content(reply: AnthropicReply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    for call_id, name, arguments in reply.tool_uses:
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": arguments})
    return blocks
