"""The version lives in one place (`tenantry/_version.py`); the package metadata, the package
and the server all say the same."""

from __future__ import annotations

from importlib.metadata import version

import httpx

import tenantry
from tenantry import Agent, InMemoryStore
from tenantry._version import __version__
from tenantry.server import ServerSettings, create_app


def test_the_package_metadata_and_the_package_agree() -> None:
    assert version("tenantry") == tenantry.__version__ == __version__


async def test_the_server_reports_the_same_version() -> None:
    settings = ServerSettings(_env_file=None, allowed_hosts=["testserver"])
    app = create_app(Agent(store=InMemoryStore()), settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            info = (await http.get("/v1/info")).json()
            schema = (await http.get("/openapi.json")).json()
    assert info["version"] == schema["info"]["version"] == version("tenantry")
