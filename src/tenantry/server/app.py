"""`create_app(agent, settings)`: the ASGI app that serves one agent to many tenants."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from http import HTTPStatus
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.authentication import AuthenticationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection

from tenantry import __version__
from tenantry.agent import Agent
from tenantry.errors import TenantryError
from tenantry.server import chat, memories, openai_compat, ops, usage, users
from tenantry.server.a2a import a2a_handler, a2a_routes
from tenantry.server.a2a_card import RPC_PATH, card_route, challenges
from tenantry.server.a2a_refusals import jsonrpc_refusals
from tenantry.server.auth import Authenticator, TenantAuthBackend
from tenantry.server.config import ServerSettings
from tenantry.server.docs import docs_router
from tenantry.server.errors import (
    InvalidRequest,
    MalformedJSON,
    Unauthorized,
    openai_error_response,
)
from tenantry.server.fastchat import FastChatMiddleware
from tenantry.server.guards import (
    AllowedHosts,
    HostCheckMiddleware,
    JSONBodyMiddleware,
    OriginCheckMiddleware,
)
from tenantry.server.memory_metrics import watch_memory_jobs
from tenantry.server.metrics import Metrics
from tenantry.server.middleware import (
    BodyLimitMiddleware,
    RequestIdMiddleware,
    RequireCredentialMiddleware,
    SegmentPathMiddleware,
    current_request_id,
    error_format,
)
from tenantry.server.ratelimit import rate_limiter
from tenantry.server.state import ServerState
from tenantry.tracing import Tracing
from tenantry.usage import Budgets

logger = logging.getLogger("tenantry.server")
PROTECTED = ("/v1/", "/chat", "/a2a")
PUBLIC = frozenset({"/v1/info"})
USER_PATHS = "/v1/users/"
"""Routes whose path holds ids; they are routed on the path's segments as sent."""
_STATIC = resources.files("tenantry.server") / "static"
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _default_agent(settings: ServerSettings) -> Agent:
    from tenantry.memory.config import memory_from_settings
    from tenantry.models import model_from_settings
    from tenantry.storage.url import open_store

    key = settings.tracing_hash_key
    return Agent(
        name="tenantry",
        model=model_from_settings(settings),
        store=open_store(settings.store_url),
        memory=memory_from_settings(settings) or False,
        idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        budgets=Budgets.from_settings(settings),
        tracing=Tracing(
            user_id=settings.tracing_user_id,
            hash_key=key.get_secret_value() if key is not None else b"",
        ),
    )


def _validation_error(errors: Sequence[Any], content_type: str) -> TenantryError:
    if any(e.get("type") == "json_invalid" for e in errors):
        return MalformedJSON("the request body is not valid JSON")
    if "json" not in content_type and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        # FastAPI reads a body as JSON only when the request says so; curl -d says it is a
        # form unless told otherwise. Say that, rather than "not a valid dictionary".
        said = f"'{content_type}'" if content_type else "no Content-Type"
        message = (
            f"the body must be a JSON object sent with Content-Type: application/json ({said})"
        )
        return InvalidRequest(message, [{"field": "body", "message": message}])
    details = []
    for e in errors:
        where = ".".join(str(part) for part in e.get("loc", ()))
        message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        details.append({"field": where, "message": message})
    text = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return InvalidRequest(text or "the request is not valid", details)


def _install_error_handlers(app: FastAPI, state: ServerState) -> None:
    def respond(request: Request, exc: BaseException) -> Response:
        state.metrics.count_error(exc)
        return error_format(request.scope)(exc, current_request_id())

    async def on_tenantry(request: Request, exc: Exception) -> Response:
        return respond(request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        content_type = request.headers.get("content-type", "")
        return respond(request, _validation_error(exc.errors(), content_type))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        phrase = HTTPStatus(exc.status_code).phrase
        kind = phrase.title().replace(" ", "").replace("-", "")
        state.metrics.errors.labels(kind).inc()
        body = {"error": {"type": kind, "message": str(exc.detail)}}
        return JSONResponse(body, exc.status_code, headers=exc.headers)

    app.add_exception_handler(TenantryError, on_tenantry)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def _install_middleware(app: FastAPI, state: ServerState) -> None:
    settings = state.settings

    def on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
        error = Unauthorized(str(exc))
        state.metrics.count_error(error)
        return error_format(conn.scope)(error, current_request_id())

    # Added innermost first: the last one added sees the request first.
    app.add_middleware(FastChatMiddleware, state=state)  # after every guard (fastchat.py)
    app.add_middleware(SegmentPathMiddleware, prefix=USER_PATHS)
    app.add_middleware(
        RequireCredentialMiddleware,
        enabled=state.auth,
        protected=PROTECTED,
        public=PUBLIC,
        on_error=state.metrics.count_error,
    )
    app.add_middleware(
        AuthenticationMiddleware,
        backend=TenantAuthBackend(state.authenticator),
        on_error=on_auth_error,
    )
    app.add_middleware(JSONBodyMiddleware, on_error=state.metrics.count_error)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=[
                "A2A-Version",
                "Authorization",
                "Content-Type",
                "X-API-Key",
                "X-Request-ID",
                "X-Session-ID",
            ],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, on_error=state.metrics.count_error
    )
    if not state.auth:
        app.add_middleware(
            OriginCheckMiddleware,
            public_url=settings.public_url,
            cors_origins=settings.cors_origins,
            on_error=state.metrics.count_error,
        )
    app.add_middleware(
        HostCheckMiddleware,
        allowed=AllowedHosts.for_settings(settings),
        on_error=state.metrics.count_error,
    )
    jsonrpc = jsonrpc_refusals(challenges(state.authenticator))
    app.add_middleware(
        RequestIdMiddleware,
        on_error=state.metrics.count_error,
        formats={  # JSON-RPC and OpenAI's clients read these
            RPC_PATH: jsonrpc,
            RPC_PATH + "/": jsonrpc,
            openai_compat.PATH: openai_error_response,
        },
    )


