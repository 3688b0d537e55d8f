"""A user's own data: list sessions, read a session's messages (paged), delete a session or
the whole user (sessions and memories), export everything as JSON (sessions with their
summaries, memories, usage per day and budget). Each route serves only the credential's user
(or an admin); an unknown session, or a user with nothing stored, is 404. Memories:
`tenantry.server.memories`; usage and budgets: `tenantry.server.usage`."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from tenantry.server.auth import principal_of
from tenantry.server.errors import Forbidden, NotFound
from tenantry.server.schemas import PathSessionId, PathUserId, error_responses
from tenantry.server.state import State
from tenantry.storage.base import Store
from tenantry.storage.usage import usage_day
from tenantry.types import Memory

router = APIRouter(tags=["users"])
_ERRORS = error_responses(401, 403, 404, 422, 429, 503)
MAX_PAGE = 1000


class SessionList(BaseModel):
    user_id: str
    sessions: list[str]


class MessagePage(BaseModel):
    user_id: str
    session_id: str
    total: int = Field(description="Messages the session holds.")
    limit: int
    offset: int = Field(description="How many of the newest messages were skipped.")
    messages: list[dict[str, Any]] = Field(description="Oldest first.")


class SessionExport(BaseModel):
    session_id: str
    state: dict[str, Any]
    messages: list[dict[str, Any]]
    summary: dict[str, Any] | None = Field(
        description="What the messages that fell out of the history window said, if kept."
    )


class UserExport(BaseModel):
    user_id: str
    exported_at: float
    sessions: list[SessionExport]
    memories: list[dict[str, Any]] = Field(description="Most recently updated first.")
    usage: list[dict[str, Any]] = Field(
        description="Usage per UTC day with any, oldest first, over the days the store keeps."
    )
    budget: dict[str, Any] | None = Field(
        description="The user's own budget, if an admin set one (null: the default applies)."
    )


class Deleted(BaseModel):
    user_id: str
    deleted_sessions: int
    deleted_memories: int


class UserList(BaseModel):
    users: list[str]


class Me(BaseModel):
    user_id: str | None = Field(description="The credential's user; null in open mode.")
    admin: bool
    auth: bool = Field(description="Whether the server requires credentials.")


async def _stored(store: Store, user_id: str) -> tuple[list[str], list[Memory]]:
    """Give the user's sessions and memories; NotFound when there are neither."""
    sessions = await store.list_sessions(user_id)
    memories = await store.list_memories(user_id=user_id)
    if not sessions and not memories:
        raise NotFound(f"user {user_id!r} has no stored sessions or memories")
    return sessions, memories


async def _require_session(store: Store, user_id: str, session_id: str) -> None:
    if session_id not in await store.list_sessions(user_id):
        raise NotFound(f"user {user_id!r} has no session {session_id!r}")


@router.get("/v1/me", response_model=Me, responses=error_responses(401))
async def me(request: Request, state: State) -> Me:
    """Who the credential is (open mode: no one in particular)."""
    principal = principal_of(request)
    if principal is None:
        return Me(user_id=None, admin=not state.auth, auth=state.auth)
    return Me(user_id=principal.user_id, admin=principal.admin, auth=True)


@router.get("/v1/users", response_model=UserList, responses=error_responses(401, 403))
async def list_users(request: Request, state: State) -> UserList:
    """Every user with stored sessions (admins only when auth is on)."""
    principal = principal_of(request)
    if state.auth and (principal is None or not principal.admin):
        raise Forbidden("only an admin credential may list every user")
    return UserList(users=await state.agent.store.list_users())


@router.get("/v1/users/{user_id}/sessions", response_model=SessionList, responses=_ERRORS)
async def list_sessions(user_id: PathUserId, request: Request, state: State) -> SessionList:
    """The user's session ids, sorted (empty when the user has none)."""
    tenant = await state.admit(request, user_id)
    return SessionList(user_id=tenant, sessions=await state.agent.store.list_sessions(tenant))


@router.get(
    "/v1/users/{user_id}/sessions/{session_id}/messages",
    response_model=MessagePage,
    responses=_ERRORS,
)
async def read_messages(
    user_id: PathUserId,
    session_id: PathSessionId,
    request: Request,
    state: State,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> MessagePage:
    """A page of the session's messages, oldest first: the newest `limit` after skipping the
    newest `offset` (offset=50 with limit=50 is the page before the newest 50)."""
    tenant = await state.admit(request, user_id)
    store = state.agent.store
    await _require_session(store, tenant, session_id)
    messages = await store.get_messages(tenant, session_id, limit=limit, offset=offset)
    return MessagePage(
        user_id=tenant,
        session_id=session_id,
        total=await store.size(tenant, session_id),
        limit=limit,
        offset=offset,
        messages=[m.to_dict() for m in messages],
    )


@router.delete("/v1/users/{user_id}/sessions/{session_id}", status_code=204, responses=_ERRORS)
async def delete_session(
    user_id: PathUserId,
    session_id: PathSessionId,
    request: Request,
    state: State,
) -> Response:
    """Delete one session: its messages and its state."""
    tenant = await state.admit(request, user_id)
    store = state.agent.store
    await _require_session(store, tenant, session_id)
    await store.clear(tenant, session_id)
    return Response(status_code=204)


@router.delete("/v1/users/{user_id}", response_model=Deleted, responses=_ERRORS)
async def delete_user(user_id: PathUserId, request: Request, state: State) -> Deleted:
    """Delete every session of the user, and every memory."""
    tenant = await state.admit(request, user_id)
    store = state.agent.store
    sessions, memories = await _stored(store, tenant)
    await store.clear(tenant)
    return Deleted(user_id=tenant, deleted_sessions=len(sessions), deleted_memories=len(memories))


@router.get("/v1/users/{user_id}/export", response_model=UserExport, responses=_ERRORS)
async def export_user(user_id: PathUserId, request: Request, state: State) -> UserExport:
    """Everything stored for the user: each session's state, messages (oldest first) and
    summary, the user's memories, its usage per day and its own budget (a deleted user's
    usage and budget stay, so they are exported too)."""
    tenant = await state.admit(request, user_id)
    store = state.agent.store
    today = usage_day(time.time())
    first = today - timedelta(days=store.usage_retention_days)
    days = await store.get_usage(tenant, start=first, end=today)
    budget = await store.get_budget(tenant)
    names = await store.list_sessions(tenant)
    memories = await store.list_memories(user_id=tenant)
    if not (names or memories or days or budget):
        raise NotFound(f"user {tenant!r} has no stored sessions or memories")
    sessions = []
    for session_id in names:
        snapshot = await store.snapshot(tenant, session_id)
        summary = await store.get_summary(tenant, session_id)
        sessions.append(
            SessionExport(
                session_id=session_id,
                state=snapshot.state,
                messages=[m.to_dict() for m in snapshot.messages],
                summary=summary.to_dict() if summary is not None else None,
            )
        )
    return UserExport(
        user_id=tenant,
        exported_at=time.time(),
        sessions=sessions,
        memories=[m.to_dict() for m in memories],
        usage=[day.to_dict() for day in days],
        budget=budget.to_dict() if budget is not None else None,
    )


__all__ = ["router"]
