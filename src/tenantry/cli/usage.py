"""`tenantry usage [USER_ID] [--from DAY] [--to DAY] [--top N]`: what users used.

With a user: its usage per UTC day of the period and the total; without: the heaviest users
of the period (`--top`, default 10). The period defaults to this month so far; days are
YYYY-MM-DD (UTC). On a terminal a table; otherwise (a pipe, a file) tab-separated lines with
a header. Exit codes: 0 done, 1 the store failed, 2 bad input.
"""

from __future__ import annotations

import sys
import time
from datetime import date, datetime
from typing import Annotated

import typer

from tenantry.cli.app import app
from tenantry.cli.options import StoreOption, run_with_store
from tenantry.errors import InvalidInput
from tenantry.storage.base import Store
from tenantry.storage.usage import total
from tenantry.types import Usage
from tenantry.usage import period

COLUMNS = ("requests", "input_tokens", "output_tokens", "total_tokens", "tool_calls")


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a day YYYY-MM-DD") from None


TableOption = Annotated[
    bool | None,
    typer.Option(
        "--table/--plain", help="A table, or tab-separated lines (default: a table on a terminal)."
    ),
]


def _cells(usage: Usage) -> list[str]:
    counts = usage.to_dict()
    return [f"{counts[name]}" for name in COLUMNS] + ["yes" if usage.estimated else ""]


def show_rows(title: str, first: str, rows: list[tuple[str, Usage]], table: bool | None) -> None:
    """Print `rows` (a label and its usage) as a rich table on a terminal, else as lines."""
    header = [first, *COLUMNS, "estimated"]
    if table is None:
        table = sys.stdout.isatty()
    if not table:
        typer.echo("\t".join(header))
        for label, usage in rows:
            typer.echo("\t".join([label, *_cells(usage)]))
        return
    from rich.console import Console
    from rich.table import Table

    grid = Table(*header, title=title)
    for label, usage in rows:
        grid.add_row(label, *_cells(usage))
    Console().print(grid)


@app.command("usage")
def usage(
    user_id: Annotated[
        str | None, typer.Argument(help="The user (default: the heaviest users).")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="First UTC day, YYYY-MM-DD (default: the month's first)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Last UTC day, inclusive (default: today).")
    ] = None,
    top: Annotated[int, typer.Option(min=1, max=1000, help="Without a user: how many.")] = 10,
    store: StoreOption = None,
    table: TableOption = None,
) -> None:
    """Show a user's usage per day, or the heaviest users of a period."""
    try:
        first, last = period(_day(start), _day(end), now=time.time())
    except InvalidInput as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    span = f"{first} to {last}"

    async def fetch(opened: Store) -> list[tuple[str, Usage]]:
        if user_id is None:
            return await opened.top_usage(start=first, end=last, limit=top)
        days = await opened.get_usage(user_id, start=first, end=last)
        return [(d.day.isoformat(), d.usage) for d in days] + [("total", total(days))]

    rows = run_with_store(store, fetch)
    if user_id is None:
        show_rows(f"heaviest users, {span}", "user", rows, table)
    else:
        show_rows(f"usage of {user_id}, {span}", "day", rows, table)


__all__ = ["COLUMNS", "show_rows", "usage"]
