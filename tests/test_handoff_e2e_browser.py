"""The human handoff end to end in Debian's headless Chromium against the REAL server (not the
contract stub): on the full page /a/{id}, the visitor asks for a person in Spanish (the real E5
model's phrase detection), the notice is shown once, the operator answers through the admin
API, and the widget's poll brings the reply (sanitised) into the page; the LLM is never asked."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.server.handoff_phrase import HandoffPhrases
from tests.browser import require_chromium
from tests.live_server import live_server
from tests.openai_stub import OpenAIStub, condensing
from tests.test_assistants import AUTH, shop
from tests.test_handoff import build_app
from tests.test_handoff_widget_browser import HOSTILE, ask, tick_until

pytestmark = pytest.mark.integration
PROMPTS = Path(__file__).resolve().parent.parent / "prompts"


@contextlib.contextmanager
def serve_handoff(tmp_path: Path, e5: Any, *, with_ui: bool = False) -> Iterator[Any]:
    """The handoff app (tests.test_handoff.build_app) with the real model's phrase detector and
    a full-page assistant with handoff on, live on loopback: yields (url, stub)."""
    require_chromium()
    with OpenAIStub(reply=condensing("Within 30 days [1].")) as stub:
        app = build_app(tmp_path, stub, with_ui=with_ui)
        phrases = HandoffPhrases.for_model(e5, PROMPTS)
        assert phrases is not None
        phrases.asks_for_person("hola")  # the model and the exemplars' vectors, loaded now
        app.state.handoff_phrases = phrases.asks_for_person  # the real model's detector
        with live_server(app) as url:
            body = shop(fullpage=True, default_language="es", handoff={"enabled": True})
            r = httpx.post(f"{url}/api/assistants", json=body, headers=AUTH)
            assert r.status_code == 201, r.text
            yield url, stub


@pytest.fixture
def served(tmp_path: Path, e5: Any) -> Iterator[tuple[str, OpenAIStub]]:
    with serve_handoff(tmp_path, e5) as got:
        yield got


def test_spanish_request_operator_reply_in_the_page(
    browser: Any, served: tuple[str, OpenAIStub]
) -> None:
    from playwright.sync_api import expect

    url, stub = served
    context = browser.new_context(locale="es-ES")
    try:
        page = context.new_page()
        page.clock.install()
        page.goto(f"{url}/a/shoe-shop")
        ask(page, "¿Puedo hablar con una persona real?")
        expect(page.locator(".kbchat-msg-assistant")).to_have_text(
            "Una persona te responderá aquí en breve."
        )
        assert stub.requests == []  # the chain was never asked
        notice = page.locator(".kbchat-msg-assistant")
        expect(notice.locator(".kbchat-actions")).to_have_count(0)  # not an answer to rate

        [queued] = httpx.get(f"{url}/api/handoffs", headers=AUTH).json()
        assert queued["reason"] == "phrase"
        session = queued["session_id"]
        r = httpx.post(
            f"{url}/api/conversations/{session}/reply", json={"text": HOSTILE}, headers=AUTH
        )
        assert r.status_code == 200, r.text

        operator = page.locator(".kbchat-msg-operator")
        tick_until(page, lambda: operator.count() == 1, "the operator's reply in the page")
        expect(operator.locator("strong")).to_have_text("that")
        assert operator.locator("script, img, [onclick], a[href^='javascript']").count() == 0
        assert page.evaluate("() => window.__xss") is None
        expect(page.locator(".kbchat-msg-assistant")).to_have_count(1)  # the notice, once
    finally:
        context.close()
