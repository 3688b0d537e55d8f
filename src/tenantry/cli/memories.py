"""`tenantry memories ...`: what the agent remembers about a user (long-term memory).

    tenantry memories list USER_ID [--limit N]
    tenantry memories search USER_ID QUERY [--limit N]
    tenantry memories delete USER_ID (MEMORY_ID | --all) [--yes]

Every command takes `--store URL`. On a terminal the memories are a table; otherwise (a pipe,
a file) one per line: `id<TAB>version<TAB>text`, most recently updated (or best match) first.
Exit codes, as for `tenantry users`: 0 done, 1 the store failed or there is nothing to show
or delete, 2 bad input.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from tenantry.cli.app import app
from tenantry.cli.options import StoreOption, run_with_store
from tenantry.errors import MemoryNotFound
from tenantry.storage.base import Store
from tenantry.types import Memory

memories_app = typer.Typer(
    name="memories",
    help="List, search and delete what the agent remembers about a user.",
    no_args_is_help=True,
)
app.add_typer(memories_app)

UserArgument = Annotated[str, typer.Argument(help="The user id.", show_default=False)]
LimitOption = Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Show at most N.")]
TableOption = Annotated[
    bool | None,
    typer.Option(
        "--table/--plain", help="A table, or tab-separated lines (default: a table on a terminal)."
    ),
]


def _show(memories: list[Memory], user_id: str, table: bool | None) -> None:
    if not memories:
        typer.echo(f"error: user {user_id!r} has no memories to show", err=True)
        raise typer.Exit(1)
    if table is None:
        table = sys.stdout.isatty()
    if not table:
        for memory in memories:
            text = " ".join(memory.text.split())
            typer.echo(f"{memory.id}\t{memory.version}\t{text}")
        return
    from rich.console import Console
    from rich.table import Table

    grid = Table("id", "version", "updated", "text", title=f"memories of {user_id}")
    for memory in memories:
        updated = datetime.fromtimestamp(memory.updated_at, UTC).strftime("%Y-%m-%d %H:%M")
        grid.add_row(memory.id, str(memory.version), updated, memory.text)
    Console().print(grid)


@memories_app.command("list")
def list_memories(
    user_id: UserArgument,
    store: StoreOption = None,
    limit: LimitOption = None,
    table: TableOption = None,
) -> None:
    """Show a user's memories, most recently updated first."""

    async def fetch(opened: Store) -> list[Memory]:
        return await opened.list_memories(user_id=user_id, limit=limit)

    _show(run_with_store(store, fetch), user_id, table)


@memories_app.command("search")
def search(
    user_id: UserArgument,
    query: Annotated[str, typer.Argument(help="What to look for.", show_default=False)],
    store: StoreOption = None,
    limit: LimitOption = None,
    table: TableOption = None,
) -> None:
    """Show a user's memories that best match QUERY, best first."""

    async def fetch(opened: Store) -> list[Memory]:
        return await opened.search_memories(query, user_id=user_id, limit=limit or 10)

    _show(run_with_store(store, fetch), user_id, table)


@memories_app.command("delete")
def delete(
    user_id: UserArgument,
    memory_id: Annotated[
        str | None, typer.Argument(help="The memory to delete (see `list`).", show_default=False)
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Delete every memory of the user.")] = False,
    store: StoreOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete one memory of a user, or all of them with --all (sessions stay)."""
    if (memory_id is None) == (not every):
        typer.echo("error: give a MEMORY_ID or --all (not both)", err=True)
        raise typer.Exit(2)

    async def delete_one(opened: Store) -> int:
        assert memory_id is not None
        try:
            await opened.delete_memory(memory_id, user_id=user_id)
        except MemoryNotFound:
            typer.echo(f"error: user {user_id!r} has no memory {memory_id!r}", err=True)
            raise typer.Exit(1) from None
        return 1

    async def delete_all(opened: Store) -> int:
        count = len(await opened.list_memories(user_id=user_id))
        if not count:
            typer.echo(f"error: user {user_id!r} has no memories", err=True)
            raise typer.Exit(1)
        if not yes:
            typer.confirm(f"Delete all {count} memories of user {user_id!r}?", abort=True)
        return await opened.clear_memories(user_id=user_id)

    deleted = run_with_store(store, delete_all if every else delete_one)
    typer.echo(f"deleted {deleted} memor{'y' if deleted == 1 else 'ies'} of user {user_id!r}")


__all__ = ["memories_app"]
