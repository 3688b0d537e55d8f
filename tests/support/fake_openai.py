"""A local stand-in for the OpenAI API: Chat Completions with scripted replies, Embeddings with
deterministic vectors, every request recorded."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    """One scripted answer: text and/or tool calls, or an HTTP error."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error: str = ""


EMBEDDING_DIMENSIONS = 64
"""What the fake's embeddings have unless the request asks for `dimensions`."""
_FILLER = frozenset({"the", "user", "a", "an", "is", "in", "of", "and", "has", "s"})


def bag_of_words(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The fake's embedding of `text`: each lowercased word (but a few fillers) adds 1 to a
    dimension picked by its hash, scaled to unit length. Texts that share words are near."""
    vector = [0.0] * dimensions
    for word in re.findall(r"\w+", text.lower()):
        if word in _FILLER:
            continue
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dimensions] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


@dataclass
class FakeOpenAI:
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    embedding_errors: list[Reply] = field(default_factory=list)
    """Errors the next embeddings requests answer with, one each (then vectors again)."""
    embedding_requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.handle, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            ]
        )

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.embedding_requests.append(body)
        if self.embedding_errors:
            reply = self.embedding_errors.pop(0)
            error = {"error": {"message": reply.error, "type": "invalid_request_error"}}
            return JSONResponse(error, status_code=reply.status)
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        data = [
            {"object": "embedding", "index": i, "embedding": bag_of_words(text, dimensions)}
            for i, text in enumerate(texts)
        ]
        tokens = sum(len(text.split()) for text in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data[::-1],  # the API gives an index with each; order is not promised
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def handle(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        reply = self.replies.pop(0) if self.replies else Reply(content="default reply")
        if reply.status != 200:
            error = {"error": {"message": reply.error, "type": "invalid_request_error"}}
            return JSONResponse(error, status_code=reply.status)
        if body.get("stream"):
            return StreamingResponse(self._chunks(body, reply), media_type="text/event-stream")
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": c["function"]}
                for c in reply.tool_calls
            ]
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }
        )

    async def _chunks(self, body: dict[str, Any], reply: Reply) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], usage: dict[str, int] | None = None) -> bytes:
            data = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": None}],
                "usage": usage,
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        for word in (reply.content or "").split(" "):
            if word:
                yield chunk({"content": word + " "})
        for index, call in enumerate(reply.tool_calls):
            args = call["function"]["arguments"]
            half = len(args) // 2
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {
                                "name": call["function"]["name"],
                                "arguments": args[:half],
                            },
                        }
                    ]
                }
            )
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": args[half:]}}]})
        yield chunk({}, usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
        yield b"data: [DONE]\n\n"
