"""`POST /v1/chat` without FastAPI's routing, dependency and serialisation layers.

The hottest route is served here, as the innermost of the app's middleware, after every
guard (host, origin, body limit, JSON body, credential) has seen the request: the body is
validated by the route's own model (`ChatRequest`, pydantic-core parsing the bytes), the
turn runs through `turns.run_turn` as every transport's does, and the reply is the route's
own model (`ChatReply`) serialised by pydantic-core. FastAPI's route stays declared for the
OpenAPI schema and serves every request this one passes on: a body that does not validate
(so every error message stays FastAPI's, word for word), a request with an `Idempotency-Key`
header (its checks and its replay header are the route's), another path or method, a root
path.

On this route FastAPI would spend about a third of the server's CPU per request on routing,
solving dependencies and validating the reply it was handed (profiled with py-spy).
"""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantry.errors import TenantryError
from tenantry.server.chat import ChatReply, ChatRequest
from tenantry.server.middleware import refuse
from tenantry.server.state import ServerState
from tenantry.server.turns import TurnRequest, run_turn
from tenantry.tenancy import Scope as TenantScope

PATH = "/v1/chat"
IDEMPOTENCY_HEADER = b"idempotency-key"
"""ASGI header names are lower case."""
_HEADERS = [(b"content-type", b"application/json")]


class FastChatMiddleware:
    """Serve valid `POST /v1/chat` requests directly; pass everything else on."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
            or any(name == IDEMPOTENCY_HEADER for name, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:  # the body limit middleware already read it: one message
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            request = ChatRequest.model_validate_json(body)
        except ValidationError:  # FastAPI says what is wrong, as it always has
            await self.app(scope, _replay(body, receive), send)
            return
        state = self.state
        try:
            tenant = await state.admit(HTTPConnection(scope), request.user_id)
            turn = TurnRequest("chat", TenantScope.of(tenant, request.session_id), request.message)
            output = await run_turn(state, turn)
        except TenantryError as exc:
            await refuse(exc, state.metrics.count_error, scope, receive, send)
            return
        content = ChatReply.of(output).model_dump_json().encode()
        headers = [*_HEADERS, (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


__all__ = ["FastChatMiddleware"]
