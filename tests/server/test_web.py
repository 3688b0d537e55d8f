"""The chat page at `/`, driven in headless Chromium (Debian's package, via Playwright) as a
support team uses it all day: history on load and after reload, Markdown rendered safely,
multi-line input, retry after a failure, errors that go with their cause, Stop, session
rename and delete, log in and out, a phone-sized layout, keyboard and screen-reader basics,
and never a CSP violation or a request off this machine."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tenantry import Agent, FunctionModel, InMemoryStore
from tenantry.errors import ModelError
from tenantry.models import ModelBase, ModelResponse, StreamItem
from tenantry.server import create_app
from tenantry.types import Message, ToolSpec
from tests.server.conftest import Tenants, open_settings
from tests.support.browser import CHROMIUM, Watched, chromium, needs_chromium, watch
from tests.support.servers import serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = needs_chromium

if os.access(CHROMIUM, os.X_OK):
    from playwright.sync_api import expect

SCREENSHOTS = os.environ.get("TENANTRY_SCREENSHOTS")
"""A directory to copy the page's screenshots to (README shows bench/results/page-*.png)."""
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
MARKDOWN = (
    "To reset a **password**, *first* check the account:\n\n"
    "1. Open `Settings`\n2. Click **Reset**\n\n"
    "```\ntenantry users export alice\n```\n"
    "- see [the guide](https://example.com/guide)\n"
    "- not [a trap](javascript:window.__pwned=1)\n\n"
    "Raw markup stays text: "
    '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=1</script>'
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def browser_page(browser: Browser) -> Iterator[Page]:
    """One page for the tests that walk a whole story (kept from the first page tests)."""
    context = browser.new_context()
    yield context.new_page()
    context.close()


@pytest.fixture
def fresh(browser: Browser) -> Iterator[Any]:
    """Give pages in a new browser profile (empty localStorage), watched for requests off
    this machine, CSP violations and script errors, which must all stay absent."""
    opened: list[Watched] = []
    contexts = []

    def new_page(viewport: dict[str, int] | None = None) -> Watched:
        context = browser.new_context(viewport=viewport or DESKTOP)
        contexts.append(context)
        watched = watch(context.new_page())
        opened.append(watched)
        return watched

    yield new_page
    for context in contexts:
        context.close()
    for watched in opened:
        assert watched.offsite == []
        assert watched.csp_violations == []
        assert watched.errors == []


def _send(page: Page, text: str) -> None:
    with page.expect_response("**/v1/chat/stream") as streamed:
        page.fill("#message", text)
        page.click("#send")
    assert streamed.value.status == 200
    expect(page.locator("#send")).to_be_enabled()


def _open_user(page: Page, user: str) -> None:
    page.fill("#userId", user)
    page.dispatch_event("#userId", "change")


def _open_session(page: Page, session: str) -> None:
    page.fill("#sessionId", session)
    page.dispatch_event("#sessionId", "change")


def _stored(page: Page) -> str:
    return str(page.evaluate("JSON.stringify([localStorage, sessionStorage])"))


@pytest.fixture
def scripted() -> tuple[Agent, list[str]]:
    """An agent whose replies are MARKDOWN, except for scripted words; gives what it heard."""
    heard: list[str] = []

    def answer(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        text = messages[-1].content
        heard.append(text)
        if text == "fail once" and heard.count(text) == 1:
            raise ModelError("the model is overloaded; try again")
        if text == "long":
            return "x" * 600 + " " + "https://example.com/" + "a" * 300
        return MARKDOWN if text.startswith("How") else f"You said: {text}"

    return Agent(store=InMemoryStore(), model=FunctionModel(answer)), heard


# --- the first stories, kept as they were -----------------------------------------------------


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


# --- history and what the browser remembers -------------------------------------------------


def test_history_shows_on_load_and_after_reload_with_user_and_session_remembered(
    agent: Agent, fresh: Any
) -> None:
    with serve(create_app(agent, open_settings())) as url:
        for text in ("My name is Alice", "What is my name?"):
            body = {"message": text, "user_id": "alice", "session_id": "s1"}
            httpx.post(f"{url}/v1/chat", json=body).raise_for_status()
        page = fresh().page
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator(".msg")).to_have_count(0)  # "default" has said nothing yet
        _open_user(page, "alice")
        _open_session(page, "s1")
        expect(page.locator(".msg.assistant").last).to_have_text("Your name is Alice.")
        page.reload()
        expect(page.locator("#userId")).to_have_value("alice")
        expect(page.locator("#sessionId")).to_have_value("s1")
        expect(page.locator(".msg.user")).to_have_text(["My name is Alice", "What is my name?"])
        expect(page.locator("#sessions li.current")).to_have_text("s1")
        expect(page.locator("#status")).to_have_text("")


def test_auth_send_waits_for_login_enter_logs_in_and_the_key_is_kept_only_if_asked(
    agent: Agent, tenants: Tenants, fresh: Any
) -> None:
    key = tenants.keys["alice"]
    with serve(create_app(agent, tenants.settings())) as url:
        httpx.post(
            f"{url}/v1/chat", json={"message": "My name is Alice"}, headers={"X-API-Key": key}
        ).raise_for_status()
        page = fresh().page
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator("#send")).to_be_disabled()
        expect(page.locator("#message")).to_be_disabled()
        page.fill("#apiKey", key)
        page.press("#apiKey", "Enter")
        expect(page.locator("#whoami")).to_have_text("Signed in as alice")
        expect(page.locator(".msg.user")).to_have_text(["My name is Alice"])  # history at login
        expect(page.locator("#send")).to_be_enabled()
        assert key not in _stored(page)

        page.reload()  # not remembered: logged out again
        expect(page.locator("#login-box")).to_be_visible()
        expect(page.locator("#send")).to_be_disabled()
        expect(page.locator(".msg")).to_have_count(0)

        page.fill("#apiKey", key)
        page.check("#rememberKey")
        page.press("#apiKey", "Enter")
        expect(page.locator("#whoami")).to_have_text("Signed in as alice")
        assert key in _stored(page)
        page.reload()  # remembered: signed in, with the session's history
        expect(page.locator("#whoami")).to_have_text("Signed in as alice")
        expect(page.locator(".msg.user")).to_have_text(["My name is Alice"])

        page.click("#logout")
        expect(page.locator("#login-box")).to_be_visible()
        expect(page.locator("#send")).to_be_disabled()
        expect(page.locator(".msg")).to_have_count(0)
        expect(page.locator("#sessions li")).to_have_count(0)
        assert key not in _stored(page)


