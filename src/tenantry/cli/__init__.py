"""The `tenantry` command line: `chat`, `serve`, `keys`, `users`, `memories`, `usage`, `budget`
and `version`.

The app lives in `tenantry.cli.app`; each command module registers its commands with it, and
importing them here makes the command line whole.
"""

from __future__ import annotations

from tenantry.cli import budget, chat, keys, memories, serve, usage, users
from tenantry.cli.app import app


def main() -> None:
    """Entry point of the `tenantry` script."""
    app()


__all__ = ["app", "budget", "chat", "keys", "main", "memories", "serve", "usage", "users"]
