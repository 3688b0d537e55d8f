"""The tenantry server: chat API, streaming, A2A, user data, metrics and a web page.

Needs the extra: `pip install 'tenantry[server]'`. Run it with `tenantry serve`, or build the
ASGI app yourself: `create_app(agent, ServerSettings(...))`.
"""

from tenantry.server.app import create_app
from tenantry.server.config import ServerSettings

__all__ = ["ServerSettings", "create_app"]
