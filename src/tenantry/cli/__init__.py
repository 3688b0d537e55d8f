"""The `tenantry` command line: `chat`, `serve`, `keys`, `users`, `memories` and `version`.

The app lives in `tenantry.cli.app`; each command module registers its commands with it, and
importing them here makes the command line whole.
"""

from __future__ import annotations

from tenantry.cli import chat, keys, memories, serve, users
from tenantry.cli.app import app


def main() -> None:
    """Entry point of the `tenantry` script."""
    app()


__all__ = ["app", "chat", "keys", "main", "memories", "serve", "users"]
