"""Operations routes: liveness, readiness (the store answers), Prometheus metrics, and the
public facts a client needs before it logs in."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from tenantry import __version__
from tenantry.errors import StoreUnavailable, TenantryError
from tenantry.server.auth import principal_of
from tenantry.server.errors import Forbidden, Unauthorized
from tenantry.server.schemas import error_responses
from tenantry.server.state import State

router = APIRouter(tags=["operations"])
READY_TIMEOUT = 5.0


class Health(BaseModel):
    status: str


class Info(BaseModel):
    name: str
    version: str
    model: str
    auth: bool = Field(description="Whether calls need a credential.")
    schemes: list[str] = Field(description="Accepted credentials: apiKey, bearer.")


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving requests."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=error_responses(503))
async def readyz(state: State) -> Health:
    """The store answers; 503 with Retry-After (and a generic message) when it does not."""
    try:
        await asyncio.wait_for(state.agent.store.ping(), READY_TIMEOUT)
    except TimeoutError:
        raise StoreUnavailable(f"the store did not answer within {READY_TIMEOUT:g}s") from None
    except StoreUnavailable:
        raise
    except TenantryError as exc:
        # Only the log reads this detail: public_message gives clients a generic text.
        raise StoreUnavailable(f"the store is not usable: {type(exc).__name__}: {exc}") from None
    return Health(status="ready")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **error_responses(401, 403)},
)
async def metrics(request: Request, state: State) -> Response:
    """Prometheus metrics (no per-user labels); public unless TENANTRY_METRICS_PUBLIC=false,
    which (with auth on) lets only admin credentials read them."""
    if state.auth and not state.settings.metrics_public:
        principal = principal_of(request)
        if principal is None:
            raise Unauthorized("/metrics needs an admin credential (TENANTRY_METRICS_PUBLIC)")
        if not principal.admin:
            raise Forbidden(
                f"this credential belongs to user {principal.user_id!r}, who is not an admin; "
                "only admins may read /metrics (TENANTRY_METRICS_PUBLIC)"
            )
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


@router.get("/v1/info", response_model=Info)
async def info(state: State) -> Info:
    """What this server is and which credentials it accepts (public)."""
    return Info(
        name=state.agent.name,
        version=__version__,
        model=state.agent.model.name,
        auth=state.auth,
        schemes=state.authenticator.schemes,
    )


__all__ = ["router"]
