"""The console's Assistants page in Debian's headless Chromium: unlock, create an assistant,
change its colour and greeting, see the preview (the widget in a same-origin iframe) change,
create a widget key and see it once. Screenshots (light and dark) go to
test-artifacts/console. The console shell is a stand-in here: a gr.Blocks with a key box, the
gate's contract (the SHA-256 of the key in server-side state) and the page in a tab."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser import require_chromium, screenshot
from tests.fakes import FakeEmbedder
from tests.live_server import live_server

pytestmark = pytest.mark.integration
ADMIN = "console-browser-admin"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
GREETING = "Hello from Pip! <b>not bold</b>"


class StandInGate:
    def __init__(self, key: str) -> None:
        self.key, self.state = key, None

    def unlocked(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()

    def check(self, state: Any) -> None:
        import gradio as gr

        if not isinstance(state, str) or not hmac.compare_digest(state, self.unlocked()):
            raise gr.Error("Unlock the console first.")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_chromium()
    import gradio as gr

    from app.server.app import create_app
    from app.server.ui_console_assistants import AssistantsConsole, assistants_page
    from app.settings import load_settings

    base = tmp_path_factory.mktemp("console-browser")
    settings = load_settings(
        data_dir=base / "data",
        database_url=f"sqlite:///{base / 'conv.sqlite3'}",
        admin_api_key=ADMIN,
        llm={"model": "stub-model", "allowed_models": ["stub-large"]},
        ingest={"resync_on_start": False},
    )
    app = create_app(settings, embedder=FakeEmbedder(), llm=None, with_ui=False)
    gate = StandInGate(ADMIN)

    def unlock(key: str | None) -> Any:
        return gate.unlocked() if key and hmac.compare_digest(key, ADMIN) else None

    with gr.Blocks(title="kbchat console") as blocks:
        gate.state = gr.State(None)
        key = gr.Textbox(label="Admin key", type="password", elem_id="test-key")
        unlock_btn = gr.Button("Unlock", elem_id="test-unlock")
        unlock_btn.click(unlock, key, gate.state, api_visibility="private")
        with gr.Tabs(), gr.Tab("Assistants"):
            handlers = AssistantsConsole.of(app.state.assistants, app.state.services)
            assistants_page(handlers, gate)
    app = gr.mount_gradio_app(app, blocks, path="/", allowed_paths=[])
    with live_server(app) as url:
        yield url


def unlock(page: Any, url: str, theme: str) -> None:
    page.goto(f"{url}/?__theme={theme}")
    page.locator("#test-key input").fill(ADMIN)
    page.locator("#test-unlock").click()


def box(page: Any, elem_id: str) -> Any:
    """A Gradio Textbox's field (an input or a textarea, depending on its lines)."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def widget(page: Any) -> Any:
    """The preview's document (the widget's shadow DOM is open: locators pierce it)."""
    return page.frame_locator("#kbchat-console-preview-frame")


def accent(page: Any) -> str:
    frame = page.frame(url=lambda u: "/a/shop?preview=" in u)
    assert frame is not None
    return str(
        frame.evaluate(
            "() => document.getElementById('kbchat-widget-host').shadowRoot"
            ".querySelector('.kbchat-root').style.getPropertyValue('--kb-accent')"
        )
    )


