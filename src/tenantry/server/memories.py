"""A user's long-term memories over HTTP: list or search, add, read, update (compare-and-swap
on the version), delete one or all. Each route serves only the credential's user (or an
admin), like every other user route: the user is always the one in the path, checked by
`ServerState.admit`, and every store call names it, so another user's memory id is 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, Field

from tenantry.server.middleware import unescape_segment
from tenantry.server.schemas import PathUserId, error_responses
from tenantry.server.state import State
from tenantry.types import MAX_MEMORY_CHARS, Memory

router = APIRouter(tags=["memories"])
_ERRORS = error_responses(401, 403, 404, 422, 429, 503)
MAX_LIST = 1000

PathMemoryId = Annotated[
    str,
    Field(min_length=1, max_length=255, description="A memory's id, as the API gave it."),
    BeforeValidator(unescape_segment),
]
MemoryText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_MEMORY_CHARS,
        description=f"The fact, 1 to {MAX_MEMORY_CHARS} characters, not blank.",
    ),
]


class MemoryBody(BaseModel):
    id: str
    user_id: str
    text: str
    version: int = Field(description="1 when added, +1 on every update.")
    created_at: float
    updated_at: float
    session_id: str | None = Field(description="The session it was learned in, if any.")
    run_id: str | None = Field(description="The run it was learned in, if any.")

    @classmethod
    def of(cls, memory: Memory) -> MemoryBody:
        return cls(**memory.to_dict())


class MemoryList(BaseModel):
    user_id: str
    memories: list[MemoryBody] = Field(
        description="Best match first with `q`, else the most recently updated first."
    )


class NewMemory(BaseModel):
    text: MemoryText


class MemoryChange(BaseModel):
    text: MemoryText
    version: int = Field(
        ge=1, description="The version you read; a memory changed since then is 409."
    )


class MemoriesDeleted(BaseModel):
    user_id: str
    deleted: int = Field(description="How many memories were deleted.")


def _body(memories: list[Memory]) -> list[MemoryBody]:
    return [MemoryBody.of(m) for m in memories]


@router.get("/v1/users/{user_id}/memories", response_model=MemoryList, responses=_ERRORS)
async def list_memories(
    user_id: PathUserId,
    request: Request,
    state: State,
    q: Annotated[str | None, Query(max_length=1000, description="Search for this.")] = None,
    limit: Annotated[int | None, Query(ge=1, le=MAX_LIST)] = None,
) -> MemoryList:
    """The user's memories: the best matches for `q`, or all of them, newest first (an
    empty list when the user has none)."""
    tenant = await state.admit(request, user_id)
    store = state.agent.store
    if q is not None and q.strip():
        found = await store.search_memories(q, user_id=tenant, limit=limit or 10)
    else:
        found = await store.list_memories(user_id=tenant, limit=limit)
    return MemoryList(user_id=tenant, memories=_body(found))


@router.post(
    "/v1/users/{user_id}/memories",
    response_model=MemoryBody,
    status_code=201,
    responses=_ERRORS,
)
async def add_memory(
    user_id: PathUserId, body: NewMemory, request: Request, state: State
) -> MemoryBody:
    """Remember a fact about the user."""
    tenant = await state.admit(request, user_id)
    return MemoryBody.of(await state.agent.store.add_memory(body.text, user_id=tenant))


@router.get(
    "/v1/users/{user_id}/memories/{memory_id}", response_model=MemoryBody, responses=_ERRORS
)
async def get_memory(
    user_id: PathUserId, memory_id: PathMemoryId, request: Request, state: State
) -> MemoryBody:
    """One memory of the user (404 if the user has no memory with that id)."""
    tenant = await state.admit(request, user_id)
    return MemoryBody.of(await state.agent.store.get_memory(memory_id, user_id=tenant))


@router.patch(
    "/v1/users/{user_id}/memories/{memory_id}",
    response_model=MemoryBody,
    responses=error_responses(401, 403, 404, 409, 422, 429, 503),
)
async def update_memory(
    user_id: PathUserId,
    memory_id: PathMemoryId,
    body: MemoryChange,
    request: Request,
    state: State,
) -> MemoryBody:
    """Replace a memory's text, if its version is still the one given (else 409
    MemoryConflict: read it again and retry with its new version)."""
    tenant = await state.admit(request, user_id)
    updated = await state.agent.store.update_memory(
        memory_id, body.text, user_id=tenant, expected_version=body.version
    )
    return MemoryBody.of(updated)


@router.delete("/v1/users/{user_id}/memories/{memory_id}", status_code=204, responses=_ERRORS)
async def delete_memory(
    user_id: PathUserId, memory_id: PathMemoryId, request: Request, state: State
) -> Response:
    """Forget one memory of the user."""
    tenant = await state.admit(request, user_id)
    await state.agent.store.delete_memory(memory_id, user_id=tenant)
    return Response(status_code=204)


@router.delete("/v1/users/{user_id}/memories", response_model=MemoriesDeleted, responses=_ERRORS)
async def delete_memories(user_id: PathUserId, request: Request, state: State) -> MemoriesDeleted:
    """Forget every memory of the user (sessions stay)."""
    tenant = await state.admit(request, user_id)
    return MemoriesDeleted(
        user_id=tenant, deleted=await state.agent.store.clear_memories(user_id=tenant)
    )


__all__ = ["router"]
