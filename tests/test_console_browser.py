"""The console's Knowledge page in Debian's headless Chromium: unlock with the admin key, create
a knowledge base, drop two files on it (one a broken PDF), read the failure's reason in the
documents table and the ingest report, delete a document and see it gone; a file named with
HTML shown as text. Screenshots of the page, light and dark, go to test-artifacts/console."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import open_console, require_chromium, screenshot, serve_docs
from tests.fakes import FakeEmbedder

pytestmark = pytest.mark.integration
ADMIN = "console-browser-admin"
DOCS = {"welcome.md": "# Welcome\n\nThe shop opens at nine."}
HOSTILE_NAME = '<img src=x onerror="window.__xss=1">[a](javascript:window.__xss=2).md'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(the app's URL, its data dir)."""
    require_chromium()
    from app.settings import load_settings

    base = tmp_path_factory.mktemp("console-browser")
    settings = load_settings(
        data_dir=base / "data",
        database_url=f"sqlite:///{base / 'conv.sqlite3'}",
        admin_api_key=ADMIN,
    )
    with serve_docs(settings, DOCS, FakeEmbedder(), llm=None) as url:
        yield url, settings.data_dir


def open_knowledge(browser: Any, url: str, theme: str) -> Any:
    """A page of the app with the console unlocked and its Knowledge page loaded."""
    from playwright.sync_api import expect

    page = open_console(browser, url, ADMIN, theme=theme, locale="en-US", width=1280, height=1500)
    expect(page.locator("#kbchat-console-status")).to_contain_text("Console unlocked.")
    expect(page.locator("#kbchat-kb-docs")).to_contain_text("welcome.md", timeout=30_000)
    return page


def test_create_upload_see_the_failure_and_delete_a_document(
    browser: Any, server: tuple[str, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    url, data_dir = server
    page = open_knowledge(browser, url, "light")
    page.locator("#kbchat-kb-new textarea, #kbchat-kb-new input").fill("manuals")
    page.locator("#kbchat-kb-create").click()
    status = page.locator("#kbchat-kb-status")
    expect(status).to_contain_text("Created manuals", timeout=30_000)
    expect(page.locator("#kbchat-kb-pick input")).to_have_value("manuals")

    guide = tmp_path / "guide.md"
    guide.write_text("# Router\n\nHold the reset button for ten seconds.", "utf-8")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7 this is not really a PDF")
    files = page.locator("#kbchat-kb-files")
    files.locator("input[type=file]").set_input_files([str(guide), str(broken)])
    expect(files).to_contain_text(re.compile(r"broken\s*\.pdf"), timeout=30_000)
    page.locator("#kbchat-kb-upload").click()
    expect(status).to_contain_text("Uploaded 2 file(s) into manuals", timeout=60_000)

    documents = page.locator("#kbchat-kb-docs")
    expect(documents).to_contain_text("guide.md")
    expect(documents).to_contain_text("damaged or truncated PDF")
    report = page.locator("#kbchat-kb-report")
    expect(report).to_contain_text("failed")
    expect(page.locator("#kbchat-kb-report-summary")).to_contain_text("1 added")
    expect(page.locator("#kbchat-kb-report-summary")).to_contain_text("1 failed")
    screenshot(page, "console", "knowledge-light.png")

    page.locator("#kbchat-kb-doomed input").click()
    page.get_by_role("option", name="guide.md").click()
    page.locator("#kbchat-kb-del-docs").click()
    expect(status).to_contain_text("Deleted 1 document(s) from manuals", timeout=60_000)
    expect(documents).not_to_contain_text("guide.md")
    expect(documents).to_contain_text("broken.pdf")
    expect(report).to_contain_text("removed")

    # a file put into the folder by other means, named with HTML: text in every cell
    (data_dir / "collections" / "manuals" / HOSTILE_NAME).write_text("# Odd\n\nOdd.", "utf-8")
    page.locator("#kbchat-kb-resync").click()
    expect(status).to_contain_text("Synced manuals", timeout=60_000)
    expect(documents).to_contain_text('<img src=x onerror="window.__xss=1">')
    expect(report).to_contain_text("[a](javascript:")
    for inert in ("img", "script", "a[href^='javascript']", "[onerror]"):
        assert page.locator(f"#kbchat-console {inert}").count() == 0, inert

    # the chat tab offers the new knowledge base
    page.get_by_role("tab", name="Chat").click()
    page.locator("#kbchat-collection input").click()
    expect(page.get_by_role("option", name="manuals")).to_be_visible()
    assert page.evaluate("window.__xss") is None
    page.context.close()


def test_knowledge_page_in_dark_mode(browser: Any, server: tuple[str, Path]) -> None:
    from playwright.sync_api import expect

    page = open_knowledge(browser, server[0], "dark")
    page.locator("#kbchat-kb-delete").click()
    expect(page.locator("#kbchat-kb-confirm")).to_contain_text("This cannot be undone")
    screenshot(page, "console", "knowledge-dark.png")
    page.locator("#kbchat-kb-confirm-no").click()
    expect(page.locator("#kbchat-kb-confirm")).to_be_hidden()
    page.context.close()