# --- what replies look like --------------------------------------------------------------------


def test_replies_render_markdown_without_ever_making_html_of_the_text(
    scripted: tuple[Agent, list[str]], fresh: Any
) -> None:
    agent, _ = scripted
    with serve(create_app(agent, open_settings())) as url:
        page = fresh().page
        page.goto(url)
        _send(page, "How do I reset a password?")
        reply = page.locator(".msg.assistant").last
        expect(reply.locator("strong").first).to_have_text("password")
        expect(reply.locator("em")).to_have_text("first")
        expect(reply.locator("ol > li")).to_have_text(["Open Settings", "Click Reset"])
        expect(reply.locator("ol code")).to_have_text("Settings")
        expect(reply.locator("pre > code")).to_have_text("tenantry users export alice")
        guide = reply.locator("a")
        expect(guide).to_have_count(1)  # the javascript: link stays text
        expect(guide).to_have_attribute("href", "https://example.com/guide")
        expect(guide).to_have_attribute("rel", "noopener noreferrer")
        expect(reply.locator("ul > li").last).to_have_text(
            "not [a trap](javascript:window.__pwned=1)"
        )
        expect(reply).to_contain_text('<img src=x onerror="window.__pwned=1"> <script>')
        assert page.locator("#log img, #log script, #log [onerror]").count() == 0
        assert page.evaluate("window.__pwned") is None
        page.reload()  # history renders the same way
        expect(page.locator(".msg.assistant pre > code")).to_have_text(
            "tenantry users export alice"
        )


def test_long_unbroken_strings_wrap_inside_their_bubble(
    scripted: tuple[Agent, list[str]], fresh: Any
) -> None:
    agent, _ = scripted
    with serve(create_app(agent, open_settings())) as url:
        for viewport in (DESKTOP, PHONE):
            page = fresh(viewport).page
            page.goto(url)
            _send(page, "long")
            sizes = page.evaluate(
                """() => [...document.querySelectorAll('.msg')].map(m => [m.scrollWidth,
                    m.clientWidth, m.getBoundingClientRect().right]).concat([[
                    document.getElementById('log').scrollWidth,
                    document.getElementById('log').clientWidth, window.innerWidth]])"""
            )
            for scroll, client, right in sizes:
                assert scroll <= client
                assert right <= viewport["width"]


# --- sending ------------------------------------------------------------------------------


def test_enter_sends_and_shift_enter_starts_a_new_line(
    scripted: tuple[Agent, list[str]], fresh: Any
) -> None:
    agent, heard = scripted
    with serve(create_app(agent, open_settings())) as url:
        page = fresh().page
        page.goto(url)
        box = page.get_by_label("Message", exact=True)
        box.click()
        page.keyboard.type("line one")
        page.keyboard.press("Shift+Enter")
        page.keyboard.type("line two")
        expect(page.locator(".msg")).to_have_count(0)
        with page.expect_response("**/v1/chat/stream"):
            page.keyboard.press("Enter")
        expect(page.locator(".msg.assistant")).to_have_text(
            "You said: line one\nline two", use_inner_text=True
        )
        expect(page.locator(".msg.user")).to_have_text("line one\nline two")
        expect(box).to_have_value("")
        assert heard == ["line one\nline two"]


