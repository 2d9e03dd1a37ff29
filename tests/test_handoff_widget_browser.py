"""The widget's side of the human handoff in Debian's headless Chromium, against a loopback stub of
the handoff contract (tests/handoff_stub.py): the "Talk to a person" button only for assistants
that enable it, the server's notice, the offline email form, operator messages polled live (their
markdown sanitised like answers), the `offer_handoff` chip, the `handoff` chat event, polling that
stops when the handoff closes, on a new conversation and while the page is hidden, backs off on
429, and survives a reload. Playwright's fake clock drives the 3-second polling, so no test waits
for it. Screenshots go to $KBCHAT_TEST_ARTIFACTS/handoff or test-artifacts/handoff/."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.browser import require_chromium, screenshot
from tests.handoff_stub import SESSION, HandoffStub, StubState, serve_stub
from tests.test_widget_browser import AXE

pytestmark = pytest.mark.integration
HOSTILE = (
    "We can help with **that**. <script>window.__xss=1</script>"
    '<img src=x onerror="window.__xss=2"> [click](javascript:window.__xss=3) '
    '<a href="https://example.com" onclick="window.__xss=4">raw</a>'
)
AUDIT = """async () => {
    const r = await axe.run({ include: [["#kbchat-widget-host"]] },
                            { resultTypes: ["violations"] });
    return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
        .map(v => v.id + ": " + v.nodes.map(n => n.target.join(" > ")).join(", "));
}"""


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, HandoffStub]]:
    require_chromium()
    with serve_stub() as pair:
        yield pair


@pytest.fixture
def widget(browser: Any, served: tuple[str, HandoffStub]) -> Iterator[Callable[..., Any]]:
    """widget(locale=..., **context options) -> the shop page, fake clock installed, panel open."""
    contexts: list[Any] = []
    url, _ = served

    def make(locale: str = "en-US", **options: Any) -> Any:
        options.setdefault("viewport", {"width": 1000, "height": 760})
        context = browser.new_context(locale=locale, **options)
        contexts.append(context)
        page = context.new_page()
        page.clock.install()  # the widget's timers run only when a test advances the clock
        page.goto(f"{url}/shop")
        page.locator(".kbchat-bubble").click()
        page.locator(".kbchat-greeting").wait_for()
        return page

    yield make
    for context in contexts:
        context.close()


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for the stub to see what the browser does (real HTTP, so it may lag a little)."""
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def ask(page: Any, text: str) -> None:
    from playwright.sync_api import expect

    page.locator(".kbchat-input").fill(text)
    page.locator(".kbchat-input").press("Enter")
    expect(page.locator(".kbchat-send")).to_be_visible()  # the answer is complete


def tick_until(page: Any, condition: Callable[[], bool], what: str) -> int:
    """Advance the widget's fake clock a second at a time until `condition` holds; the fake
    milliseconds it took. The widget schedules its next poll when an answer arrives over real
    HTTP, so stepping (rather than one jump) never outruns it."""
    start = int(page.evaluate("Date.now()"))
    deadline = time.monotonic() + 15
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        page.clock.run_for(1000)
        time.sleep(0.05)
    return int(page.evaluate("Date.now()")) - start


def visibility(page: Any, state: str) -> None:
    """Pretend the tab is hidden or shown again (headless Chromium's page is always visible)."""
    page.evaluate(
        """(state) => {
        Object.defineProperty(document, "visibilityState",
                              { configurable: true, get: () => state });
        document.dispatchEvent(new Event("visibilitychange")); }""",
        state,
    )


def settled_polls(stub: HandoffStub) -> int:
    """The number of polls once none is in flight (the stub records a request when it arrives)."""
    time.sleep(0.3)
    return len(stub.polls())


