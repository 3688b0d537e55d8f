"""The chat page at `/`, driven in headless Chromium (Debian's package, via Playwright)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tenantry import Agent
from tenantry.server import create_app
from tests.server.conftest import Tenants, open_settings
from tests.support.servers import serve

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)",
)

if os.access(CHROMIUM, os.X_OK):
    from playwright.sync_api import Page, expect, sync_playwright


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def _send(page: Page, text: str) -> None:
    with page.expect_response("**/v1/chat/stream") as streamed:
        page.fill("#message", text)
        page.click("#send")
    assert streamed.value.status == 200
    expect(page.locator("#send")).to_be_enabled()


def test_open_mode_page_chats_per_user_and_lists_sessions(agent: Agent, browser_page: Page) -> None:
    page = browser_page
    with serve(create_app(agent, open_settings())) as url:
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator("#whoami")).to_contain_text("Open mode")
        page.fill("#userId", "alice")
        page.dispatch_event("#userId", "change")
        _send(page, "My name is Alice")
        _send(page, "What is my name?")
        expect(page.locator(".msg.assistant").last).to_have_text("Your name is Alice.")
        expect(page.locator("#sessions li")).to_have_text(["default"])

        page.fill("#userId", "bob")
        page.dispatch_event("#userId", "change")
        expect(page.locator(".msg")).to_have_count(0)
        _send(page, "What is my name?")
        expect(page.locator(".msg.assistant").last).to_contain_text("don't know your name")

        page.click("#newSession")
        _send(page, "My name is Robert")
        expect(page.locator("#sessions li")).to_have_count(2)
        page.locator("#sessions li button", has_text="default").click()
        expect(page.locator(".msg.user")).to_have_text(["What is my name?"])

        page.fill("#userId", "alice")
        page.dispatch_event("#userId", "change")
        expect(page.locator(".msg.assistant").last).to_have_text("Your name is Alice.")


def test_auth_mode_page_logs_in_with_an_api_key(
    agent: Agent, tenants: Tenants, browser_page: Page
) -> None:
    page = browser_page
    with serve(create_app(agent, tenants.settings())) as url:
        page.goto(url)
        expect(page.locator("#login-box")).to_be_visible()
        expect(page.locator("#user-box")).to_be_hidden()
        page.fill("#apiKey", "tnt_wrong")
        page.click("#login")
        expect(page.locator("#status")).to_contain_text("401 Unauthorized")
        page.fill("#apiKey", tenants.keys["alice"])
        page.click("#login")
        expect(page.locator("#whoami")).to_have_text("Signed in as alice")
        _send(page, "My name is Alice")
        _send(page, "What is my name?")
        expect(page.locator(".msg.assistant").last).to_have_text("Your name is Alice.")
        expect(page.locator("#sessions li")).to_have_text(["default"])
