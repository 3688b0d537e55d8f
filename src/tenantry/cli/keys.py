"""`tenantry keys`: make API keys and the digests the server is configured with."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tenantry.cli.app import app
from tenantry.errors import InvalidScope
from tenantry.tenancy import tenant_id

keys_app = typer.Typer(
    name="keys", help="Make API keys for `tenantry serve`.", no_args_is_help=True
)
app.add_typer(keys_app)


@keys_app.command("new")
def new(
    user: Annotated[str, typer.Option("--user", "-u", help="The user id the key acts as.")],
    org: Annotated[
        str | None,
        typer.Option(
            help="The user's org: the key's user id becomes 'ORG:USER' (a ':' or '%' inside "
            "either is written %3A, %25), the id a JWT with this org and user gets."
        ),
    ] = None,
    admin: Annotated[
        bool, typer.Option(help="Also print the admin setting for this user.")
    ] = False,
) -> None:
    """Make a new random API key for a user; print it once, with the server setting."""
    from tenantry.server.auth import hash_api_key, new_api_key

    try:
        user_id = tenant_id(user, org)
    except InvalidScope as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    key = new_api_key()
    typer.echo(f"API key for {user_id!r} (shown only once; give it to the user):")
    typer.echo(f"  {key}")
    typer.echo("Server setting (merge with existing keys; it holds the digest, not the key):")
    typer.echo(f"  TENANTRY_API_KEYS='{json.dumps({hash_api_key(key): user_id})}'")
    if admin:
        typer.echo(f"  TENANTRY_ADMIN_USERS='{json.dumps([user_id])}'")
    typer.echo(f"Clients send it as:  X-API-Key: {key}")


@keys_app.command("hash")
def hash_key(key: Annotated[str, typer.Argument(help="An existing API key.")]) -> None:
    """Print the SHA-256 digest under which an existing key is configured."""
    from tenantry.server.auth import hash_api_key

    typer.echo(hash_api_key(key))