def test_no_button_unless_the_assistant_enables_handoff(
    widget: Any, served: tuple[str, HandoffStub]
) -> None:
    from playwright.sync_api import expect

    _, stub = served
    for config_handoff in (None, {"enabled": False}, {"enabled": "yes"}, "true"):
        config = stub.reset(offer_handoff=True).config
        if config_handoff is None:
            del config["handoff"]
        else:
            config["handoff"] = config_handoff
        page = widget()
        ask(page, "When did it open?")
        expect(page.locator(".kbchat-msg-assistant strong")).to_have_text("1901")
        assert page.get_by_role("button", name="Talk to a person").count() == 0  # nor the chip
        page.context.close()
    assert stub.requests("/api/handoff") == []


def test_the_button_hands_over_and_operator_replies_arrive_inert(
    widget: Any, served: tuple[str, HandoffStub]
) -> None:
    from playwright.sync_api import expect

    _, stub = served
    stub.reset()
    page = widget()
    talk = page.get_by_role("button", name="Talk to a person")
    expect(talk).to_be_visible()
    talk.click()  # no conversation yet: nothing to hand over
    expect(page.locator(".kbchat-notice").last).to_have_text(
        "Please type your question first, then you can ask for a person."
    )
    expect(page.locator(".kbchat-input")).to_be_focused()
    assert stub.requests("/api/handoff") == []

    ask(page, "Can I return a ticket?")
    talk.click()
    notice = page.locator(".kbchat-notice").last
    expect(notice).to_have_text("A person will answer here shortly.")
    assert notice.get_attribute("role") == "status"
    assert page.locator(".kbchat-msg-assistant").count() == 1  # a notice, not an answer bubble
    [request] = stub.requests("/api/handoff")
    assert request.body == {"session_id": SESSION}
    expect(talk).to_be_hidden()  # already with a person
    until(lambda: len(stub.polls()) >= 1, "a first poll")
    assert stub.polls()[0].query == {"after": "2"}  # after the answer the visitor has seen

    stub.operator_says(HOSTILE)
    operator = page.locator(".kbchat-msg-operator")
    tick_until(page, lambda: operator.count() == 1, "the operator's reply")
    expect(operator.locator(".kbchat-operator-name")).to_have_text("Support team")
    expect(operator.locator("strong")).to_have_text("that")
    assert operator.locator("script, img, [onclick], a[href^='javascript']").count() == 0
    assert operator.locator(".kbchat-actions, .kbchat-sources-block").count() == 0
    assert page.evaluate("() => window.__xss") is None
    expect(page.locator(".kbchat-notice").last).to_have_text(
        "You are now talking with the support team."
    )

    # the visitor writes to the person: the server answers with a `handoff` event, no answer
    ask(page, "Thanks, my ticket number is 42.")
    expect(page.locator(".kbchat-msg-user")).to_have_count(2)
    assert page.locator(".kbchat-msg-assistant").count() == 1  # no empty bubble
    assert page.locator(".kbchat-typing").count() == 0
    polls = len(stub.polls())
    tick_until(page, lambda: len(stub.polls()) > polls, "polling goes on")
    assert stub.polls()[-1].query == {"after": "3"}  # the operator's message was seen

    page.add_script_tag(path=str(AXE))
    assert page.evaluate(AUDIT) == []  # the handoff state: notices and the operator's bubble
    screenshot(page, "handoff", "handoff-desktop-light-en.png")

    stub.operator_says("Refund sent. The assistant will take it from here.", role="operator")
    stub.set_state("closed")
    tick_until(page, lambda: operator.count() == 2, "the operator's last message")
    expect(page.locator(".kbchat-notice").last).to_have_text(
        "The assistant is back. Ask me anything."
    )
    expect(talk).to_be_visible()
    polls = settled_polls(stub)
    page.clock.run_for(120_000)
    assert settled_polls(stub) == polls  # closed: no more polling


