"""The tenantry server: chat API, streaming, A2A, user data, metrics and a web page.

Needs the extra: `pip install 'tenantry[server]'`. Run it with `tenantry serve`, or build the
ASGI app yourself: `create_app(agent, ServerSettings(...))`. The web stack is imported only
when `create_app` is first used, so `ServerSettings` works without the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tenantry.server.config import ServerSettings

if TYPE_CHECKING:
    from tenantry.server.app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from tenantry.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ServerSettings", "create_app"]
