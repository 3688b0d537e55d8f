"""The `tenantry` Typer app, which every command module registers its commands with."""

from __future__ import annotations

import typer

from tenantry._version import __version__

app = typer.Typer(
    name="tenantry",
    help="One agent, many users: chat, serve and manage tenants' conversations.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print tenantry's version."""
    typer.echo(__version__)


__all__ = ["app"]