def test_outside_hours_the_visitor_leaves_an_email(
    widget: Any, served: tuple[str, HandoffStub]
) -> None:
    from playwright.sync_api import expect

    _, stub = served
    offline = "We are closed now. We are back on Monday at 09:00 (Europe/Berlin)."
    stub.reset(handoff_reply={"state": "offline", "message": offline})
    page = widget()
    ask(page, "Can I return a ticket?")
    page.get_by_role("button", name="Talk to a person").click()
    expect(page.locator(".kbchat-notice").last).to_have_text(offline)
    form = page.locator("form.kbchat-handoff-email")
    expect(form).to_be_visible()
    email = form.get_by_label("Email", exact=True)
    email.fill("ada-at-example")
    form.get_by_role("button", name="Send").click()
    expect(form.get_by_role("alert")).to_have_text("Please enter a valid email address.")
    expect(email).to_have_attribute("aria-invalid", "true")
    assert stub.requests("/api/handoff/email") == []
    page.add_script_tag(path=str(AXE))
    assert page.evaluate(AUDIT) == []  # the form with its error
    screenshot(page, "handoff", "handoff-offline-email-en.png")
    page.reload()  # not left yet: the form comes back with the conversation
    page.locator(".kbchat-bubble").click()
    expect(form).to_be_visible()
    expect(page.locator(".kbchat-msg-assistant")).to_have_count(1)  # the history, once
    email.fill("ada@example.com")
    email.press("Enter")
    expect(form).to_have_count(0)
    expect(page.locator(".kbchat-notice").last).to_have_text(
        "Thank you! We will reply to you by email."
    )
    assert stub.s.emails == ["ada@example.com"]
    [request] = stub.requests("/api/handoff/email")
    assert request.body == {"session_id": SESSION, "email": "ada@example.com"}
    until(lambda: len(stub.polls()) >= 1, "polling")  # an operator may still answer here
    page.reload()
    page.locator(".kbchat-bubble").click()
    until(lambda: len(stub.polls()) >= 3, "polling after the second reload")
    assert form.count() == 0  # left: not asked again

    # a new conversation, still outside hours, but a person answers anyway: no email needed
    page.locator(".kbchat-new").click()
    stub.reset(handoff_reply={"state": "offline", "message": offline})
    ask(page, "Can I return a ticket?")
    page.get_by_role("button", name="Talk to a person").click()
    expect(form).to_be_visible()
    stub.operator_says("I am here after all.")
    tick_until(page, lambda: form.count() == 0, "the form goes when a person joins")
    expect(page.locator(".kbchat-notice").last).to_have_text(
        "You are now talking with the support team."
    )


def test_an_offer_after_unanswered_questions_shows_the_chip(
    widget: Any, served: tuple[str, HandoffStub]
) -> None:
    from playwright.sync_api import expect

    _, stub = served
    stub.reset(offer_handoff=True, answer="Sorry, I could not find that in the documents.")
    page = widget()
    ask(page, "Where is my parcel?")
    chip = page.locator(".kbchat-handoff-offer").get_by_role("button", name="Talk to a person")
    expect(chip).to_be_visible()
    expect(
        page.locator(".kbchat-header").get_by_role("button", name="Talk to a person")
    ).to_be_visible()
    page.add_script_tag(path=str(AXE))
    assert page.evaluate(AUDIT) == []  # the chip and the header's button
    screenshot(page, "handoff", "handoff-offer-chip-en.png")
    chip.click()
    expect(page.locator(".kbchat-notice").last).to_have_text("A person will answer here shortly.")
    expect(page.locator(".kbchat-handoff-offer")).to_have_count(0)
    assert len(stub.requests("/api/handoff")) == 1


