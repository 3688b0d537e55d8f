"""What several commands share: the --store option and running a store command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from tenantry.errors import InvalidInput, TenantryError
from tenantry.storage.base import Store

T = TypeVar("T")

StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Store URL; default: TENANTRY_STORE_URL or sqlite:///tenantry.db"),
]


def run_with_store(store_url: str | None, command: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store, run `command` on it, close it. A tenantry error becomes a one-line
    message on stderr and exit code 2 for bad input (ids, URL), 1 for anything else."""
    from tenantry.settings import Settings
    from tenantry.storage.url import open_store

    async def run() -> T:
        async with open_store(store_url or Settings().store_url) as store:
            return await command(store)

    try:
        return asyncio.run(run())
    except TenantryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if isinstance(exc, InvalidInput) else 1) from None