def test_a_failed_send_keeps_the_text_offers_retry_and_the_error_goes_when_it_works(
    scripted: tuple[Agent, list[str]], fresh: Any
) -> None:
    agent, heard = scripted
    with serve(create_app(agent, open_settings())) as url:
        page = fresh().page
        page.goto(url)
        with page.expect_response("**/v1/chat/stream") as failed:
            page.fill("#message", "fail once")
            page.click("#send")
        assert failed.value.status == 502
        # the page shows the server's error as it came: status, type and message
        expect(page.locator("#status")).to_contain_text("502 ModelError: ")
        expect(page.locator(".turn.failed .msg.user")).to_have_text("fail once")
        expect(page.locator(".msg.assistant")).to_have_count(0)
        expect(page.locator("#message")).to_have_value("fail once")
        with page.expect_response("**/v1/chat/stream"):
            page.get_by_role("button", name="Retry").click()
        expect(page.locator(".msg.assistant")).to_have_text("You said: fail once")
        expect(page.locator(".turn.failed")).to_have_count(0)
        expect(page.locator(".msg.user")).to_have_text(["fail once"])
        expect(page.locator("#status")).to_have_text("")
        expect(page.locator("#message")).to_have_value("")
        assert heard == ["fail once", "fail once"]


def test_an_invalid_user_clears_the_session_list_until_a_valid_one_is_back(
    agent: Agent, fresh: Any
) -> None:
    with serve(create_app(agent, open_settings())) as url:
        httpx.post(f"{url}/chat", json={"user_id": "alice", "message": "hi"}).raise_for_status()
        page = fresh().page
        page.goto(url)
        _open_user(page, "alice")
        expect(page.locator("#sessions li")).to_have_text(["default"])
        _open_user(page, "a" * 256)
        expect(page.locator("#status")).to_contain_text("422 InvalidRequest")
        expect(page.locator("#sessions li")).to_have_count(0)
        _open_user(page, "alice")
        expect(page.locator("#sessions li")).to_have_text(["default"])
        expect(page.locator("#status")).to_have_text("")


class SlowModel(ModelBase):
    """Streams one word, then waits until released (a long answer the user stops)."""

    name = "slow"

    def __init__(self) -> None:
        self.release = threading.Event()

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        return ModelResponse(content="Thinking... done")

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        yield "Thinking..."
        await asyncio.to_thread(self.release.wait, 60)
        yield " done"
        yield ModelResponse(content="Thinking... done")


def test_stop_ends_a_streaming_reply_and_the_page_is_ready_again(fresh: Any) -> None:
    model = SlowModel()
    agent = Agent(store=InMemoryStore(), model=model)
    with serve(create_app(agent, open_settings())) as url:
        page = fresh().page
        page.goto(url)
        try:
            page.fill("#message", "tell me everything")
            page.click("#send")
            expect(page.locator(".msg.assistant")).to_have_text("Thinking...")
            expect(page.locator(".msg.assistant")).to_have_attribute("aria-busy", "true")
            expect(page.locator("#send")).to_be_hidden()
            page.click("#stop")
            expect(page.locator(".turn.assistant .note")).to_contain_text("Stopped")
            expect(page.locator("#stop")).to_be_hidden()
            expect(page.locator("#send")).to_be_visible()
            expect(page.locator(".msg.assistant")).not_to_have_attribute("aria-busy", "true")
            expect(page.locator("#status")).to_have_text("")
        finally:
            model.release.set()


# --- sessions -----------------------------------------------------------------------------------