def test_a_handoff_event_from_chat_then_reload_and_new_conversation(
    widget: Any, served: tuple[str, HandoffStub]
) -> None:
    """The phrase detection answers with a `handoff` event: the widget switches to the handoff
    state; a reload keeps polling and shows the operator's reply as theirs; "new conversation"
    stops it; a hidden page does not poll and a 429 waits its Retry-After."""
    from playwright.sync_api import expect

    _, stub = served
    stub.reset(phrase="speak to a human")
    page = widget()
    ask(page, "I want to speak to a human")
    expect(page.locator(".kbchat-msg-user")).to_have_text("I want to speak to a human")
    expect(page.locator(".kbchat-msg-assistant")).to_have_text("A person will answer here shortly.")
    assert page.locator(".kbchat-typing").count() == 0
    tick_until(page, lambda: len(stub.polls()) >= 1, "polling after the handoff event")
    assert stub.polls()[0].query == {"after": "2"}  # after the reply the widget showed
    expect(page.get_by_role("button", name="Talk to a person")).to_be_hidden()

    stub.operator_says("Hello, this is Maria. How can I help?")
    page.reload()  # the handoff is kept with the conversation
    page.locator(".kbchat-bubble").click()
    operator = page.locator(".kbchat-msg-operator")
    expect(operator).to_have_count(1)  # from the history, not twice
    until(lambda: stub.polls()[-1].query == {"after": "3"}, "polling again after the reload")
    polls = len(stub.polls())
    tick_until(page, lambda: len(stub.polls()) > polls, "the next poll")
    expect(operator).to_have_count(1)

    # a hidden page does not poll; it polls again when it is shown
    visibility(page, "hidden")
    polls = settled_polls(stub)
    page.clock.run_for(30_000)
    assert settled_polls(stub) == polls
    visibility(page, "visible")
    until(lambda: len(stub.polls()) == polls + 1, "a poll when the page is visible again")

    # 429 with Retry-After: 20 -> the next poll waits 20 s instead of 3
    stub.s.updates_status.append((429, {"Retry-After": "20"}))
    tick_until(page, lambda: len(stub.polls()) == polls + 2, "the refused poll")
    waited = tick_until(page, lambda: len(stub.polls()) == polls + 3, "a poll after Retry-After")
    assert waited >= 19_000
    # a failing server: the widget waits longer each time (3 s, then 6 s, then 12 s)
    stub.s.updates_status.extend([(500, {}), (500, {})])
    tick_until(page, lambda: len(stub.polls()) == polls + 4, "the first failed poll")
    tick_until(page, lambda: len(stub.polls()) == polls + 5, "the second failed poll")
    waited = tick_until(page, lambda: len(stub.polls()) == polls + 6, "a poll after failures")
    assert waited >= 11_000

    page.locator(".kbchat-new").click()
    polls = settled_polls(stub)
    page.clock.run_for(60_000)
    assert settled_polls(stub) == polls  # a new conversation: no more polling
    assert page.locator(".kbchat-msg-operator, .kbchat-notice").count() == 0
    expect(page.get_by_role("button", name="Talk to a person")).to_be_visible()
    page.reload()
    page.locator(".kbchat-bubble").click()
    page.clock.run_for(10_000)
    assert settled_polls(stub) == polls  # nor after a reload


def test_arabic_on_a_phone_in_dark_mode(widget: Any, served: tuple[str, HandoffStub]) -> None:
    from playwright.sync_api import expect

    _, stub = served
    stub.reset(handoff_reply={"state": "waiting", "message": "سيجيبك أحد موظفينا هنا قريبًا."})
    phone = {"width": 390, "height": 844}
    page = widget("ar-EG", viewport=phone, color_scheme="dark")
    ask(page, "هل يمكنني إرجاع التذكرة؟")
    page.get_by_role("button", name="التحدث مع شخص").click()
    expect(page.locator(".kbchat-notice").last).to_have_text("سيجيبك أحد موظفينا هنا قريبًا.")
    stub.operator_says("مرحبًا، أنا **مريم**. كيف يمكنني مساعدتك؟")
    operator = page.locator(".kbchat-msg-operator")
    tick_until(page, lambda: operator.count() == 1, "the operator's reply")
    expect(operator.locator(".kbchat-operator-name")).to_have_text("فريق الدعم")
    expect(operator.locator("strong")).to_have_text("مريم")
    assert page.locator(".kbchat-panel").get_attribute("dir") == "rtl"
    page.add_script_tag(path=str(AXE))
    assert page.evaluate(AUDIT) == []
    screenshot(page, "handoff", "handoff-mobile-dark-ar.png")


