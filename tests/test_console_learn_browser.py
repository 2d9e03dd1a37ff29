"""The console's Learn page in Debian's headless Chromium, on a German browser: unlock, see a
cluster of paraphrases in three languages with its German representative, a content gap with a
question written as HTML shown as text, the source tables and the quality charts rendered.
Screenshots of the page, light and dark, go to test-artifacts/console."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import open_console, require_chromium, screenshot
from tests.fakes import FakeEmbedder
from tests.test_insights import TopicEncoder, answer

pytestmark = pytest.mark.integration
ADMIN = "learn-browser-admin"
HOSTILE = '<img src=x onerror="window.__xss=1"> warranty [a](javascript:window.__xss=2)?'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app's URL; its insights cluster with the topic encoder, its database is seeded."""
    require_chromium()
    from app.ingest import ingest_folder
    from app.server.app import create_app
    from app.settings import load_settings
    from tests.live_server import live_server

    base = tmp_path_factory.mktemp("learn-browser")
    settings = load_settings(
        data_dir=base / "data",
        database_url=f"sqlite:///{base / 'conv.sqlite3'}",
        admin_api_key=ADMIN,
    )
    docs = base / "docs"
    docs.mkdir()
    for name in ("shipping.md", "warranty.md"):
        (docs / name).write_text(f"# {name}\n\nAbout {name[:-3]}.", "utf-8")
    embedder: Any = FakeEmbedder()
    ingest_folder(settings, docs, settings.collection, embedder=embedder)
    app = create_app(settings, embedder=embedder, llm=None)
    insights = app.state.insights
    insights.encoder, insights.correction, insights.threshold = TopicEncoder(), None, 0.9
    store = app.state.services.conversations
    seeds: list[tuple[str, str, dict[str, Any]]] = [
        ("shipping to Spain?", "en", {"sources": ["shipping.md"], "cites": "[1]"}),
        ("shipping nach Spanien?", "de", {"sources": ["shipping.md"], "cites": "[1]"}),
        ("shipping a España?", "es", {"sources": ["shipping.md"], "cites": "[1]"}),
        ("warranty for used items?", "en", {"grounded": False}),
        (HOSTILE, "en", {"grounded": False}),
    ]
    for question, language, fields in seeds:
        session = store.open_session(None, settings.collection)
        store.add_exchange(session, question, answer(language=language, **fields))
    with live_server(app) as url:
        yield url


def open_learn(browser: Any, url: str, theme: str) -> Any:
    from playwright.sync_api import expect

    page = open_console(browser, url, ADMIN, theme=theme, locale="de-DE", width=1280, height=2700)
    page.get_by_role("tab", name="Learn").click()
    expect(page.locator("#kbchat-learn-top")).to_contain_text("shipping", timeout=60_000)
    return page


def test_top_questions_gaps_sources_and_charts(browser: Any, server: str) -> None:
    from playwright.sync_api import expect

    page = open_learn(browser, server, "light")
    expect(
        page.locator("#kbchat-learn-operator textarea, #kbchat-learn-operator input")
    ).to_have_value("de")
    top = page.locator("#kbchat-learn-top")
    expect(top).to_contain_text("shipping nach Spanien?")  # the German representative
    expect(top).to_contain_text("100%")
    for counts in ("en 1", "de 1", "es 1"):
        expect(top).to_contain_text(counts)
    gaps = page.locator("#kbchat-learn-gaps")
    expect(gaps).to_contain_text("2 found nothing")
    expect(gaps).to_contain_text('<img src=x onerror="window.__xss=1">')
    expect(page.locator("#kbchat-learn-cited")).to_contain_text("shipping.md")
    expect(page.locator("#kbchat-learn-never")).to_contain_text("warranty.md")
    expect(page.locator("#kbchat-learn-charts")).to_be_visible()
    expect(page.locator("#kbchat-learn-no-charts")).to_be_hidden()
    for chart in ("conversations", "messages", "answered", "feedback-rate", "handovers"):
        drawn = page.locator(f"#kbchat-learn-{chart}").locator("canvas, svg").first
        expect(drawn).to_be_visible(timeout=30_000)
    page.locator("#kbchat-learn-top-more").get_by_text("Examples per cluster").click()
    expect(page.locator("#kbchat-learn-top-examples")).to_contain_text("shipping a España?")
    for inert in ("img", "script", "a[href^='javascript']", "[onerror]"):
        assert page.locator(f"#kbchat-console {inert}").count() == 0, inert
    assert page.evaluate("window.__xss") is None
    screenshot(page, "console", "learn-light.png")

    page.locator("#kbchat-learn-period").get_by_text("From–to").click()
    page.locator("#kbchat-learn-since textarea, #kbchat-learn-since input").fill("2001-01-01")
    page.locator("#kbchat-learn-until textarea, #kbchat-learn-until input").fill("2001-01-31")
    page.locator("#kbchat-learn-refresh").click()
    expect(page.locator("#kbchat-learn-status")).to_contain_text("No questions in this period")
    expect(page.locator("#kbchat-learn-no-charts")).to_be_visible()
    expect(page.locator("#kbchat-learn-charts")).to_be_hidden()
    page.context.close()


def test_learn_page_in_dark_mode(browser: Any, server: str) -> None:
    from playwright.sync_api import expect

    page = open_learn(browser, server, "dark")
    expect(page.locator("#kbchat-learn-charts")).to_be_visible()
    screenshot(page, "console", "learn-dark.png")
    page.context.close()
