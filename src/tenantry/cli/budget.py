"""`tenantry budget ...`: a user's own budget, which replaces the default budget (the settings'
`TENANTRY_BUDGET_*`) as a whole.

    tenantry budget show USER_ID
    tenantry budget set USER_ID [--tokens-per-day N] [--requests-per-day N]
                                [--tokens-per-month N] [--requests-per-month N]
    tenantry budget clear USER_ID

`set` stores exactly the limits given: a limit left out is no limit for that user. `show`
prints the budget in force, where it comes from and today's and this month's usage. Exit
codes: 0 done, 1 the store failed, 2 bad input.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from tenantry.cli.app import app
from tenantry.cli.options import StoreOption, run_with_store
from tenantry.storage.base import Store
from tenantry.types import BUDGET_LIMITS, Admission, Budget
from tenantry.usage import Budgets

budget_app = typer.Typer(
    name="budget", help="Show, set and clear a user's own budget.", no_args_is_help=True
)
app.add_typer(budget_app)

UserArgument = Annotated[str, typer.Argument(help="The user id.", show_default=False)]
Limit = Annotated[int | None, typer.Option(min=0, max=2**62, show_default=False)]


def _show(user_id: str, admission: Admission) -> None:
    budgets = Budgets.from_settings()
    budget = budgets.effective(admission.budget)
    source = "the user's own" if admission.budget is not None else "the default (settings)"
    typer.echo(f"budget of {user_id}: {source}")
    for name in BUDGET_LIMITS:
        kind, _, window = name.partition("_per_")
        usage = admission.day if window == "day" else admission.month
        used = usage.total_tokens if kind == "tokens" else usage.requests
        allowed = getattr(budget, name)
        typer.echo(f"  {name}: {'no limit' if allowed is None else allowed} (used {used})")


@budget_app.command("show")
def show(user_id: UserArgument, store: StoreOption = None) -> None:
    """Show the budget in force for a user and its usage of today and this month."""

    async def fetch(opened: Store) -> Admission:
        return await opened.read_admission(user_id, now=time.time())

    _show(user_id, run_with_store(store, fetch))


@budget_app.command("set")
def set_budget(
    user_id: UserArgument,
    tokens_per_day: Limit = None,
    requests_per_day: Limit = None,
    tokens_per_month: Limit = None,
    requests_per_month: Limit = None,
    store: StoreOption = None,
) -> None:
    """Set a user's own budget: exactly the limits given (one left out is no limit)."""
    budget = Budget(tokens_per_day, requests_per_day, tokens_per_month, requests_per_month)

    async def write(opened: Store) -> Admission:
        await opened.set_budget(user_id, budget)
        return await opened.read_admission(user_id, now=time.time())

    _show(user_id, run_with_store(store, write))


@budget_app.command("clear")
def clear(user_id: UserArgument, store: StoreOption = None) -> None:
    """Remove a user's own budget, so the default applies again."""

    async def write(opened: Store) -> Admission:
        await opened.set_budget(user_id, None)
        return await opened.read_admission(user_id, now=time.time())

    _show(user_id, run_with_store(store, write))


__all__ = ["budget_app", "clear", "set_budget", "show"]