def test_the_full_page_hands_over_too(browser: Any, served: tuple[str, HandoffStub]) -> None:
    """/a/{assistant} runs the same script in page mode: its requests name the assistant."""
    from playwright.sync_api import expect

    url, stub = served
    stub.reset()
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        violations: list[str] = []
        page.on(
            "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
        )
        page.clock.install()
        page.goto(f"{url}/a/shop")
        ask(page, "Can I return a ticket?")
        page.get_by_role("button", name="Talk to a person").click()
        expect(page.locator(".kbchat-notice").last).to_have_text(StubState.waiting)
        until(lambda: len(stub.polls()) >= 1, "a poll from the full page")
        stub.operator_says("Hello from the **team**.")
        operator = page.locator(".kbchat-msg-operator strong")
        tick_until(page, lambda: operator.count() == 1, "the operator's reply")
        expect(operator).to_have_text("team")
        assert violations == []  # its strict CSP allows everything the handoff does
    finally:
        context.close()


def test_hostile_answers_from_the_server_stay_text_or_are_dropped(
    widget: Any, served: tuple[str, HandoffStub]
) -> None:
    """What the server sends reaches the page only as text or through the answers' sanitiser:
    the handoff message is a notice's text; poll answers with odd ids, roles or content are
    dropped, a huge message is cut, an unknown state keeps polling; a closed panel shows a dot."""
    from playwright.sync_api import expect

    _, stub = served
    evil = '<img src=x onerror="window.__xss=9">Please <b>wait</b>'
    stub.reset(handoff_reply={"state": "waiting", "message": evil})
    page = widget()
    ask(page, "Can I return a ticket?")
    page.get_by_role("button", name="Talk to a person").click()
    expect(page.locator(".kbchat-notice").last).to_have_text(evil)
    assert page.locator(".kbchat-notice img, .kbchat-notice b").count() == 0
    until(lambda: len(stub.polls()) >= 1, "a first poll")
    page.locator(".kbchat-close").click()

    def operator(message_id: Any, content: Any, role: str = "operator") -> dict[str, Any]:
        return {"id": message_id, "role": role, "content": content, "created": "x"}

    stub.s.updates_body.append(
        {
            "messages": [
                operator("5", "a string id"),
                operator(True, "a boolean id"),
                operator(4.5, "a fractional id"),
                operator(-1, "a negative id"),
                operator(2**60, "an id past 2**53"),
                operator(6, {"text": "an object"}),
                operator(7, "my own words", role="user"),
                operator(8, "a system prompt", role="system"),
                operator(9, "ok <script>window.__xss=10</script>"),
                operator(9, "the same id again"),
                "not an object",
                operator(10, "x" * 50_000),
            ],
            "handoff": {"state": "sideways"},
        }
    )
    bubbles = page.locator(".kbchat-msg-operator")
    tick_until(page, lambda: bubbles.count() == 2, "the two good messages")
    bubble = page.locator(".kbchat-bubble")
    expect(bubble).to_have_class("kbchat-bubble kbchat-unread")
    expect(bubble).to_have_attribute(
        "aria-label", "Open chat \u2014 New message from the support team"
    )
    page.locator(".kbchat-bubble").click()
    expect(bubble).not_to_have_class("kbchat-bubble kbchat-unread")
    assert bubbles.nth(0).locator(".kbchat-text").inner_text() == (
        "ok <script>window.__xss=10</script>"
    )
    assert len(bubbles.nth(1).locator(".kbchat-text").inner_text()) == 20_000
    assert page.evaluate("() => window.__xss") is None
    polls = len(stub.polls())
    tick_until(page, lambda: len(stub.polls()) > polls, "polling goes on")
    assert stub.polls()[-1].query == {"after": "10"}
