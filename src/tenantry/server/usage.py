"""Usage and budgets over HTTP.

- `GET /v1/users/{user}/usage?from=YYYY-MM-DD&to=YYYY-MM-DD`: the user's usage per UTC day
  and its total (default: this month so far); the user itself or an admin.
- `GET /v1/usage?top=N&from=...&to=...`: the N users with the most tokens (admins only).
- `GET /v1/users/{user}/budget`: the budget in force (the user's own, else the default) and
  today's and this month's usage; the user itself or an admin.
- `PUT /v1/users/{user}/budget`: set the user's own budget (admins only); it replaces the
  default as a whole: a limit left out or null is no limit.
- `DELETE /v1/users/{user}/budget`: remove it, so the default applies again (admins only).

Another user's usage or budget is 403, like every other route under /v1/users/.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tenantry.server.errors import Forbidden
from tenantry.server.schemas import PathUserId, UsageBody, error_responses
from tenantry.server.state import ServerState, State
from tenantry.storage.usage import total
from tenantry.types import Budget, UsageDay
from tenantry.usage import period

router = APIRouter(tags=["usage"])
_ERRORS = error_responses(401, 403, 422, 429, 503)
MAX_TOP = 1000
MAX_LIMIT = 2**62
"""The largest budget limit accepted (what every store's counters hold)."""

From = Annotated[
    date | None,
    Query(alias="from", description="First UTC day, YYYY-MM-DD (default: the month's first)."),
]
To = Annotated[
    date | None, Query(alias="to", description="Last UTC day, inclusive (default: today).")
]


class DayUsage(UsageBody):
    day: date = Field(description="The UTC day.")

    @classmethod
    def of_day(cls, day: UsageDay) -> DayUsage:
        return cls(day=day.day, **day.usage.to_dict())


class UserUsage(BaseModel):
    user_id: str
    start: date = Field(description="The period's first UTC day.")
    end: date = Field(description="The period's last UTC day (inclusive).")
    total: UsageBody
    days: list[DayUsage] = Field(description="Days with usage, oldest first.")


class TopUser(BaseModel):
    user_id: str
    usage: UsageBody


class TopUsage(BaseModel):
    start: date
    end: date
    users: list[TopUser] = Field(description="Most tokens first.")


class BudgetBody(BaseModel):
    """A budget's limits; null (or left out) is no limit of that kind."""

    model_config = ConfigDict(extra="forbid")

    tokens_per_day: int | None = Field(None, ge=0, le=MAX_LIMIT, description="Tokens per UTC day.")
    requests_per_day: int | None = Field(
        None, ge=0, le=MAX_LIMIT, description="Model requests per UTC day."
    )
    tokens_per_month: int | None = Field(
        None, ge=0, le=MAX_LIMIT, description="Tokens per UTC month."
    )
    requests_per_month: int | None = Field(
        None, ge=0, le=MAX_LIMIT, description="Model requests per month."
    )

    @classmethod
    def of(cls, budget: Budget) -> BudgetBody:
        return cls(**budget.to_dict())

    def budget(self) -> Budget:
        return Budget(**self.model_dump())


class BudgetView(BaseModel):
    user_id: str
    budget: BudgetBody = Field(description="The limits in force for this user.")
    source: Literal["user", "default"] = Field(
        description="'user': an admin set this user's budget; 'default': the settings'."
    )
    today: UsageBody = Field(description="Usage of the current UTC day.")
    month: UsageBody = Field(description="Usage of the current UTC month.")


def _require_admin(request: Request, state: ServerState, what: str) -> None:
    if not state.is_admin(request):
        raise Forbidden(f"only an admin credential may {what}")


async def _view(state: ServerState, user_id: str) -> BudgetView:
    budgets = state.agent.budgets
    admission = await state.agent.store.read_admission(user_id, now=budgets.clock())
    return BudgetView(
        user_id=user_id,
        budget=BudgetBody.of(budgets.effective(admission.budget)),
        source="default" if admission.budget is None else "user",
        today=UsageBody.of(admission.day),
        month=UsageBody.of(admission.month),
    )


@router.get("/v1/users/{user_id}/usage", response_model=UserUsage, responses=_ERRORS)
async def user_usage(
    user_id: PathUserId, request: Request, state: State, start: From = None, end: To = None
) -> UserUsage:
    """The user's usage per UTC day from `from` to `to`, and its total."""
    tenant = await state.admit(request, user_id)
    first, last = period(start, end, now=state.agent.budgets.clock())
    days = await state.agent.store.get_usage(tenant, start=first, end=last)
    return UserUsage(
        user_id=tenant,
        start=first,
        end=last,
        total=UsageBody.of(total(days)),
        days=[DayUsage.of_day(d) for d in days],
    )


@router.get("/v1/usage", response_model=TopUsage, responses=_ERRORS)
async def top_usage(
    request: Request,
    state: State,
    top: Annotated[int, Query(ge=1, le=MAX_TOP, description="How many users.")] = 10,
    start: From = None,
    end: To = None,
) -> TopUsage:
    """The heaviest users of a period (admins only)."""
    _require_admin(request, state, "read every user's usage")
    first, last = period(start, end, now=state.agent.budgets.clock())
    found = await state.agent.store.top_usage(start=first, end=last, limit=top)
    users = [TopUser(user_id=user, usage=UsageBody.of(usage)) for user, usage in found]
    return TopUsage(start=first, end=last, users=users)


@router.get("/v1/users/{user_id}/budget", response_model=BudgetView, responses=_ERRORS)
async def get_budget(user_id: PathUserId, request: Request, state: State) -> BudgetView:
    """The budget in force for the user, and its usage of today and this month."""
    return await _view(state, await state.admit(request, user_id))


@router.put("/v1/users/{user_id}/budget", response_model=BudgetView, responses=_ERRORS)
async def set_budget(
    user_id: PathUserId, body: BudgetBody, request: Request, state: State
) -> BudgetView:
    """Set the user's own budget (admins only); it replaces the default as a whole."""
    tenant = await state.admit(request, user_id)
    _require_admin(request, state, "set a budget")
    await state.agent.store.set_budget(tenant, body.budget())
    return await _view(state, tenant)


@router.delete("/v1/users/{user_id}/budget", status_code=204, responses=_ERRORS)
async def delete_budget(user_id: PathUserId, request: Request, state: State) -> Response:
    """Remove the user's own budget, so the default applies again (admins only)."""
    tenant = await state.admit(request, user_id)
    _require_admin(request, state, "remove a budget")
    await state.agent.store.set_budget(tenant, None)
    return Response(status_code=204)


__all__ = ["BudgetBody", "BudgetView", "TopUsage", "UserUsage", "router"]