def test_a_session_can_be_renamed_here_and_deleted_on_the_server(agent: Agent, fresh: Any) -> None:
    with serve(create_app(agent, open_settings())) as url:
        for session in ("s1", "s2"):
            body = {"message": "hi", "user_id": "alice", "session_id": session}
            httpx.post(f"{url}/v1/chat", json=body).raise_for_status()
        page = fresh().page
        page.goto(url)
        _open_user(page, "alice")
        _open_session(page, "s2")
        expect(page.locator("#sessions li")).to_have_text(["s1", "s2"])
        page.click("#renameSession")
        page.fill("#renameInput", "Refund for order 42")
        page.press("#renameInput", "Enter")
        expect(page.locator("#sessions li")).to_have_text(["s1", "Refund for order 42"])
        expect(page.locator("#sessionTitle")).to_have_text("Refund for order 42")
        page.reload()  # the label is this browser's
        expect(page.locator("#sessions li.current")).to_have_text("Refund for order 42")
        page.click("#renameSession")
        page.fill("#renameInput", "never saved")
        page.press("#renameInput", "Escape")
        expect(page.locator("#sessionTitle")).to_have_text("Refund for order 42")

        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
            page.click("#deleteSession")
        assert deleted.value.status == 204
        expect(page.locator("#sessions li")).to_have_text(["s1"])
        expect(page.locator("#sessionId")).to_have_value("s1")
        expect(page.locator(".msg.user")).to_have_text(["hi"])
        listed = httpx.get(f"{url}/v1/users/alice/sessions").json()
        assert listed["sessions"] == ["s1"]
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.click("#deleteSession")
        expect(page.locator("#sessions li")).to_have_text(["s1"])


# --- layout, keyboard, screen readers, policy --------------------------------------------------


def _conversation(url: str) -> None:
    for text in ("How do I reset a password?", "Thanks!"):
        body = {"message": text, "user_id": "support", "session_id": "ticket-1042"}
        httpx.post(f"{url}/v1/chat", json=body).raise_for_status()


def _screenshot(page: Page, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"page-{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    if SCREENSHOTS:
        shutil.copy(path, Path(SCREENSHOTS) / path.name)


def test_on_a_phone_the_sidebar_folds_behind_a_button_and_the_input_is_in_view(
    scripted: tuple[Agent, list[str]], fresh: Any, tmp_path: Path
) -> None:
    agent, _ = scripted
    with serve(create_app(agent, open_settings())) as url:
        _conversation(url)
        desktop = fresh(DESKTOP).page
        desktop.goto(url)
        expect(desktop.locator("#sidebar")).to_be_visible()
        expect(desktop.locator("#sidebarToggle")).to_be_hidden()
        _open_user(desktop, "support")
        _open_session(desktop, "ticket-1042")
        expect(desktop.locator(".msg")).to_have_count(4)
        _screenshot(desktop, "desktop", tmp_path)

        page = fresh(PHONE).page
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator("#sidebar")).not_to_be_in_viewport()
        chat = page.locator("#chatColumn").bounding_box()
        assert chat is not None
        assert chat["width"] >= 370
        for control in ("#message", "#send"):
            box = page.locator(control).bounding_box()
            assert box is not None
            assert box["y"] + box["height"] <= PHONE["height"]
        toggle = page.locator("#sidebarToggle")
        expect(toggle).to_have_attribute("aria-expanded", "false")
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        expect(page.locator("#sidebar")).to_be_in_viewport()
        _open_user(page, "support")
        _open_session(page, "ticket-1042")
        page.keyboard.press("Escape")
        expect(page.locator("#sidebar")).not_to_be_in_viewport()
        expect(toggle).to_be_focused()
        expect(page.locator(".msg")).to_have_count(4)
        _screenshot(page, "phone", tmp_path)
        toggle.click()
        page.locator("#sessions li button", has_text="ticket-1042").click()  # picking closes
        expect(page.locator("#sidebar")).not_to_be_in_viewport()


def test_keyboard_and_screen_reader_basics(agent: Agent, fresh: Any) -> None:
    with serve(create_app(agent, open_settings())) as url:
        page = fresh().page
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        for name in ("User", "Session", "Message"):
            expect(page.get_by_label(name, exact=True)).to_be_editable()
        log = page.get_by_role("log", name="Conversation")
        expect(log).to_have_attribute("aria-live", "polite")
        expect(page.get_by_role("alert")).to_have_text("")
        page.get_by_label("User", exact=True).focus()
        order = []
        for _ in range(4):
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.id"))
        assert order == ["sessionId", "newSession", "renameSession", "deleteSession"]
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"  # focus is visible
        page.get_by_label("Message", exact=True).focus()
        page.keyboard.type("My name is Ada")
        with page.expect_response("**/v1/chat/stream"):
            page.keyboard.press("Enter")
        expect(log.locator(".msg.assistant")).to_contain_text("Ada")
        expect(page.get_by_label("Message", exact=True)).to_be_focused()


def test_the_page_policy_allows_no_inline_code_or_styles(agent: Agent) -> None:
    with serve(create_app(agent, open_settings())) as url:
        response = httpx.get(url)
        policy = response.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        assert "unsafe" not in policy
        assert "style=" not in response.text
        assert "<script>" not in response.text
        for asset in ("app.js", "markdown.js"):
            source = httpx.get(f"{url}/static/{asset}").text
            for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "Function("):
                assert unsafe not in source, (asset, unsafe)