def test_create_an_assistant_edit_it_and_see_the_preview_change(browser: Any, server: str) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(locale="en-US", viewport={"width": 1440, "height": 1300})
    page = context.new_page()
    unlock(page, server, "light")
    status = page.locator("#kbchat-ca-status")

    # locked pages get nothing: the editor is hidden until an assistant exists and is picked
    expect(page.locator("#kbchat-ca-editor")).to_be_hidden()
    page.locator("#kbchat-ca-new").get_by_text("New assistant").click()
    box(page, "kbchat-ca-new-id").fill("shop")
    box(page, "kbchat-ca-new-name").fill("Pip")
    page.locator("#kbchat-ca-create").click()
    expect(status).to_contain_text("Created shop", timeout=30_000)
    expect(page.locator("#kbchat-ca-editor")).to_be_visible()

    preview = widget(page)
    expect(preview.locator(".kbchat-title")).to_have_text("Pip", timeout=30_000)
    expect(preview.locator(".kbchat-greeting")).to_have_text("Hi! How can I help you?")
    assert accent(page) == "#2563eb"

    # change the colour and the greeting, save: the preview reloads with them
    page.locator("#kbchat-ca-color .dialog-button").click()  # Gradio's colour dialog
    hex_box = page.locator("#kbchat-ca-color input[type=text]")
    hex_box.fill("#d9480f")
    hex_box.press("Enter")
    page.locator("#kbchat-ca-status").click()  # closes the dialog
    box(page, "kbchat-ca-greeting").fill(GREETING)
    box(page, "kbchat-ca-suggestions").fill("How do returns work?\nWhere is my order?")
    page.locator("#kbchat-ca-save").click()
    expect(status).to_contain_text("Saved shop", timeout=30_000)
    expect(preview.locator(".kbchat-greeting")).to_have_text(GREETING, timeout=30_000)
    expect(preview.locator(".kbchat-chip")).to_have_count(2)
    assert preview.locator(".kbchat-greeting b").count() == 0  # shown as text
    assert accent(page) == "#d9480f"
    # the preview is sandboxed: it cannot reach the unlocked console's page
    frame = page.frame(url=lambda u: "/a/shop?preview=" in u)
    reach = "() => { try { return parent.document.title; } catch (e) { return 'blocked'; } }"
    assert frame is not None and frame.evaluate(reach) == "blocked"
    # the reloaded preview did not take the focus from the console's form
    assert page.evaluate("document.activeElement.tagName") != "IFRAME"

    # an invalid value: a readable message, nothing saved, the preview unchanged
    box(page, "kbchat-ca-avatar").fill("javascript:alert(1)")
    page.locator("#kbchat-ca-save").click()
    expect(status).to_contain_text("Avatar URL", timeout=30_000)
    expect(preview.locator(".kbchat-greeting")).to_have_text(GREETING)
    box(page, "kbchat-ca-avatar").fill("")

    # a second language: typed into the language picker, its boxes start empty, both saved
    language = box(page, "kbchat-ca-lang")
    language.fill("de")
    language.press("Enter")
    expect(box(page, "kbchat-ca-greeting")).to_have_value("", timeout=30_000)
    box(page, "kbchat-ca-greeting").fill("Hallo von Pip!")
    page.locator("#kbchat-ca-save").click()
    expect(status).to_contain_text("Saved shop", timeout=30_000)
    saved = httpx.get(f"{server}/api/assistants/shop", headers=AUTH).json()
    assert saved["greeting"] == {"en": GREETING, "de": "Hallo von Pip!"}
    assert saved["avatar"] is None and saved["color"] == "#d9480f"

    # a key for a site: shown once, with a copy button
    box(page, "kbchat-ca-origins").fill("https://shop.test")
    page.locator("#kbchat-ca-add-key").click()
    expect(status).to_contain_text("not shown again", timeout=30_000)
    new_key = page.locator("#kbchat-ca-new-key")
    expect(new_key).to_be_visible()
    assert new_key.locator("textarea, input").first.input_value().startswith("kb_")
    assert new_key.locator("button[aria-label*='opy'], button[title*='opy']").count() >= 1
    expect(page.locator("#kbchat-ca-keys")).to_contain_text("https://shop.test")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "console", "assistants-light.png")
    context.close()


def test_the_page_in_dark_mode(browser: Any, server: str) -> None:
    """A fresh page: unlock, pick the assistant, and take the dark screenshot with the
    preview following the dark scheme (the assistant's theme is auto)."""
    from playwright.sync_api import expect

    made = httpx.post(
        f"{server}/api/assistants",
        json={"id": "shop", "name": "Pip"},
        headers=AUTH,
    )
    assert made.status_code in (201, 409), made.text  # 409: the test above made it
    context = browser.new_context(
        locale="en-US", viewport={"width": 1440, "height": 1300}, color_scheme="dark"
    )
    page = context.new_page()
    unlock(page, server, "dark")  # the gate's state changes: the list fills
    box(page, "kbchat-ca-picker").click()
    page.get_by_role("option", name="Pip (shop)").click()
    expect(page.locator("#kbchat-ca-editor")).to_be_visible(timeout=30_000)
    root = widget(page).locator(".kbchat-root")
    expect(root).to_have_class(re.compile(r"theme-dark"), timeout=30_000)
    expect(widget(page).locator(".kbchat-title")).to_have_text("Pip")
    screenshot(page, "console", "assistants-dark.png")
    context.close()
