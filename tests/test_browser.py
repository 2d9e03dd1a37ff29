"""A real headless Chromium (Debian's) against `kbchat serve`'s app: the widget on its demo page,
its safety with hostile text, and the Gradio UI. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import require_chromium, serve_docs
from tests.openai_stub import OpenAIStub

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ADMIN = "browser-admin-key"
ANSWERED = re.compile(r"\[1\]\.$")  # every stub answer ends with its citation
HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'

DOCS = {
    "monorail.md": "# Wuppertal Suspension Railway\n\nThe Wuppertal Suspension Railway is a "
    "suspended monorail in Wuppertal, Germany. It opened in 1901 and runs above the river Wupper.",
    "evil.md": f"# Tricky page\n\nThe secret ingredient of the tricky page is {HOSTILE} cinnamon.",
}


def reply(request: dict[str, Any]) -> str:
    text = "\n".join(str(m.get("content")) for m in request["messages"])
    if "Standalone question:" in text:  # the condense step: the follow-up as it was asked
        return text.split("Follow-up question:")[-1].split("Standalone question:")[0].strip()
    if "tricky" in text.lower() and "Question:" in text:
        return f"The tricky page says {HOSTILE} [1]."
    return "La Schwebebahn se inauguró en 1901 [1]."


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, e5: Any) -> Iterator[str]:
    require_chromium()
    from app.settings import load_settings

    base = tmp_path_factory.mktemp("browser")
    with OpenAIStub(reply=reply) as stub:
        settings = load_settings(
            data_dir=base / "data",
            openai_base_url=stub.base_url,
            llm={"model": "stub-model", "max_retries": 0},
            admin_api_key=ADMIN,
        )
        with serve_docs(settings, DOCS, e5) as url:
            yield url


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(locale="es-ES", viewport={"width": 1200, "height": 850})
    page = context.new_page()
    yield page
    context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def ask_widget(page: Any, question: str) -> Any:
    page.locator(".kbchat-input").fill(question)
    page.locator(".kbchat-input").press("Enter")
    answer = page.locator(".kbchat-msg-assistant").last
    answer.locator(".kbchat-source").first.wait_for(timeout=60_000)
    return answer


def test_widget_answers_across_languages_and_keeps_the_conversation(
    base_url: str, page: Any
) -> None:
    page.goto(f"{base_url}/widget/demo")
    page.locator(".kbchat-bubble").click()  # Playwright's CSS pierces the open shadow root
    panel = page.locator(".kbchat-panel")
    assert panel.get_attribute("lang") == "es"
    assert page.evaluate("document.activeElement.id") == "kbchat-widget-host"  # focus inside
    answer = ask_widget(page, "¿Cuándo se inauguró el monorraíl suspendido de Wuppertal?")
    assert "1901" in answer.locator(".kbchat-text").inner_text()
    assert "monorail.md" in answer.locator(".kbchat-sources").inner_text()  # English source
    assert answer.locator(".kbchat-feedback button").count() == 2
    answer.locator(".kbchat-feedback button").first.click()
    page.locator(".kbchat-thanks").first.wait_for()
    shot(page, "widget-answer.png")
    # the host page's hostile CSS did not reach inside: the send button is still displayed
    assert page.locator(".kbchat-send").is_visible()

    page.reload()
    page.locator(".kbchat-bubble").click()
    restored = page.locator(".kbchat-msg")
    restored.nth(1).wait_for(timeout=30_000)
    assert "1901" in restored.nth(1).inner_text()
    page.keyboard.press("Escape")
    assert not panel.is_visible()


def test_widget_shows_the_reason_of_a_refusal(base_url: str, page: Any) -> None:
    """A refused question (a problem-details 422) shows the localised apology and the server's
    `detail`, so the visitor knows what to change."""
    page.goto(f"{base_url}/widget/demo")
    page.locator(".kbchat-bubble").click()
    page.locator(".kbchat-input").fill("x" * 4001)
    page.locator(".kbchat-input").press("Enter")
    error = page.locator(".kbchat-msg-error").last
    error.wait_for(timeout=30_000)
    text = error.inner_text()
    assert text.startswith("Lo sentimos") and "longer than 4000 characters" in text, text


def test_widget_shows_hostile_html_as_text(base_url: str, page: Any) -> None:
    page.goto(f"{base_url}/widget/demo")
    page.locator(".kbchat-bubble").click()
    answer = ask_widget(page, "What is the secret ingredient of the tricky page?")
    text = answer.locator(".kbchat-text").inner_text()
    assert "<img src=x onerror=" in text and "<script>" in text
    assert page.evaluate("window.__xss") is None
    count = "document.getElementById('kbchat-widget-host').shadowRoot.querySelectorAll(sel).length"
    assert page.evaluate(f"(sel) => {count}", "img, script:not([src])") == 0
    shot(page, "widget-hostile.png")


def test_arabic_visitor_gets_right_to_left(browser: Any, base_url: str) -> None:
    context = browser.new_context(locale="ar-EG")
    page = context.new_page()
    page.goto(f"{base_url}/widget/demo")
    page.locator(".kbchat-bubble").click()
    assert page.locator(".kbchat-panel").get_attribute("dir") == "rtl"
    shot(page, "widget-arabic.png")
    context.close()


def test_gradio_ui_chat_with_sources(base_url: str, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base_url}/")
    page.locator("#kbchat-input textarea").fill("When did the Wuppertal monorail open?")
    page.locator("#kbchat-send").click()
    chatbot = page.locator("#kbchat-chatbot")
    chatbot.get_by_text(re.compile("1901")).first.wait_for(timeout=60_000)
    expect(page.locator("#kbchat-sources")).to_contain_text("monorail.md", timeout=30_000)
    assert page.evaluate("window.__xss") is None
    shot(page, "gradio-ui.png")

    # a hostile answer and a hostile passage are shown as text, nothing runs
    page.locator("#kbchat-input textarea").fill("What does the tricky page say?")
    page.locator("#kbchat-send").click()
    chatbot.get_by_text(re.compile("tricky page says")).first.wait_for(timeout=60_000)
    expect(page.locator("#kbchat-sources")).to_contain_text("evil.md", timeout=30_000)
    assert "<img src=x" in chatbot.inner_text()
    assert page.evaluate("window.__xss") is None
    assert page.locator("#kbchat-chatbot img[src='x']").count() == 0
    shot(page, "gradio-hostile.png")

    import httpx

    assert httpx.get(f"{base_url}/docs").status_code == 200  # the UI at / leaves the API alone
    assert httpx.get(f"{base_url}/api/health").json() == {"status": "ok"}


def test_gradio_ui_history_feedback_and_admin_upload(
    base_url: str, page: Any, tmp_path: Path
) -> None:
    """The history the chat shows is kept on the server: a like reaches the stored answer, a new
    conversation empties it, and a file chosen in the console is uploaded, saved and indexed."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/")
    chatbot = page.locator("#kbchat-chatbot")
    for turn in (1, 2):
        page.locator("#kbchat-input textarea").fill("When did the Wuppertal monorail open?")
        page.locator("#kbchat-send").click()
        expect(chatbot.get_by_text(ANSWERED)).to_have_count(turn, timeout=60_000)
    chatbot.locator("button[aria-label='Me gusta']").last.click()  # the page is in Spanish
    feedback = page.locator("#kbchat-feedback-status")
    expect(feedback).to_contain_text("feedback (helpful)", timeout=30_000)
    page.locator("#kbchat-new").click()
    expect(chatbot.get_by_text(ANSWERED)).to_have_count(0, timeout=30_000)
    page.locator("#kbchat-input textarea").fill("When did the Wuppertal monorail open?")
    page.locator("#kbchat-send").click()
    expect(chatbot.get_by_text(ANSWERED)).to_have_count(1, timeout=60_000)

    doc = tmp_path / "vesuvius.md"
    doc.write_text("# Vesuvius\n\nMount Vesuvius buried Pompeii in the year 79.", "utf-8")
    page.get_by_role("tab", name="Console").click()
    page.locator("#kbchat-console-key input").fill(ADMIN)
    page.locator("#kbchat-console-unlock").click()
    expect(page.locator("#kbchat-console")).to_be_visible(timeout=30_000)
    expect(page.locator("#kbchat-kb-pick input")).to_have_value("default", timeout=30_000)
    page.locator("#kbchat-kb-files input[type=file]").set_input_files(str(doc))
    # Gradio shows the name as two spans (stem, extension); their text may come with a space
    chosen = re.compile(r"vesuvius\s*\.md")
    expect(page.locator("#kbchat-kb-files")).to_contain_text(chosen, timeout=30_000)
    page.locator("#kbchat-kb-upload").click()
    status = page.locator("#kbchat-kb-status")
    expect(status).to_contain_text("Uploaded 1 file(s)", timeout=60_000)
    expect(page.locator("#kbchat-kb-files")).not_to_contain_text(chosen)  # consumed
    expect(page.locator("#kbchat-kb-docs")).to_contain_text("vesuvius.md")
    shot(page, "gradio-admin-upload.png")
