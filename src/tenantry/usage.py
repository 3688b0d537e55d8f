"""Budgets: how much each user may use per UTC day and per UTC month, checked before a turn.

A `Budget` has four limits, each `None` for no limit: `tokens_per_day`, `requests_per_day`,
`tokens_per_month`, `requests_per_month`. Tokens are input plus output tokens
(`Usage.total_tokens`), requests are model requests (`Usage.requests`; a turn that calls tools
makes several). Every user has the default budget (`Budgets.default`, from the settings
`TENANTRY_BUDGET_*`) unless an admin stored one for that user (`Store.set_budget`), which then
replaces the default as a whole: a limit the user's own budget leaves `None` is no limit.

The agent reads the user's usage and budget (`Store.read_admission`) once it holds the turn's
scope lock, before the model is called, and `Budgets.check` refuses the turn with
`BudgetExceeded` when a limit is reached (used >= allowed). The usage is then counted in the
turn's own commit. Turns of one user running at the same time (other sessions, other
replicas) are each admitted on the usage committed so far, so together they can overshoot a
limit by at most what the turns in flight use: limit + in-flight turns x the largest turn.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from tenantry.errors import BudgetExceeded, InvalidInput
from tenantry.models.base import Model, ModelResponse, StreamItem
from tenantry.settings import Settings
from tenantry.storage.base import Snapshot, Store
from tenantry.storage.usage import check_range, month_start, usage_day
from tenantry.tenancy import Scope
from tenantry.types import BUDGET_LIMITS, Admission, Budget, Message, ToolSpec

Clock = Callable[[], float]

LIMITS = BUDGET_LIMITS
"""The names of a budget's limits, in the order `check` reports them on a tie."""


def day_end(now: float) -> float:
    """Give the POSIX time at which the UTC day of `now` ends."""
    start = datetime.combine(usage_day(now), datetime.min.time(), UTC)
    return (start + timedelta(days=1)).timestamp()


def month_end(now: float) -> float:
    """Give the POSIX time at which the UTC calendar month of `now` ends."""
    day = usage_day(now)
    first = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return datetime.combine(first, datetime.min.time(), UTC).timestamp()


def period(start: date | None, end: date | None, *, now: float) -> tuple[date, date]:
    """Give the inclusive UTC period a usage read covers: `end` defaults to today, `start`
    to the first day of `end`'s month; InvalidInput when it is reversed or too long."""
    last = end if end is not None else usage_day(now)
    first = start if start is not None else month_start(last)
    if first > last:
        raise InvalidInput(f"the period starts ({first}) after it ends ({last})")
    return check_range(first, last)


_CHECKS = tuple((name, name.startswith("tokens"), name.endswith("_day")) for name in BUDGET_LIMITS)
"""Each limit's name, whether it counts tokens (else requests), whether per day (else month)."""


def _over(budget: Budget, admission: Admission, now: float) -> list[tuple[str, int, int, float]]:
    """Give each reached limit as (name, used, allowed, resets_at)."""
    found = []
    for name, tokens, daily in _CHECKS:
        allowed = getattr(budget, name)
        if allowed is None:
            continue
        usage = admission.day if daily else admission.month
        used = usage.total_tokens if tokens else usage.requests
        if used >= allowed:
            found.append((name, used, allowed, day_end(now) if daily else month_end(now)))
    return found


@dataclass(frozen=True, slots=True)
class Budgets:
    """The budget policy: the default budget of every user, and the clock the windows are
    read by (inject one in tests; give the store the same)."""

    default: Budget = field(default_factory=Budget)
    clock: Clock = time.time

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, clock: Clock = time.time
    ) -> Budgets:
        """Give the policy whose default is the settings' `budget_*` limits."""
        settings = settings or Settings()
        return cls(
            Budget(
                tokens_per_day=settings.budget_tokens_per_day,
                requests_per_day=settings.budget_requests_per_day,
                tokens_per_month=settings.budget_tokens_per_month,
                requests_per_month=settings.budget_requests_per_month,
            ),
            clock,
        )

    @property
    def default_unlimited(self) -> bool:
        """Whether the default budget has no limit: then only users with a budget of their
        own can be refused, and only their usage needs reading before a turn."""
        return all(getattr(self.default, name) is None for name in LIMITS)

    def effective(self, override: Budget | None) -> Budget:
        """Give the budget a user has: its own if an admin set one, else the default."""
        return override if override is not None else self.default

    def check(self, admission: Admission, now: float, *, user_id: str = "") -> None:
        """Return if the user may run a turn at `now`; raise BudgetExceeded naming the limit
        reached whose window ends last (retrying earlier would be refused again)."""
        reached = _over(self.effective(admission.budget), admission, now)
        if not reached:
            return
        name, used, allowed, resets_at = max(reached, key=lambda r: r[3])
        raise BudgetExceeded(
            user_id=user_id, limit=name, used=used, allowed=allowed, resets_at=resets_at, now=now
        )


async def admit(store: Store, budgets: Budgets, user_id: str) -> None:
    """Return if the user may run a turn now; raise BudgetExceeded if not (one store read)."""
    now = budgets.clock()
    if budgets.default_unlimited and await store.get_budget(user_id) is None:
        return  # nothing can refuse the turn: its usage need not be read
    budgets.check(await store.read_admission(user_id, now=now), now, user_id=user_id)


async def admitted_snapshot(store: Store, budgets: Budgets, scope: Scope, limit: int) -> Snapshot:
    """Give the scope's newest `limit` messages and state once the user's budget let the turn
    in (raises BudgetExceeded), both read together (`Store.snapshot_and_admission`)."""
    now = budgets.clock()
    snapshot, admission = await store.snapshot_and_admission(
        scope.user_id,
        scope.session_id,
        limit=limit,
        now=now,
        budgeted_only=budgets.default_unlimited,
    )
    budgets.check(admission, now, user_id=scope.user_id)
    return snapshot


class MeteredModel:
    """A model whose every answer's usage is added to a user's counters in a write of its own
    (`Store.add_usage`): for the calls made for a user outside a turn's commit, such as the
    memory jobs that run after the turn was acknowledged."""

    def __init__(self, model: Model, store: Store, user_id: str) -> None:
        self.model = model
        self.store = store
        self.user_id = user_id

    @property
    def name(self) -> str:
        return self.model.name

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        response = await self.model.complete(messages, tools)
        await self.store.add_usage(response.usage, user_id=self.user_id)
        return response

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        async for item in self.model.stream(messages, tools):
            if isinstance(item, ModelResponse):
                await self.store.add_usage(item.usage, user_id=self.user_id)
            yield item


__all__ = [
    "LIMITS",
    "Budgets",
    "MeteredModel",
    "admit",
    "admitted_snapshot",
    "day_end",
    "month_end",
    "period",
]
