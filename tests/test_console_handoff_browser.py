"""The human handoff end to end through the console, in Debian's headless Chromium against the
REAL server (real E5 for the phrase detection, real Chroma, the loopback OpenAI stub): the
operator has the console's Handoff page open; a visitor asks for a person in Spanish in the
widget (the full page /a/{id}); the queue shows it without a click (the page's timer) with a
notice; the operator picks it, reads the transcript (hostile text shown as text), replies; the
widget shows the reply; the visitor's next message reaches the console's transcript, not the
LLM; the operator hands back (with a confirmation) and the assistant answers again.
Screenshots of the console (light and dark) and of the widget go to test-artifacts/console."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import open_console, screenshot
from tests.openai_stub import OpenAIStub
from tests.test_assistants import ADMIN
from tests.test_handoff_e2e_browser import serve_handoff
from tests.test_handoff_widget_browser import ask, tick_until

pytestmark = pytest.mark.integration
QUESTION = "¿Puedo hablar con una persona real? <b>urgente</b>"
REPLY = "Hola, soy Ana. ¿Qué talla necesitas? <img src=x onerror=window.__xss=1>"


@pytest.fixture
def served(tmp_path: Path, e5: Any) -> Iterator[tuple[str, OpenAIStub]]:
    with serve_handoff(tmp_path, e5, with_ui=True) as got:  # the console is in the Gradio UI
        yield got


def open_handoff_page(browser: Any, url: str, theme: str) -> Any:
    """A page of the app with the console unlocked and its Handoff tab shown."""
    from playwright.sync_api import expect

    page = open_console(browser, url, ADMIN, theme=theme, locale="en-US", width=1280, height=1300)
    expect(page.locator("#kbchat-console-status")).to_contain_text("Console unlocked.")
    page.get_by_role("tab", name="Handoff").click()
    expect(page.locator("#kbchat-ho-queue")).to_be_visible()
    return page


def pick(console: Any, text: str) -> None:
    console.locator("#kbchat-ho-picker input").click()
    console.get_by_role("option").filter(has_text=text).first.click()


def test_visitor_asks_operator_replies_in_the_console_and_hands_back(
    browser: Any, served: tuple[str, OpenAIStub]
) -> None:
    from playwright.sync_api import expect

    url, stub = served
    console = open_handoff_page(browser, url, "light")
    visitor_context = browser.new_context(locale="es-ES")
    try:
        widget = visitor_context.new_page()
        widget.clock.install()
        widget.goto(f"{url}/a/shoe-shop")
        ask(widget, QUESTION)
        expect(widget.locator(".kbchat-msg-assistant")).to_have_text(
            "Una persona te responderá aquí en breve."
        )
        assert stub.requests == []

        queue = console.locator("#kbchat-ho-queue")
        expect(queue).to_contain_text("waiting", timeout=20_000)  # the timer, no click
        expect(queue).to_contain_text(QUESTION)  # as text
        toast = console.locator(".toast-body").filter(has_text="New handoff:").first
        expect(toast).to_be_visible(timeout=10_000)
        expect(toast).to_contain_text("<b>urgente</b>")  # the visitor's markup, as text
        assert toast.locator("b").count() == 0
        pick(console, "¿Puedo hablar")
        transcript = console.locator("#kbchat-ho-transcript")
        expect(transcript).to_contain_text(QUESTION)
        expect(transcript).to_contain_text("Una persona te responderá aquí en breve.")
        assert transcript.locator("b:text('urgente')").count() == 0  # markup shown as text

        console.locator("#kbchat-ho-reply textarea").fill(REPLY)
        console.locator("#kbchat-ho-send").click()
        expect(console.locator("#kbchat-ho-status")).to_contain_text("Sent.")
        expect(transcript).to_contain_text(REPLY)
        expect(queue).to_contain_text("active")

        operator = widget.locator(".kbchat-msg-operator")
        tick_until(widget, lambda: operator.count() == 1, "the operator's reply in the widget")
        expect(operator).to_contain_text("Hola, soy Ana. ¿Qué talla necesitas?")
        assert operator.locator("img, script").count() == 0
        screenshot(widget, "console", "handoff-widget-operator-reply.png")

        ask(widget, "La talla 38, por favor")
        expect(transcript).to_contain_text("La talla 38, por favor", timeout=20_000)  # live
        assert stub.requests == []  # a person has it: no LLM
        screenshot(console, "console", "handoff-light.png")
        dark = open_handoff_page(browser, url, "dark")
        pick(dark, "¿Puedo hablar")
        expect(dark.locator("#kbchat-ho-transcript")).to_contain_text(REPLY)
        screenshot(dark, "console", "handoff-dark.png")
        dark.context.close()

        console.locator("#kbchat-ho-back").click()
        expect(console.locator("#kbchat-ho-confirm")).to_be_visible()
        console.locator("#kbchat-ho-yes").click()
        expect(console.locator("#kbchat-ho-status")).to_contain_text("Handed back")
        expect(queue).not_to_contain_text("active")

        ask(widget, "¿Cuánto tiempo tengo para devolver?")
        expect(widget.locator(".kbchat-msg-assistant").last).to_contain_text("Within 30 days")
        assert stub.requests  # the assistant answers again
        assert console.evaluate("() => window.__xss") is None
        assert widget.evaluate("() => window.__xss") is None
    finally:
        visitor_context.close()
        console.context.close()