async def _flush_memory(agent: Agent, grace: float) -> None:
    """Wait up to `grace` seconds for the memory jobs of the turns served (their turns are
    stored; a job cut short only leaves its memory unlearned)."""
    jobs = agent.memory_jobs
    if jobs is None or not jobs.pending():
        return
    logger.info("waiting for %d memory job(s)", jobs.pending())
    try:
        async with asyncio.timeout(grace):
            await agent.aflush()
    except TimeoutError:
        logger.warning("%d memory job(s) unfinished at shutdown; not learned", jobs.pending())


async def _prune_forever(state: ServerState, hours: float, every: float) -> None:
    """Delete sessions idle for `hours`, every `every` seconds, for as long as the app runs."""
    while True:
        try:
            deleted = await state.agent.store.prune_inactive(timedelta(hours=hours))
            if deleted:
                logger.info("pruned %d session(s) idle for over %gh", deleted, hours)
        except TenantryError as exc:
            logger.warning("pruning idle sessions failed: %s", exc)
        await asyncio.sleep(every)


def create_app(agent: Agent | None = None, settings: ServerSettings | None = None) -> FastAPI:
    """Give the ASGI app serving `agent` (default: one built from `settings`, whose store the
    app closes on shutdown) to many tenants, configured by `settings` (default: the env)."""
    settings = settings or ServerSettings()
    owns_store = agent is None
    agent = agent if agent is not None else _default_agent(settings)
    state = ServerState(
        agent=agent,
        settings=settings,
        authenticator=Authenticator(settings),
        limiter=rate_limiter(
            agent.store, settings.rate_limit_per_minute, max_tenants=settings.rate_limit_tenants
        ),
        metrics=Metrics(),
    )
    handler = a2a_handler(state)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pruner = None
        if settings.prune_inactive_hours is not None:
            pruner = asyncio.create_task(
                _prune_forever(
                    state, settings.prune_inactive_hours, settings.prune_interval_seconds
                )
            )
        try:
            yield
        finally:
            if pruner is not None:
                pruner.cancel()
            started = asyncio.get_running_loop().time()
            await state.drain(settings.graceful_timeout)
            left = settings.graceful_timeout - (asyncio.get_running_loop().time() - started)
            await _flush_memory(agent, max(0.0, left))  # after the turns, which queue jobs
            await handler.aclose()
            if owns_store:
                await agent.store.close()

    app = FastAPI(
        title="tenantry",
        version=__version__,
        summary="One agent, many users: chat with isolated history per tenant.",
        lifespan=lifespan,
        docs_url=None,  # served by docs_router from installed files, not a CDN
        redoc_url=None,
        **_without_fastapi_telemetry(),
    )
    app.state.tenantry = state
    watch_memory_jobs(state.metrics.registry, agent.memory_jobs)
    routers = (chat, openai_compat, users, memories, usage, ops)
    for router in (module.router for module in routers):
        app.include_router(router)
    app.include_router(docs_router(app.title, app.openapi_url or "/openapi.json"))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(_STATIC / "index.html"), headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=str(_STATIC)), name="static")
    app.router.routes.extend([card_route(state), *a2a_routes(handler)])
    _install_error_handlers(app, state)
    _install_middleware(app, state)
    return app


def _without_fastapi_telemetry() -> dict[str, Any]:
    """FastAPI's own OpenTelemetry (in newer FastAPI versions) off: with a global tracer
    provider it makes an HTTP span of its own on every request, in a trace of its own, which
    becomes the turns' parent instead of the span of the ASGI instrumentation the README
    shows (two server spans, two traces for one request), and checking the providers on
    every request costs about 4 % of the server's CPU. HTTP spans come from the
    instrumentation of your choice."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


__all__ = ["create_app"]
