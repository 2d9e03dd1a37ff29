"""The full-page assistant /a/{id} as a visitor sees it, and the widget's config at page load,
in Debian's headless Chromium against the real app (real Chroma, the toy embedder, the loopback
LLM stub). The page runs under its strict Content-Security-Policy, so a style or script that the
policy blocks shows up here as a console error and an unstyled page.
Screenshots go to $KBCHAT_TEST_ARTIFACTS/fullpage or test-artifacts/fullpage/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import require_chromium, screenshot, serve_docs
from tests.fakes import FakeEmbedder
from tests.openai_stub import OpenAIStub, condensing

pytestmark = pytest.mark.integration
ADMIN = "admin-secret-123"
DOCS = {"returns.md": "# Returns\n\nShoes can be returned within 30 days of delivery."}
ANSWER = "Shoes can be returned within **30 days** of delivery [1]."
ASSISTANT = {
    "id": "shoe-shop",
    "name": "Pip <the shoe helper>",
    "color": "#0f766e",
    "theme": "auto",
    "greeting": {"en": "Hi, I am Pip! Ask me about returns and sizes."},
    "suggestions": {"en": ["How do returns work?", "Do you ship abroad?"]},
    "default_language": "en",
    "collection": "shop",
    "fullpage": True,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_chromium()
    import httpx

    from app.settings import load_settings

    base = tmp_path_factory.mktemp("fullpage")
    with OpenAIStub(reply=condensing(ANSWER)) as stub:
        settings = load_settings(
            data_dir=base / "data",
            database_url=f"sqlite:///{base / 'conv.sqlite3'}",
            admin_api_key=ADMIN,
            openai_base_url=stub.base_url,
            llm={"model": "stub-model", "max_retries": 0},
            ingest={"resync_on_start": False},
            retrieval={"small_talk": False, "query_correction": "off", "min_score": 0.0},
        )
        with serve_docs(settings, DOCS, FakeEmbedder(), "shop", with_ui=False) as url:
            auth = {"Authorization": f"Bearer {ADMIN}"}
            created = httpx.post(f"{url}/api/assistants", json=ASSISTANT, headers=auth)
            assert created.status_code == 201, created.text
            yield url


LOOKS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "mobile": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("device", ["desktop", "mobile"])
def test_the_full_page_fills_the_screen_greets_and_answers_a_chip(
    browser: Any,
    server: str,
    device: str,
    scheme: str,
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(locale="en-US", color_scheme=scheme, **LOOKS[device])
    try:
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: problems.append(r.url) if r.status >= 400 else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        configs: list[str] = []
        page.on("request", lambda r: configs.append(r.url) if "/api/widget/config" in r.url else 0)
        page.goto(f"{server}/a/shoe-shop")
        assert page.title() == "Pip <the shoe helper>"
        greeting = page.locator(".kbchat-greeting")
        expect(greeting).to_have_text("Hi, I am Pip! Ask me about returns and sizes.")
        expect(page.locator(".kbchat-title")).to_have_text("Pip <the shoe helper>")
        # the chat is the page: the panel covers the viewport; no bubble, no close button
        size = LOOKS[device]["viewport"]
        box = page.locator(".kbchat-panel").bounding_box()
        assert box == {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
        expect(page.locator(".kbchat-bubble")).to_be_hidden()
        expect(page.locator(".kbchat-close")).to_be_hidden()
        assert page.locator(".kbchat-panel").get_attribute("role") == "main"
        # styled under the CSP: the header wears the assistant's colour, the theme follows
        header = page.locator(".kbchat-header")
        assert header.evaluate("n => getComputedStyle(n).backgroundColor") == "rgb(15, 118, 110)"
        dark = page.locator(".kbchat-root").evaluate("n => n.classList.contains('theme-dark')")
        assert dark == (scheme == "dark")
        chips = page.locator(".kbchat-chip")
        expect(chips).to_have_count(2)
        shot(page, f"{device}-{scheme}-greeting.png")

        chips.first.click()
        expect(page.locator(".kbchat-msg-user")).to_have_text("How do returns work?")
        answer = page.locator(".kbchat-msg-assistant").last
        expect(answer.locator(".kbchat-actions")).to_be_visible(timeout=30_000)
        expect(answer.locator("strong")).to_have_text("30 days")
        expect(answer.locator(".kbchat-source.cited")).to_contain_text("returns.md")
        answer.locator("button.kbchat-cite").first.click()
        expect(page.locator(".kbchat-passage-text")).to_contain_text("within 30 days")
        page.keyboard.press("Escape")  # closes the passage, never the page
        expect(page.locator(".kbchat-passage")).to_be_hidden()
        expect(page.locator(".kbchat-panel")).to_be_visible()
        shot(page, f"{device}-{scheme}-answer.png")
        assert len(configs) == 1
        assert problems == []  # nothing blocked by the CSP, no script error
        page.reload()  # the conversation comes back (GET /api/sessions with the page's header)
        expect(page.locator(".kbchat-msg-user")).to_have_text("How do returns work?")
        expect(page.locator(".kbchat-msg-assistant strong")).to_have_text("30 days")
        assert problems == []
    finally:
        context.close()


def test_the_widget_wears_its_config_before_it_is_opened_and_caches_it(
    browser: Any,
    server: str,
) -> None:
    """The embedded widget asks for its config at page load, so the closed bubble has the
    assistant's colour and side; a second page view within minutes reuses it."""
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    try:
        page = context.new_page()
        served: list[str] = []
        config = {**ASSISTANT, "assistant": "shoe-shop", "avatar": None, "position": "left"}
        for field in ("id", "collection", "fullpage"):
            config.pop(field)

        def fulfil(route: Any) -> None:
            served.append(route.request.url)
            route.fulfill(status=200, content_type="application/json", body=json.dumps(config))

        page.route(f"{server}/api/widget/config", fulfil)
        page.goto(f"{server}/widget/demo")
        bubble = page.locator(".kbchat-bubble")
        page.wait_for_function(
            "() => getComputedStyle(document.getElementById('kbchat-widget-host').shadowRoot"
            ".querySelector('.kbchat-bubble')).backgroundColor === 'rgb(15, 118, 110)'"
        )
        box = bubble.bounding_box()
        assert box is not None and box["x"] < 100  # on the left, as configured
        assert served and len(served) == 1
        page.reload()
        page.wait_for_function(
            "() => getComputedStyle(document.getElementById('kbchat-widget-host').shadowRoot"
            ".querySelector('.kbchat-bubble')).backgroundColor === 'rgb(15, 118, 110)'"
        )
        assert len(served) == 1  # from sessionStorage
        page.evaluate(
            "() => { for (const k of Object.keys(sessionStorage)) {"
            " const v = JSON.parse(sessionStorage.getItem(k)); v.at -= 10 * 60 * 1000;"
            " sessionStorage.setItem(k, JSON.stringify(v)); } }"
        )
        page.reload()
        bubble.click()
        page.locator(".kbchat-greeting").wait_for()  # shown once the config is in
        assert len(served) == 2  # stale after a few minutes: asked again
    finally:
        context.close()


AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_or_critical_violation_on_the_page(
    browser: Any,
    server: str,
    scheme: str,
) -> None:
    """The whole page is ours, so axe-core (vendored) audits all of it: greeting and chips, then
    an answer with its sources. Its script is injected inline, so this context bypasses the CSP
    (the other tests keep it)."""
    from playwright.sync_api import expect

    context = browser.new_context(locale="en-US", color_scheme=scheme, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(f"{server}/a/shoe-shop")
        expect(page.locator(".kbchat-chip")).to_have_count(2)
        page.add_script_tag(path=str(AXE))
        audit = """async () => {
            const r = await axe.run(document, { resultTypes: ["violations"] });
            return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
                .map(v => v.id + ": " + v.nodes.map(n => n.target.join(" > ")).join(", "));
        }"""
        assert page.evaluate(audit) == []
        page.locator(".kbchat-chip").first.click()
        answer = page.locator(".kbchat-msg-assistant").last
        expect(answer.locator(".kbchat-actions")).to_be_visible(timeout=30_000)
        assert page.evaluate(audit) == []
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    screenshot(page, "fullpage", name)
