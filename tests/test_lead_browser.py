"""The widget's lead form in Debian's headless Chromium against a live app (toy embedder, real
Chroma, the loopback LLM stub): shown before the chat for a `before` assistant, refusing a bad
email and a missing consent with an announced error, storing the lead, then the chat works; the
operator's webhook receiver on loopback gets a body whose signature verifies. An `after`
assistant asks after N answers; a visitor who skips it is refused by the server, shown the form
again, and their question is asked again once it is sent. The consent text is the operator's,
shown as text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser import require_chromium, serve_docs
from tests.openai_stub import OpenAIStub
from tests.test_leads import Receiver, verify
from tests.test_widget_browser import AXE, shot

pytestmark = pytest.mark.integration
ADMIN = "admin-secret-123"
DOCS = {"monorail.md": "# Monorail\n\nThe Wuppertal monorail opened in 1901."}
AUTH = {"Authorization": f"Bearer {ADMIN}"}
CONSENT = (
    '<b>I agree</b> that the railway museum may email me. <img src=x onerror="window.__xss=1">'
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_chromium()
    from app.settings import load_settings
    from tests.fakes import FakeEmbedder

    base = tmp_path_factory.mktemp("lead-widget")
    with OpenAIStub(reply=lambda _: "It opened in **1901** [1].") as stub:
        settings = load_settings(
            data_dir=base / "data",
            database_url=f"sqlite:///{base / 'conv.sqlite3'}",
            admin_api_key=ADMIN,
            webhook_allow_private=True,  # this test's receiver is on loopback
            openai_base_url=stub.base_url,
            llm={"model": "stub-model", "max_retries": 0},
            retrieval={"small_talk": False, "query_correction": "off", "min_score": 0.0},
            ingest={"resync_on_start": False},
        )
        with serve_docs(settings, DOCS, FakeEmbedder(), with_ui=False) as url:
            yield url


def assistant(url: str, slug: str, leads: dict[str, Any]) -> str:
    """An assistant with these lead settings; its widget key (same-origin pages only)."""
    body = {"id": slug, "name": "Railway", "leads": leads}
    r = httpx.post(f"{url}/api/assistants", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    r = httpx.post(f"{url}/api/assistants/{slug}/keys", json={"origins": []}, headers=AUTH)
    return str(r.json()["key"])


def page_with(browser: Any, url: str, key: str, locale: str = "en-US", **options: Any) -> Any:
    """A page of the server's own origin that embeds the widget with `key`, panel open."""
    options.setdefault("viewport", {"width": 1000, "height": 800})
    context = browser.new_context(locale=locale, **options)
    page = context.new_page()
    html = (
        '<!doctype html><html lang="en"><meta charset="utf-8"><title>Shop</title><body>'
        f'<script src="{url}/widget.js" data-key="{key}"></script></body></html>'
    )
    page.route(
        f"{url}/shop",
        lambda route: route.fulfill(status=200, content_type="text/html", body=html),
    )
    page.goto(f"{url}/shop")
    page.locator(".kbchat-bubble").click()
    return page


def test_the_lead_form_comes_first_then_the_chat_works(browser: Any, server: str) -> None:
    from playwright.sync_api import expect

    receiver = Receiver([])
    try:
        leads = {"mode": "before", "consent": {"en": CONSENT}, "webhook_url": receiver.url}
        key = assistant(server, "museum", leads)
        secret = httpx.post(f"{server}/api/assistants/museum/webhook-secret", headers=AUTH).json()
        page = page_with(browser, server, key)
        form = page.locator("form.kbchat-lead")
        expect(form).to_be_visible()
        expect(page.locator(".kbchat-input")).to_be_disabled()
        consent = page.get_by_label(CONSENT)  # the operator's text labels the checkbox, as text
        expect(consent).to_be_visible()
        assert page.evaluate("() => window.__xss") is None
        assert page.locator(".kbchat-lead-consent b, .kbchat-lead-consent img").count() == 0
        expect(page.get_by_label("Name", exact=True)).to_be_focused()
        shot(page, "lead-form-en.png")

        page.get_by_label("Name", exact=True).fill("Ada Lovelace")
        page.get_by_label("Email", exact=True).fill("ada-at-example")
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("alert")).to_have_text("Please enter a valid email address.")
        expect(page.get_by_label("Email", exact=True)).to_have_attribute("aria-invalid", "true")
        page.get_by_label("Email", exact=True).fill("ada@example.com")
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("alert")).to_have_text("Please tick the box to continue.")
        assert httpx.get(f"{server}/api/assistants/museum/leads", headers=AUTH).json() == []

        consent.check()
        page.get_by_role("button", name="Continue").click()
        expect(form).to_have_count(0)
        expect(page.locator(".kbchat-input")).to_be_enabled()
        [lead] = httpx.get(f"{server}/api/assistants/museum/leads", headers=AUTH).json()
        assert lead["name"] == "Ada Lovelace" and lead["consent_text"] == CONSENT

        page.locator(".kbchat-input").fill("When did the monorail open?")
        page.locator(".kbchat-input").press("Enter")
        answer = page.locator(".kbchat-msg-assistant").last
        expect(answer.locator("strong")).to_have_text("1901", timeout=30_000)
        stored = page.evaluate("() => localStorage.getItem(Object.keys(localStorage)[0])")
        assert stored

        receiver.wait_for(1)
        [(headers, body)] = receiver.received
        assert verify(secret["secret"], headers["X-Kbchat-Signature"], body)
        assert json.loads(body)["session_id"] == lead["session_id"]

        page.add_script_tag(path=str(AXE))  # the form itself, once more: no serious violations
        page.locator(".kbchat-new").click()
        expect(form).to_be_visible()  # a new conversation asks again
        violations = page.evaluate("""async () => {
            const r = await axe.run({ include: [["#kbchat-widget-host"]] },
                                    { resultTypes: ["violations"] });
            return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
                .map(v => v.id); }""")
        assert violations == []
        page.context.close()
    finally:
        receiver.close()


