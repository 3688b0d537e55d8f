"""What every route needs, built once per app: the agent, settings, auth, limits, metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from tenantry.agent import Agent
from tenantry.server.auth import Authenticator, principal_of, resolve_tenant
from tenantry.server.config import ServerSettings
from tenantry.server.metrics import Metrics
from tenantry.server.ratelimit import Limiter


@dataclass(frozen=True, slots=True)
class ServerState:
    """The app's shared, tenant-free state (kept in `app.state.tenantry`)."""

    agent: Agent
    settings: ServerSettings
    authenticator: Authenticator
    limiter: Limiter
    metrics: Metrics
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def auth(self) -> bool:
        return self.authenticator.enabled

    async def admit(self, conn: HTTPConnection, requested_user: str | None) -> str:
        """Give the tenant a request acts on, after checking the caller may act on it and
        has not used up its rate budget (raises Unauthorized, Forbidden, RateLimited)."""
        tenant = resolve_tenant(principal_of(conn), requested_user, auth=self.auth)
        await self.limiter.acquire(tenant)
        return tenant

    def is_admin(self, conn: HTTPConnection) -> bool:
        """Whether the caller may act on every user (anyone in open mode)."""
        principal = principal_of(conn)
        return not self.auth or (principal is not None and principal.admin)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a turn in its own task, kept until it ends so shutdown can wait for it."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, grace: float) -> None:
        """Wait up to `grace` seconds for spawned turns to finish; cancel the rest."""
        pending = set(self.tasks)
        if not pending:
            return
        logging.getLogger("tenantry.server").info("waiting for %d turn(s)", len(pending))
        _, late = await asyncio.wait(pending, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)


async def server_state(conn: HTTPConnection) -> ServerState:
    """FastAPI dependency: the app's ServerState.

    `async` on purpose: FastAPI runs a sync dependency in its threadpool, one thread hop per
    request for a mere attribute read."""
    state: ServerState = conn.app.state.tenantry
    return state


State = Annotated[ServerState, Depends(server_state)]
"""A route parameter of this type receives the app's ServerState."""

__all__ = ["ServerState", "State", "server_state"]
