"""Pure ASGI middleware: request ids, access log and each path's error format, body size
limit, credential gate.

Pure ASGI (not BaseHTTPMiddleware) so streamed responses pass through untouched and a
client that disconnects does not cancel a turn that is writing its result.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
from collections.abc import Callable, Mapping
from urllib.parse import unquote

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantry.server.errors import BodyTooLarge, Unauthorized, error_response, one_line
from tenantry.types import new_id

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access_log = logging.getLogger("tenantry.server.access")
_GOOD_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SEGMENT_ESCAPE = re.compile(r"%(25|2F)")
_ID_HEADER = b"x-request-id"

ErrorCounter = Callable[[BaseException], None]
ErrorFormat = Callable[[BaseException, str], Response]
"""Gives the response for an error and the request id: `error_response`, or a protocol's own
(A2A's JSON-RPC endpoint answers JSON-RPC errors)."""
ERROR_FORMAT = "tenantry.error_format"
"""The ASGI scope key `RequestIdMiddleware` puts a path's error format under."""


def header(scope: Scope, name: bytes) -> str | None:
    """Give the first value of the request header `name` (lower case, as ASGI gives names),
    decoded as Starlette's `Headers` does, or None: what `Headers(scope=scope).get` gives,
    without building a `Headers` (every guard reads one or two per request)."""
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def has_header(scope: Scope, name: bytes) -> bool:
    """Whether the request has a header `name` (lower case)."""
    return any(key == name for key, _ in scope["headers"])


def error_format(scope: Scope) -> ErrorFormat:
    """Give the error format of the request's path (see `RequestIdMiddleware`)."""
    found: ErrorFormat = scope.get(ERROR_FORMAT, error_response)
    return found


async def refuse(
    exc: BaseException,
    on_error: ErrorCounter,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    close: bool = False,
) -> None:
    """Answer the request with the error response for `exc` (counted by `on_error`) instead
    of passing it on; `close` also ends the connection (the body was not read)."""
    on_error(exc)
    response = error_format(scope)(exc, current_request_id())
    if close:
        response.headers["Connection"] = "close"
    await response(scope, receive, send)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record, so a format can show `%(request_id)s`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


class RequestIdMiddleware:
    """Give each request an id (the client's X-Request-ID if sane, else a new one), echo it
    in the response's X-Request-ID, keep it in a context variable for logs, and log one
    access line per request (method, path, status, duration; no body, no credential).

    It is also the last resort: an exception nothing else handled becomes a JSON 500 with
    the request id (logged with its traceback), never a stack trace sent to the client.

    Being the first to see a request, it also tells the layers inside how to answer an
    error on its path: the `formats` entry of that path, else `error_response`."""

    def __init__(
        self,
        app: ASGIApp,
        on_error: ErrorCounter,
        formats: Mapping[str, ErrorFormat] | None = None,
    ) -> None:
        self.app = app
        self.on_error = on_error
        self.formats = dict(formats or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = self.formats.get(scope["path"])
        if found is not None:
            scope = {**scope, ERROR_FORMAT: found}
        offered = header(scope, b"x-request-id") or ""
        request_id = offered if _GOOD_REQUEST_ID.fullmatch(offered) else new_id()
        token = _request_id.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _ID_HEADER]
                message["headers"] = [*kept, (_ID_HEADER, request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if status:  # the response has begun: nothing sensible can be sent any more
                raise
            self.on_error(exc)
            await error_format(scope)(exc, request_id)(scope, receive, send_with_id)
        finally:
            access_log.info(
                "%s %s %d %.1fms",
                scope["method"],
                one_line(scope["path"]),  # decoded: "%0A" in the URL is a newline here
                status,
                (time.perf_counter() - started) * 1000,
            )
            _request_id.reset(token)


def current_request_id() -> str:
    """Give the id of the request being served ("-" outside a request).

    The one way to read it: routes, error handlers, middleware inside RequestIdMiddleware,
    the tasks a request spawns and the A2A SDK's executor all run in the request's context."""
    return _request_id.get()


def routing_path(raw_path: bytes) -> str:
    """Give the path to route on: each segment decoded on its own, with the "%" and "/" it
    holds kept escaped (%25, %2F), so an id holding "/" stays one segment."""
    segments = raw_path.decode("latin-1").split("/")
    return "/".join(unquote(s).replace("%", "%25").replace("/", "%2F") for s in segments)


def unescape_segment(value: str) -> str:
    """Undo `routing_path`'s escapes in one path parameter."""
    return _SEGMENT_ESCAPE.sub(lambda found: "%" if found.group(1) == "25" else "/", value)


class SegmentPathMiddleware:
    """Route paths under `prefix` on their segments as the client sent them.

    ASGI servers decode the path before routing, so `DELETE /v1/users/x%2Fsessions%2Fs`
    would reach the route for session "s" of user "x" instead of user "x/sessions/s". Under
    `prefix` this routes on `routing_path(raw_path)`; path parameters there are read through
    `unescape_segment` (see `schemas.PathUserId`)."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            raw = scope.get("raw_path")
            if raw is None:  # the server kept no raw path: "/" in an id cannot be told apart
                path = scope["path"].replace("%", "%25")
            else:
                path = routing_path(raw.partition(b"?")[0])
            scope = {**scope, "path": path}
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413, counting the bytes actually received (a
    chunked body or a lying Content-Length cannot get past it). The body is read up to the
    limit before the app runs, so the app never sees a partial body."""

    def __init__(self, app: ASGIApp, max_bytes: int, on_error: ErrorCounter) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length") or ""
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = BodyTooLarge(f"the request body exceeds the limit of {self.max_bytes} bytes")
        await refuse(exc, self.on_error, scope, receive, send, close=True)


class RequireCredentialMiddleware:
    """With auth on, answer 401 to any unauthenticated request under a protected prefix.

    Runs after Starlette's AuthenticationMiddleware. It is what enforces the A2A card's
    security requirements, which the A2A SDK itself does not."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        enabled: bool,
        protected: tuple[str, ...],
        public: frozenset[str],
        on_error: ErrorCounter,
    ) -> None:
        self.app = app
        self.enabled = enabled
        self.protected = protected
        self.public = public
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] == "http" and scope["method"] != "OPTIONS":
            path: str = scope["path"]
            user = scope.get("user")
            if (
                path.startswith(self.protected)
                and path not in self.public
                and not getattr(user, "is_authenticated", False)
            ):
                exc = Unauthorized(
                    "authentication required: send X-API-Key: <key> or "
                    "Authorization: Bearer <token>"
                )
                await refuse(exc, self.on_error, scope, receive, send)
                return
        await self.app(scope, receive, send)


__all__ = [
    "ERROR_FORMAT",
    "BodyLimitMiddleware",
    "ErrorFormat",
    "RequestIdFilter",
    "RequestIdMiddleware",
    "RequireCredentialMiddleware",
    "SegmentPathMiddleware",
    "current_request_id",
    "error_format",
    "refuse",
    "routing_path",
    "unescape_segment",
]
