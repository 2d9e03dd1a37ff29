"""The console's Conversations page in Debian's headless Chromium, in the real app and shell:
unlock, filter by language, open a transcript with its sources and feedback, export CSV, erase a
conversation after confirming; hostile text from a visitor, the model and a document shown as
text. Screenshots (light and dark) go to test-artifacts/console."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import open_console, require_chromium, screenshot, serve_docs
from tests.conversation_seed import add_lead, conversation
from tests.fakes import FakeEmbedder

pytestmark = pytest.mark.integration
ADMIN = "console-conversations-admin"
DOCS = {"welcome.md": "# Welcome\n\nThe shop opens at nine."}
HOSTILE = '<img src=x onerror="window.__xss=1"> **bold** [a](javascript:window.__xss=2)'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_chromium()
    from app.chat.types import ChatResult, Source
    from app.server.db import ConversationStore
    from app.settings import load_settings

    base = tmp_path_factory.mktemp("console-conversations")
    url = f"sqlite:///{base / 'conv.sqlite3'}"
    store = ConversationStore(url)
    en, en_answer = conversation(store, "How do I return shoes?")
    store.add_feedback(en, en_answer, "up", "Clear and quick")
    de, de_answer = conversation(store, "Wie lange dauert die Lieferung?", "de")
    store.add_feedback(de, de_answer, "down", "Zu vage")
    add_lead(store, de, "kunde@example.com")
    hostile = Source(1, HOSTILE, HOSTILE, "en", 0.5, "p", url="javascript:window.__xss=3")
    session = store.open_session(None, "default")
    store.add_exchange(session, HOSTILE, ChatResult(HOSTILE, [hostile], "en", "generative", True))
    store.engine.dispose()
    settings = load_settings(data_dir=base / "data", database_url=url, admin_api_key=ADMIN)
    with serve_docs(settings, DOCS, FakeEmbedder(), llm=None) as address:
        yield address


def open_page(browser: Any, url: str, theme: str) -> Any:
    """The app with the console unlocked on its Conversations page, the list loaded."""
    from playwright.sync_api import expect

    page = open_console(browser, url, ADMIN, theme=theme, locale="en-US", width=1440, height=1600)
    page.get_by_role("tab", name="Conversations").click()
    listed = re.compile(r"\d+ conversations?\.")
    expect(page.locator("#kbchat-cc-status")).to_contain_text(listed, timeout=30_000)
    return page


def cell(table: Any, text: str) -> Any:
    """The table cell (Gradio's data-testid cell-ROW-COL) that shows `text`."""
    return table.locator("[data-testid^='cell-']", has_text=text).first


def test_filter_open_export_and_erase(browser: Any, server: str) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, server, "light")
    table, status = page.locator("#kbchat-cc-list"), page.locator("#kbchat-cc-status")
    expect(table).to_contain_text("Wie lange dauert")
    expect(table).to_contain_text('<img src=x onerror="window.__xss=1">')  # as text

    # filter by language: only the German conversation is left
    page.locator("#kbchat-cc-language input, #kbchat-cc-language textarea").first.fill("de")
    page.locator("#kbchat-cc-search").click()
    expect(status).to_contain_text("1 conversation.", timeout=30_000)
    expect(table).not_to_contain_text("How do I return shoes?")

    # a click on its row opens the transcript with its sources and feedback
    cell(table, "Wie lange dauert die Lieferung?").click()
    transcript = page.locator("#kbchat-cc-transcript")
    expect(transcript).to_contain_text("returns.md", timeout=30_000)
    expect(transcript).to_contain_text("https://shop.test/returns")
    expect(transcript).to_contain_text("Zu vage")
    expect(transcript).to_contain_text("kunde@example.com")
    screenshot(page, "console", "conversations-light.png")

    # export the filtered list as CSV
    page.locator("#kbchat-cc-export-csv").click()
    link = page.locator("#kbchat-cc-export a").first
    expect(link).to_be_visible(timeout=30_000)
    with page.expect_download() as download:
        link.click()
    text = Path(download.value.path()).read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["language"] for r in rows} == {"de"} and len(rows) == 2

    # erase it, after confirming
    page.locator("#kbchat-cc-erase").click()
    expect(status).to_contain_text("Erase this conversation for good?")
    page.locator("#kbchat-cc-confirm-yes").click()
    expect(status).to_contain_text("Erased 1 conversation.", timeout=30_000)
    expect(transcript).not_to_contain_text("Zu vage")
    expect(table).not_to_contain_text("Wie lange dauert")
    assert page.evaluate("window.__xss") is None
    page.context.close()


def test_hostile_transcript_in_dark_mode(browser: Any, server: str) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, server, "dark")
    cell(page.locator("#kbchat-cc-list"), "window.__xss=1").click()
    transcript = page.locator("#kbchat-cc-transcript")
    expect(transcript).to_contain_text("javascript:window.__xss=3", timeout=30_000)
    for inert in ("img", "script", "a", "[onerror]", "strong"):
        assert transcript.locator(inert).count() == 0, inert
    screenshot(page, "console", "conversations-dark.png")
    assert page.evaluate("window.__xss") is None
    page.context.close()
