"""`/docs` renders Swagger UI with no network at all (its files come from the package), under
a CSP that allows what it runs and no more."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tenantry import Agent
from tenantry.server import create_app
from tests.server.conftest import open_settings
from tests.support.browser import chromium, needs_chromium, watch
from tests.support.servers import serve


@pytest.fixture
def live(agent: Agent) -> Iterator[str]:
    with serve(create_app(agent, open_settings())) as url:
        yield url


def test_the_docs_page_loads_nothing_from_elsewhere(live: str) -> None:
    page = httpx.get(f"{live}/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "https://" not in page.text.replace("https://swagger.io", "")
    policy = page.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; script-src 'self' 'sha256-")
    for loose in ("unsafe-inline", "unsafe-eval", "http", "*"):
        assert loose not in policy
    for asset, kind in [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon.png", "image/png"),
    ]:
        response = httpx.get(f"{live}/docs/assets/{asset}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
        assert asset in page.text
    assert httpx.get(f"{live}/docs/assets/redoc.standalone.js").status_code == 404
    assert "/docs" not in httpx.get(f"{live}/openapi.json").json()["paths"]


@needs_chromium
def test_the_docs_page_renders_offline_without_csp_violations(live: str) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        watched = watch(browser.new_page())
        page = watched.page
        page.goto(f"{live}/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("tenantry")
        chat = page.locator(".opblock-summary", has_text="/v1/chat/stream")
        expect(chat).to_be_visible()
        chat.click()
        expect(page.locator(".opblock-body").first).to_be_visible()
        page.get_by_role("button", name="Try it out").click()
        expect(page.get_by_role("button", name="Execute")).to_be_visible()
        assert watched.offsite == []
        assert watched.csp_violations == []
        assert watched.errors == []
