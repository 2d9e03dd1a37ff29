"""The Gradio chat at / in Debian's headless Chromium: pick an assistant, see its greeting and
chips, ask with a chip, read the answer's source cards (markdown rendered, hostile HTML inert,
right-to-left passages), like the answer (stored), in light and dark mode. Screenshots go to
test-artifacts/gradio."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import require_chromium, screenshot, serve_docs
from tests.fakes import FakeEmbedder
from tests.openai_stub import OpenAIStub, condensing

pytestmark = pytest.mark.integration
ADMIN = "gradio-browser-admin"
HOSTILE = (
    '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> '
    '<iframe src="https://evil.test"></iframe> [bad](javascript:window.__xss=3) '
    '<p style="position:fixed;inset:0">cover</p> &#60;script&#62;window.__xss=4&#60;/script&#62;'
)
DOCS = {
    "returns.md": "# Returns\n\nShoes can be returned within **30 days** of delivery:\n\n"
    f"- unworn\n- in the box\n\nSee [the policy](https://shop.test/returns). {HOSTILE}",
    "ضمان.md": "# الضمان\n\nالضمان على الأحذية **سنتان** من تاريخ الشراء.",
}
ASSISTANT = {
    "id": "shop",
    "name": "Pip",
    "greeting": {"en": "Hi, I am Pip. Ask me about returns.", "es": "Hola, soy Pip."},
    "suggestions": {"en": ["Can I return shoes?", "How long is the warranty?"]},
    "instructions": "You are Pip, the shoe shop's helper.",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, conversations database) of an app with the assistant `shop`."""
    require_chromium()
    from app.settings import load_settings

    base = tmp_path_factory.mktemp("gradio-browser")
    database = base / "conv.sqlite3"
    with OpenAIStub(reply=condensing("Shoes go back within **30 days** [1].")) as stub:
        settings = load_settings(
            data_dir=base / "data",
            database_url=f"sqlite:///{database}",
            openai_base_url=stub.base_url,
            llm={"model": "stub-model", "max_retries": 0},
            admin_api_key=ADMIN,
            retrieval={"small_talk": False, "query_correction": "off", "min_score": 0.0},
        )
        with serve_docs(settings, DOCS, FakeEmbedder()) as url:
            made = httpx.post(
                f"{url}/api/assistants",
                json=ASSISTANT,
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
            assert made.status_code == 201, made.text
            yield url, database


def feedback_rows(database: Path) -> list[tuple[Any, ...]]:
    import sqlite3

    with sqlite3.connect(database) as db:
        return list(db.execute("SELECT rating FROM feedback"))


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_pick_an_assistant_ask_with_a_chip_read_the_cards_and_like(
    browser: Any, server: tuple[str, Path], theme: str
) -> None:
    from playwright.sync_api import expect

    url, database = server
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{url}/?__theme={theme}")
    page.locator("#kbchat-assistant input").click()
    page.get_by_role("option", name="Pip (shop)").click()
    chatbot = page.locator("#kbchat-chatbot")
    expect(chatbot).to_contain_text("Hi, I am Pip. Ask me about returns.", timeout=30_000)
    expect(page.locator("#kbchat-assistant-header")).to_contain_text("Pip")
    chips = page.locator("#kbchat-chips button:visible")
    expect(chips).to_have_count(2)
    expect(page.locator("#kbchat-collection input")).to_be_disabled()

    chips.first.click()
    expect(chatbot).to_contain_text("Can I return shoes?", timeout=30_000)
    expect(chatbot).to_contain_text(re.compile(r"within 30 days \[1\]"), timeout=60_000)
    cards = page.locator("#kbchat-sources .kbchat-card")
    expect(cards.first).to_be_visible(timeout=30_000)
    first = cards.first
    assert first.locator("strong", has_text="30 days").count() == 1  # markdown rendered
    assert first.locator("li").count() == 2
    link = first.locator(".kbchat-card-passage a", has_text="the policy")
    assert link.get_attribute("href") == "https://shop.test/returns"
    assert link.get_attribute("rel") == "noopener nofollow"
    assert link.get_attribute("target") == "_blank"
    sources = page.locator("#kbchat-sources .kbchat-cards")  # what the server built
    for inert in ("img", "script", "iframe", "[style]", "a[href^='javascript']", "[onerror]"):
        assert sources.locator(inert).count() == 0, inert
    assert "<script>" in first.inner_text()  # shown as text
    arabic = sources.locator(".kbchat-card", has_text="سنتان")
    expect(arabic).to_have_count(1)
    assert arabic.locator(".kbchat-card-passage").get_attribute("dir") == "auto"
    assert page.evaluate("window.__xss") is None

    chatbot.locator("button[aria-label='Like']").last.click()
    expect(page.locator("#kbchat-feedback-status")).to_contain_text(
        "feedback (helpful)", timeout=30_000
    )
    assert ("up",) in feedback_rows(database)
    assert page.evaluate("window.__xss") is None
    screenshot(page, "gradio", f"assistant-chip-cards-{theme}.png")
    context.close()
