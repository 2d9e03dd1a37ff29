"""A cited passage links its document's own address, in Debian's headless Chromium against the real
app: the address comes from ingestion (front matter, HTML canonical link; real E5 and Chroma), not
from a fulfilled route, and one forged into the store as `javascript:` never becomes a link.
Screenshots go to $KBCHAT_TEST_ARTIFACTS/docurl or test-artifacts/docurl/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import require_chromium, screenshot
from tests.live_server import live_server
from tests.openai_stub import OpenAIStub, condensing
from tests.test_doc_url_api import DOCS, FORGED, MONORAIL_URL, RETURNS_URL, forge

pytestmark = pytest.mark.integration
SHADOW = "document.getElementById('kbchat-widget-host').shadowRoot"
LINKS = {
    "Returns": RETURNS_URL,
    "Schwebebahn": MONORAIL_URL,
    "Mount Vesuvius": None,
    "Forged": None,  # its chunks say javascript:, written straight into Chroma
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, e5: Any) -> Iterator[str]:
    require_chromium()
    from app.ingest import ingest_folder
    from app.server.app import create_app
    from app.settings import load_settings

    base = tmp_path_factory.mktemp("docurl-browser")
    (base / "docs").mkdir()
    for name, text in DOCS.items():
        (base / "docs" / name).write_text(text, encoding="utf-8")
    with OpenAIStub(reply=condensing("Thirty days [1], 1901 [2], Naples [3], buns [4].")) as stub:
        settings = load_settings(
            data_dir=base / "data",
            openai_base_url=stub.base_url,
            llm={"model": "stub-model", "max_retries": 0},
            retrieval={"min_score": 0.0, "min_margin": -1.0},  # all four passages are sources
        )
        ingest_folder(settings, base / "docs", settings.collection, embedder=e5)
        forge(settings, "forged.md", FORGED)
        with live_server(create_app(settings, embedder=e5)) as url:
            yield url


def test_a_cited_passage_links_the_documents_own_address(browser: Any, server: str) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(locale="en-US", viewport={"width": 1200, "height": 850})
    try:
        page = context.new_page()
        page.goto(f"{server}/widget/demo")
        page.locator(".kbchat-bubble").click()
        page.locator(".kbchat-input").fill("How long do I have to return an item?")
        page.locator(".kbchat-input").press("Enter")
        answer = page.locator(".kbchat-msg-assistant").last
        expect(answer.locator(".kbchat-actions")).to_be_visible(timeout=60_000)  # after `done`
        cites = answer.locator("button.kbchat-cite")
        expect(cites).to_have_count(4)
        seen: dict[str, str | None] = {}
        for i in range(4):
            cites.nth(i).click()
            title = page.locator(".kbchat-passage-title").inner_text().split("] ", 1)[1]
            links = page.locator(".kbchat-passage a")
            if links.count():
                link = links.first
                assert link.get_attribute("target") == "_blank"
                rel = (link.get_attribute("rel") or "").split()
                assert "noopener" in rel and "nofollow" in rel
                seen[title] = link.get_attribute("href")
                if title == "Returns":
                    screenshot(page, "docurl", "passage-with-url-en.png")
            else:
                seen[title] = None
            page.locator(".kbchat-passage-back").click()
        assert seen == LINKS
        assert page.evaluate(f"{SHADOW}.querySelectorAll('a[href^=javascript i]').length") == 0
    finally:
        context.close()
