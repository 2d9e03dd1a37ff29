"""The widget as a visitor sees it, in Debian's headless Chromium against `kbchat serve`'s app (real
E5, real Chroma, the loopback LLM stub): sanitised markdown, clickable citations, the assistant's
configuration, the typing indicator and stop, phones, dark mode, Arabic, the keyboard.

The assistant configuration route (GET /api/widget/config) is fulfilled by Playwright where a test
needs a particular assistant, so these tests hold the widget to the contract, whatever serves it.
Screenshots go to $KBCHAT_TEST_ARTIFACTS/widget or test-artifacts/widget/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import require_chromium, screenshot, serve_docs
from tests.openai_stub import OpenAIStub

pytestmark = pytest.mark.integration
SHADOW = "document.getElementById('kbchat-widget-host').shadowRoot"

DOCS = {
    "monorail.md": "# Wuppertal Suspension Railway\n\nThe Wuppertal Suspension Railway is a "
    "suspended monorail in Wuppertal, Germany. It opened in 1901 and runs above the river Wupper.",
    "evil.md": "# Tricky page\n\nThe secret ingredient of the tricky page is "
    '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> cinnamon.',
}
MARKDOWN = (
    "The railway opened in **1901** [1].\n\n- It hangs from rails\n- It runs above the Wupper\n\n"
    "See [the museum](https://example.com/museum) and `schwebebahn` for more.\n\n"
    "| Year | Event |\n|---|---|\n| 1901 | Opening |"
)
HOSTILE = (
    '**Tricky** [1]: <script>window.__xss=3</script> <img src=x onerror="window.__xss=4"> '
    '[click me](javascript:window.__xss=5) <svg onload="window.__xss=6"></svg> '
    '<style>*{display:none}</style> <iframe src="javascript:window.__xss=7"></iframe> '
    "![tracker](https://example.com/pixel.png) "
    '<a href="https://example.com" onclick="window.__xss=8">raw</a>'
)
ARABIC = "افتتحت السكك الحديدية المعلقة في **1901** [1].\n\n- تسير فوق نهر فوبر\n- في مدينة فوبرتال"
STREAMED = "Streaming **bold words here** and `some code` too [1]."
PLAIN = "La Schwebebahn se inauguró en 1901 [1]."


def reply(request: dict[str, Any]) -> str:
    text = "\n".join(str(m.get("content")) for m in request["messages"])
    if "Standalone question:" in text:  # the condense step: the follow-up as it was asked
        return text.split("Follow-up question:")[-1].split("Standalone question:")[0].strip()
    question = text.split("Question:")[-1].lower()
    if "tricky" in question:
        return HOSTILE
    if "streaming" in question:
        return STREAMED
    if "markdown" in question:
        return MARKDOWN
    if "متى" in question:
        return ARABIC
    return PLAIN


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, e5: Any) -> Iterator[tuple[str, OpenAIStub]]:
    require_chromium()
    from app.settings import load_settings

    base = tmp_path_factory.mktemp("widget")
    with OpenAIStub(reply=reply) as stub:
        settings = load_settings(
            data_dir=base / "data",
            openai_base_url=stub.base_url,
            llm={"model": "stub-model", "max_retries": 0},
            # every passage is a source, so an answer citing one has others behind "more"
            retrieval={"min_score": 0.0, "min_margin": -1.0},
        )
        with serve_docs(settings, DOCS, e5) as url:
            yield url, stub


@pytest.fixture
def open_widget(browser: Any, server: tuple[str, OpenAIStub]) -> Iterator[Any]:
    """open_widget(locale=..., config=..., **context options) -> a page with the panel open."""
    contexts: list[Any] = []
    url = server[0]

    def make(locale: str = "es-ES", config: dict[str, Any] | None = None, **options: Any) -> Any:
        options.setdefault("viewport", {"width": 1200, "height": 850})
        context = browser.new_context(locale=locale, **options)
        contexts.append(context)
        page = context.new_page()
        if config is not None:
            page.route(
                f"{url}/api/widget/config",
                lambda route: route.fulfill(
                    status=200, content_type="application/json", body=json.dumps(config)
                ),
            )
        page.goto(f"{url}/widget/demo")
        page.locator(".kbchat-bubble").click()  # Playwright's CSS pierces the open shadow root
        page.locator(".kbchat-greeting").wait_for()
        return page

    yield make
    for context in contexts:
        context.close()


def shot(page: Any, name: str) -> None:
    screenshot(page, "widget", name)


def ask(page: Any, question: str) -> Any:
    from playwright.sync_api import expect

    page.locator(".kbchat-input").fill(question)
    page.locator(".kbchat-input").press("Enter")
    answer = page.locator(".kbchat-msg-assistant").last
    expect(answer.locator(".kbchat-actions")).to_be_visible(timeout=60_000)  # after `done`
    return answer


def in_shadow(page: Any, selector: str) -> int:
    return int(page.evaluate(f"(s) => {SHADOW}.querySelectorAll(s).length", selector))


def test_markdown_renders_bold_lists_links_code_and_tables(
    open_widget: Any, server: tuple[str, OpenAIStub]
) -> None:
    import httpx

    page = open_widget()
    # the vendored libraries come inside /widget.js and leave the host page's globals alone
    assert page.evaluate("typeof marked + typeof DOMPurify + typeof KBCHAT_VENDOR") == (
        "undefined" * 3
    )
    script = httpx.get(f"{server[0]}/widget.js")
    assert "DOMPurify" in script.text and "cdn" not in script.text.lower()
    again = httpx.get(f"{server[0]}/widget.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304
    answer = ask(page, "When did the Wuppertal monorail open? Answer in markdown.")
    text = answer.locator(".kbchat-text")
    assert text.locator("strong").first.inner_text() == "1901"
    assert text.locator("ul > li").count() == 2
    link = text.locator("a")
    assert link.get_attribute("href") == "https://example.com/museum"
    assert link.get_attribute("target") == "_blank"
    assert link.get_attribute("rel") == "noopener nofollow"
    assert text.locator("code").inner_text() == "schwebebahn"
    assert text.locator("table td").first.inner_text() == "1901"
    assert "**" not in text.inner_text() and "|---" not in text.inner_text()


def test_hostile_markdown_answer_stays_inert(open_widget: Any) -> None:
    page = open_widget()
    answer = ask(page, "What is the secret ingredient of the tricky page?")
    text = answer.locator(".kbchat-text")
    shown = text.inner_text()
    assert "<script>window.__xss=3</script>" in shown and '<img src=x onerror="' in shown
    assert text.locator("strong").first.inner_text() == "Tricky"
    live = "script, img, svg, iframe, style, [onerror], [onclick], [onload]"
    assert in_shadow(page, ", ".join(f".kbchat-text {tag}" for tag in live.split(", "))) == 0
    assert text.locator("a[href^='javascript']").count() == 0
    assert text.get_by_text("click me").count() == 1  # the text stays, the link is gone
    page.wait_for_timeout(300)  # give any handler that slipped through its chance to run
    assert page.evaluate("window.__xss") is None
    shot(page, "markdown-hostile-desktop-light-es.png")


def test_citation_opens_its_passage_and_only_cited_sources_are_listed(open_widget: Any) -> None:
    from playwright.sync_api import expect

    page = open_widget(locale="en-US")
    answer = ask(page, "What is the secret ingredient of the tricky page?")
    cite = answer.locator("button.kbchat-cite").first
    assert cite.get_attribute("aria-label") == "Source 1"
    cite.click()
    passage = page.locator(".kbchat-passage")
    expect(passage).to_be_visible()
    assert "evil.md" in passage.inner_text() and "Language: en" in passage.inner_text()
    quoted = passage.locator(".kbchat-passage-text").inner_text()
    assert '<img src=x onerror="window.__xss=1">' in quoted  # the document's HTML, as text
    assert in_shadow(page, ".kbchat-passage img, .kbchat-passage script") == 0
    assert page.evaluate(f"{SHADOW}.activeElement.className") == "kbchat-passage-back"
    shot(page, "passage-desktop-light-en.png")
    page.keyboard.press("Escape")  # closes the passage first, then the panel
    expect(passage).to_be_hidden()
    assert page.locator(".kbchat-panel").is_visible()
    assert page.evaluate(f"{SHADOW}.activeElement.className") == "kbchat-cite"

    cited = answer.locator(".kbchat-sources")
    assert "evil.md" in cited.inner_text() and "monorail.md" not in cited.inner_text()
    more = answer.locator(".kbchat-sources-more")
    expect(more).to_be_hidden()
    answer.locator(".kbchat-more").click()
    expect(more).to_contain_text("monorail.md")
    assert answer.locator(".kbchat-more").get_attribute("aria-expanded") == "true"
    more.locator(".kbchat-source").first.click()  # an uncited source opens its passage too
    expect(passage).to_contain_text("1901")
    assert page.evaluate("window.__xss") is None


def test_assistant_config_draws_the_widget_and_a_chip_asks(open_widget: Any) -> None:
    from playwright.sync_api import expect

    question = "¿Cuándo se inauguró el monorraíl de Wuppertal?"
    config = {
        "assistant": "railway",
        "name": "Schwebebahn Helper",
        "avatar": None,
        "color": "#0f766e",
        "position": "left",
        "theme": "light",
        "greeting": {"en": "Hello from the railway!", "es": "¡Hola desde el tren colgante!"},
        "suggestions": {"en": ["When did it open?"], "es": [question, "¿Dónde está?"]},
        "default_language": "en",
    }
    page = open_widget(config=config)
    assert page.locator(".kbchat-title").inner_text() == "Schwebebahn Helper"
    assert page.locator(".kbchat-greeting").inner_text() == "¡Hola desde el tren colgante!"
    chips = page.locator(".kbchat-chip")
    assert chips.all_inner_texts() == [question, "¿Dónde está?"]
    colour = page.locator(".kbchat-send").evaluate("b => getComputedStyle(b).backgroundColor")
    assert colour == "rgb(15, 118, 110)"
    box = page.locator(".kbchat-bubble").bounding_box()
    assert box is not None and box["x"] < 100  # position: left
    page.keyboard.press("Tab")  # from the input to the send button: the ring is the accent
    ring = page.locator(".kbchat-send").evaluate("b => getComputedStyle(b).outlineColor")
    assert ring == "rgb(15, 118, 110)"
    shot(page, "config-greeting-chips-desktop-light-es.png")

    chips.first.click()
    expect(page.locator(".kbchat-msg-user")).to_have_text(question)
    expect(page.locator(".kbchat-msg-assistant .kbchat-actions")).to_be_visible(timeout=60_000)
    assert "1901" in page.locator(".kbchat-msg-assistant").inner_text()
    assert chips.count() == 0  # suggestions go once the conversation starts


def test_hostile_or_missing_config_falls_back_to_safe_defaults(
    open_widget: Any, server: tuple[str, OpenAIStub]
) -> None:
    hostile = {
        "name": '<img src=x onerror="window.__xss=9">',
        "avatar": "javascript:window.__xss=10",
        "color": "red; background: url(https://evil.example/x)",
        "position": "top",
        "theme": "neon",
        "greeting": {"es": ["not", "a", "string"]},
        "suggestions": {"es": "not a list"},
        "default_language": "__proto__",
    }
    page = open_widget(config=hostile)
    assert page.locator(".kbchat-title").inner_text() == hostile["name"]  # as text
    assert page.locator(".kbchat-avatar").is_hidden()
    colour = page.locator(".kbchat-send").evaluate("b => getComputedStyle(b).backgroundColor")
    assert colour == "rgb(37, 99, 235)"  # the default blue
    assert page.locator(".kbchat-greeting").inner_text() == "¡Hola! ¿En qué puedo ayudarte?"
    assert page.locator(".kbchat-chip").count() == 0
    assert in_shadow(page, "img:not(.kbchat-avatar)") == 0
    assert page.evaluate("window.__xss") is None

    # no route fulfilled: the server's own answer (404 until assistants exist) gives the defaults
    page = open_widget()
    assert page.locator(".kbchat-title").inner_text() == "Pregúntanos"
    assert page.locator(".kbchat-greeting").inner_text() == "¡Hola! ¿En qué puedo ayudarte?"


def test_typing_indicator_then_stop_keeps_the_partial_answer(
    open_widget: Any, server: tuple[str, OpenAIStub]
) -> None:
    from playwright.sync_api import expect

    stub = server[1]
    page = open_widget()
    try:
        stub.release.clear()
        stub.hold_after = 0  # the stream opens, no token yet
        page.locator(".kbchat-input").fill("¿Cuándo se inauguró el monorraíl de Wuppertal?")
        page.locator(".kbchat-input").press("Enter")
        typing = page.locator(".kbchat-typing")
        expect(typing).to_be_visible(timeout=30_000)
        assert typing.get_attribute("role") == "status" and "Pensando" in typing.inner_text()
        expect(page.locator(".kbchat-stop")).to_be_visible()
        assert page.locator(".kbchat-send").is_hidden()
        shot(page, "typing-desktop-light-es.png")
        stub.release.set()
        expect(page.locator(".kbchat-msg-assistant .kbchat-actions")).to_be_visible(timeout=60_000)
        assert typing.count() == 0
        expect(page.locator(".kbchat-send")).to_be_visible()

        stub.release.clear()
        stub.hold_after = 3  # "La Schwebebahn se " and then nothing until released
        page.locator(".kbchat-input").fill("¿Y en qué río está el monorraíl de Wuppertal?")
        page.locator(".kbchat-input").press("Enter")
        answer = page.locator(".kbchat-msg-assistant").nth(1)
        expect(answer.locator(".kbchat-text")).to_contain_text("Schwebebahn se", timeout=60_000)
        page.locator(".kbchat-stop").click()
        expect(answer.locator(".kbchat-stopped")).to_have_text("Detenido")
        assert answer.locator(".kbchat-text").inner_text().strip() == "La Schwebebahn se"
        assert page.locator(".kbchat-typing").count() == 0
        expect(page.locator(".kbchat-send")).to_be_enabled()
        assert answer.locator(".kbchat-copy").count() == 1
    finally:
        stub.hold_after = None
        stub.release.set()


def test_streaming_markdown_never_shows_a_raw_marker(
    open_widget: Any, server: tuple[str, OpenAIStub]
) -> None:
    """Half an answer is rendered as markdown too: a bold that has not closed yet is bold."""
    from playwright.sync_api import expect

    stub = server[1]
    page = open_widget(locale="en-US")
    try:
        stub.release.clear()
        stub.hold_after = 3  # "Streaming **bold words " so far
        page.locator(".kbchat-input").fill("How does streaming of the Wuppertal monorail work?")
        page.locator(".kbchat-input").press("Enter")
        text = page.locator(".kbchat-msg-assistant .kbchat-text")
        expect(text.locator("strong")).to_have_text("bold words", timeout=60_000)
        assert "*" not in text.inner_text()
        stub.release.set()
        expect(text.locator("strong")).to_have_text("bold words here", timeout=60_000)
        expect(text.locator("code")).to_have_text("some code")
        assert "*" not in text.inner_text() and "`" not in text.inner_text()
    finally:
        stub.hold_after = None
        stub.release.set()


def test_phone_is_full_screen_and_dark_mode_follows_the_system(open_widget: Any) -> None:
    page = open_widget(
        locale="en-US",
        viewport={"width": 390, "height": 844},
        color_scheme="dark",
        is_mobile=True,
        has_touch=True,
    )
    box = page.locator(".kbchat-panel").bounding_box()
    assert box == {"x": 0, "y": 0, "width": 390, "height": 844}, box
    assert page.locator(".kbchat-bubble").is_hidden()  # behind the panel; the header closes it
    background = page.locator(".kbchat-panel").evaluate("p => getComputedStyle(p).backgroundColor")
    assert background == "rgb(28, 33, 40)"
    ask(page, "When did the Wuppertal monorail open? Answer in markdown.")
    shot(page, "mobile-dark-en.png")
    page.locator(".kbchat-close").click()
    assert page.locator(".kbchat-bubble").is_visible()


def test_config_theme_dark_wins_over_a_light_system(open_widget: Any) -> None:
    config = {
        "name": "Nightly",
        "color": "#7c3aed",
        "theme": "dark",
        "greeting": {},
        "suggestions": {"en": ["When did the Wuppertal monorail open?"]},
    }
    page = open_widget(locale="en-US", config=config, color_scheme="light")
    background = page.locator(".kbchat-panel").evaluate("p => getComputedStyle(p).backgroundColor")
    assert background == "rgb(28, 33, 40)"
    ask(page, "When did the Wuppertal monorail open? Answer in markdown.")
    shot(page, "desktop-dark-en.png")


@pytest.mark.parametrize(
    ("viewport", "scheme"),
    [("desktop", "light"), ("mobile", "dark"), ("desktop", "dark"), ("mobile", "light")],
)
def test_arabic_right_to_left_with_markdown(open_widget: Any, viewport: str, scheme: str) -> None:
    size = {"desktop": (1200, 850), "mobile": (390, 844)}[viewport]
    page = open_widget(
        locale="ar-EG", viewport={"width": size[0], "height": size[1]}, color_scheme=scheme
    )
    assert page.locator(".kbchat-panel").get_attribute("dir") == "rtl"
    assert page.locator(".kbchat-greeting").inner_text() == "مرحبًا! كيف يمكنني مساعدتك؟"
    answer = ask(page, "متى افتتحت السكك الحديدية المعلقة في فوبرتال؟")
    text = answer.locator(".kbchat-text")
    assert "**" not in text.inner_text()
    assert text.locator("strong").first.inner_text() == "1901"
    item = text.locator("li").first
    assert item.evaluate("li => getComputedStyle(li).direction") == "rtl"
    paragraph = text.locator("p").first
    assert paragraph.evaluate("p => getComputedStyle(p).direction") == "rtl"
    assert answer.locator(".kbchat-copy").get_attribute("aria-label") == "نسخ الإجابة"
    shot(page, f"{viewport}-{scheme}-ar.png")


def test_keyboard_focus_stays_in_the_panel_and_every_button_is_labelled(
    open_widget: Any,
) -> None:
    from playwright.sync_api import expect

    page = open_widget(locale="en-US")
    ask(page, "When did the Wuppertal monorail open?")
    names = page.locator(".kbchat-panel button").evaluate_all(
        "bs => bs.map(b => (b.getAttribute('aria-label') || b.textContent).trim())"
    )
    assert all(names), names
    assert page.locator(".kbchat-messages").get_attribute("aria-live") == "polite"
    active = f"{SHADOW}.activeElement && {SHADOW}.activeElement.className"
    seen = set()
    for _ in range(25):  # Tab around: the focus never leaves the panel
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "kbchat-widget-host"
        seen.add(page.evaluate(active))
    assert {"kbchat-close", "kbchat-input", "kbchat-send"} <= seen, seen
    assert "kbchat-bubble" not in seen

    page.locator(".kbchat-new").click()  # a new conversation: empty but for the greeting
    expect(page.locator(".kbchat-msg")).to_have_count(0)
    assert page.locator(".kbchat-greeting").is_visible()
    page.keyboard.press("Escape")
    expect(page.locator(".kbchat-panel")).to_be_hidden()
    assert page.evaluate(active) == "kbchat-bubble"


def test_copy_puts_the_markdown_answer_on_the_clipboard(open_widget: Any) -> None:
    page = open_widget(locale="en-US", permissions=["clipboard-read", "clipboard-write"])
    answer = ask(page, "When did the Wuppertal monorail open?")
    answer.locator(".kbchat-copy").click()
    page.locator(".kbchat-copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == PLAIN
    assert re.search(r"\b1901\b", answer.inner_text())


AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_or_critical_violation(open_widget: Any, scheme: str) -> None:
    """axe-core (vendored) audits the open widget with an answer, its sources and actions, and a
    passage; the hostile demo page around it is not ours to judge."""
    config = {"name": "Railway", "suggestions": {"en": ["When did the monorail open?"]}}
    page = open_widget(locale="en-US", config=config, color_scheme=scheme)
    page.add_script_tag(path=str(AXE))
    audit = """async () => {
        const r = await axe.run({ include: [["#kbchat-widget-host"]] },
                                { resultTypes: ["violations"] });
        return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
            .map(v => v.id + ": " + v.nodes.map(n => n.target.join(" > ")).join(", "));
    }"""
    assert page.evaluate(audit) == []  # greeting and chips
    ask(page, "When did the Wuppertal monorail open? Answer in markdown.")
    page.locator(".kbchat-more").last.click()
    assert page.evaluate(audit) == []  # markdown, citations, sources, actions
    page.locator("button.kbchat-cite").first.click()
    assert page.evaluate(audit) == []  # the passage


def test_a_passage_links_its_document_only_over_http(open_widget: Any) -> None:
    """Sources carry no URL today; when one does (the contract allows it), the passage links to it
    in a new tab if it is http(s), and drops it otherwise. The chat answer is fulfilled here."""
    from playwright.sync_api import expect

    page = open_widget(locale="en-US")
    sources = [
        {
            "number": 1,
            "source": "a/guide.md",
            "title": "Guide",
            "language": "de",
            "text": "Text A",
            "url": "https://docs.example.com/guide",
        },
        {
            "number": 2,
            "source": "b.md",
            "title": "B",
            "language": "en",
            "text": "Text B",
            "url": "javascript:window.__xss=11",
        },
    ]
    events = [
        ("token", {"text": "See [1] and [2]."}),
        ("sources", {"sources": sources, "cited": [2, 1]}),
        ("done", {"session_id": "s-1", "message_id": 1, "language": "en"}),
    ]
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    page.route(
        re.compile(r".*/api/chat$"),
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body),
    )
    page.locator(".kbchat-input").fill("Which guide?")
    page.locator(".kbchat-input").press("Enter")
    cited = page.locator(".kbchat-sources .kbchat-source")
    expect(cited).to_have_count(2)
    assert cited.all_inner_texts() == ["[2] b.md", "[1] guide.md"]  # in the order cited
    page.locator("button.kbchat-cite").first.click()
    link = page.locator(".kbchat-passage a")
    assert link.get_attribute("href") == "https://docs.example.com/guide"
    assert (
        link.get_attribute("rel") == "noopener nofollow"
        and link.get_attribute("target") == "_blank"
    )
    assert "Language: de" in page.locator(".kbchat-passage-meta").inner_text()
    page.locator(".kbchat-passage-back").click()
    page.locator("button.kbchat-cite").nth(1).click()
    expect(page.locator(".kbchat-passage-text")).to_have_text("Text B")
    assert page.locator(".kbchat-passage a").count() == 0
