"""The `tenantry` command line: `tenantry chat`, and the commands later modules register."""

from __future__ import annotations

import typer

from tenantry import __version__

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


from tenantry.cli import chat as _chat  # noqa: E402,F401  (registers its commands)
from tenantry.cli import keys as _keys  # noqa: E402,F401  (registers its commands)
from tenantry.cli import serve as _serve  # noqa: E402,F401  (registers its commands)
from tenantry.cli import users as _users  # noqa: E402,F401  (registers its commands)


def main() -> None:
    """Entry point of the `tenantry` script."""
    app()