def test_an_after_assistant_asks_after_its_answers(browser: Any, server: str) -> None:
    from playwright.sync_api import expect

    leads = {"mode": "after", "after_messages": 1, "consent": {"en": "OK to email me."}}
    page = page_with(browser, server, assistant(server, "after-shop", leads))
    chats: list[int] = []
    page.on("response", lambda r: chats.append(r.status) if r.url.endswith("/api/chat") else None)
    form = page.locator("form.kbchat-lead")
    expect(page.locator(".kbchat-greeting")).to_be_visible()
    assert form.count() == 0
    page.locator(".kbchat-input").fill("When did the monorail open?")
    page.locator(".kbchat-input").press("Enter")
    expect(form).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Not now").click()
    expect(form).to_have_count(0)
    expect(page.locator(".kbchat-input")).to_be_enabled()

    # skipping it does not get answer 2: the server refuses, the form comes back, and once the
    # lead is sent the refused question is asked again (shown once, no error left behind)
    page.locator(".kbchat-input").fill("And who built it?")
    page.locator(".kbchat-input").press("Enter")
    expect(form).to_be_visible(timeout=30_000)
    assert chats == [200, 403]
    expect(page.locator(".kbchat-msg-error")).to_have_count(0)
    shot(page, "lead-form-after-refused-en.png")
    page.get_by_label("Name", exact=True).fill("Grace Hopper")
    page.get_by_label("Email", exact=True).fill("grace@example.com")
    page.get_by_label("OK to email me.").check()
    page.get_by_role("button", name="Continue").click()
    expect(form).to_have_count(0)
    answers = page.locator(".kbchat-msg-assistant strong")
    expect(answers).to_have_count(2, timeout=30_000)
    assert chats == [200, 403, 200]
    expect(page.locator(".kbchat-msg-user")).to_have_text(
        ["When did the monorail open?", "And who built it?"]
    )
    [lead] = httpx.get(f"{server}/api/assistants/after-shop/leads", headers=AUTH).json()
    conversation = httpx.get(f"{server}/api/sessions/{lead['session_id']}").json()
    assert conversation["assistant"] == "after-shop"
    assert [m["content"] for m in conversation["messages"] if m["role"] == "user"] == [
        "When did the monorail open?",
        "And who built it?",
    ]
    page.context.close()


def test_the_form_in_arabic_on_a_phone_in_dark_mode(browser: Any, server: str) -> None:
    from playwright.sync_api import expect

    consent = {"en": "OK to email me.", "ar": "أوافق على التواصل معي عبر البريد الإلكتروني."}
    key = assistant(server, "arabic-shop", {"mode": "before", "consent": consent})
    phone = {"width": 390, "height": 844}
    page = page_with(browser, server, key, "ar-EG", viewport=phone, color_scheme="dark")
    expect(page.locator("form.kbchat-lead")).to_be_visible()
    expect(page.get_by_label("الاسم", exact=True)).to_be_focused()
    expect(page.get_by_label(consent["ar"])).to_be_visible()
    assert page.locator(".kbchat-panel").get_attribute("dir") == "rtl"
    shot(page, "lead-form-ar-mobile-dark.png")
    page.context.close()
