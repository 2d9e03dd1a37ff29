"""The console's Handoff page handlers as the page calls them, over the real app (real Chroma,
toy embedder, the loopback OpenAI stub): a locked page refused, forged session ids refused, the
queue, an escaped transcript, the reply stored as the operator's and seen by the widget's poll,
taking over, handing back with a confirmation, and the notice of a new handoff."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from app.server import console_handoff
from app.server.console_handoff import (
    BAD_SESSION,
    NO_SESSION,
    NOT_IN_QUEUE,
    HandoffConsole,
    clean_reply,
)
from app.server.ui_console import ConsoleHandlers, Gate
from tests.openai_stub import OpenAIStub, condensing
from tests.test_assistants import ADMIN, AUTH
from tests.test_handoff import MONDAY_10, assistant, build_app, chat

REQUEST = gr.Request(headers={}, client={"host": "192.0.2.9"})
HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script> ¿Puedo hablar con alguien?"


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=condensing("Within 30 days [1].")) as s:
        yield s


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, stub: OpenAIStub) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("console-handoff")
    with TestClient(build_app(tmp, stub, server={"admin_failures": "1000/minute"})) as c:
        yield c


class Page:
    """The page's handlers on the module's app, with an unlocked page's state."""

    def __init__(self, client: TestClient) -> None:
        state = client.app.state  # type: ignore[attr-defined]
        self.client, self.handoffs = client, state.handoffs
        self.gate = Gate(state.services)
        self.page = HandoffConsole(state.handoffs, state.conversation_admin, self.gate)
        shell = ConsoleHandlers(state.services, state.throttles, state.assistants)
        self.state = shell.unlock(ADMIN, REQUEST)[0]

    def waiting(self, text: str = HOSTILE) -> str:
        """A visitor's conversation that asked for a person (the widget's button)."""
        headers = assistant(self.client)
        session = str(chat(self.client, headers, text)["session_id"])
        r = self.client.post("/api/handoff", json={"session_id": session}, headers=headers)
        assert r.status_code == 200, r.text
        return session


@pytest.fixture
def page(app: TestClient) -> Page:
    for a in app.get("/api/assistants", headers=AUTH).json():
        assert app.delete(f"/api/assistants/{a['id']}", headers=AUTH).is_success
    for item in app.app.state.handoffs.queue(None):  # type: ignore[attr-defined]
        if item.state != "closed":
            app.app.state.handoffs.hand_back(item.session_id)  # type: ignore[attr-defined]
    app.app.state.handoffs.clock = lambda: MONDAY_10  # type: ignore[attr-defined]
    return Page(app)


def test_a_locked_page_is_refused_and_changes_nothing(page: Page) -> None:
    session = page.waiting()
    p = page.page
    for state in (None, "", "0" * 64, {"digest": page.state}):
        events: list[tuple[Any, ...]] = [
            (p.refresh, state, None, None),
            (p.pick, state, session),
            (p.take_over, state, session, None),
            (p.reply, state, session, "hello", None),
            (p.ask_hand_back, state, session),
            (p.cancel_hand_back, state),
            (p.confirm_hand_back, state, session, session, None),
        ]
        for event, *args in events:
            with pytest.raises(gr.Error):
                event(*args)
        ticked = p.tick(state, session, None)
        assert ticked[-1].active is False  # the timer stops itself, no error every tick
        assert all(isinstance(v, type(gr.skip())) for v in ticked[:-1])
        assert p.tab_selected(state, True).active is False
        assert all(isinstance(v, type(gr.skip())) for v in p.gate_changed(state, None, None))
    assert page.handoffs.open_state(session) == "waiting"  # nobody took it, nothing replied
    updates = page.handoffs.updates(session, 0)["messages"]
    assert [m["role"] for m in updates if m["role"] == "operator"] == []


def test_forged_session_ids_are_refused(page: Page) -> None:
    session = page.waiting()
    p, state = page.page, page.state
    other = str(chat(page.client, assistant(page.client, "other-shop"), "Hello?")["session_id"])
    current, _, status = p.pick(state, other)  # exists, but nobody asked for a person
    assert current is None and status == NOT_IN_QUEUE
    for forged in ("../../etc/passwd", "x" * 65, "a b", "<script>", 42, None, ["x"]):
        assert p.pick(state, forged)[0] is None
        with pytest.raises(gr.Error, match=BAD_SESSION):
            p.take_over(state, forged, None)
    with pytest.raises(gr.Error, match=NO_SESSION):
        p.take_over(state, "no-such-session", None)
    with pytest.raises(gr.Error):  # nothing picked: nowhere to send
        p.reply(state, None, "hello", None)
    with pytest.raises(gr.Error):  # the pending hand-back is not the picked conversation
        p.confirm_hand_back(state, other, session, None)
    assert page.handoffs.open_state(session) == "waiting"
    assert page.handoffs.open_state(other) is None


def test_queue_transcript_reply_and_hand_back(page: Page, stub: OpenAIStub) -> None:
    session = page.waiting()
    p, state = page.page, page.state
    rows, picker, transcript, recent, seen, status = p.refresh(state, None, None)
    [row] = rows
    assert row[0] == "waiting" and row[1] == "shoe-shop" and row[-1] == session
    assert row[3] == HOSTILE  # the table shows text, as text
    assert picker.choices[0][1] == session and seen

    current, transcript, status = p.pick(state, session)
    assert current == session and status == ""
    assert "<script>" not in transcript and "<img" not in transcript
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in transcript
    assert session in recent.choices[0] or any(session in c for c in recent.choices)

    sent = p.reply(state, current, "  Hola, soy Ana. <b>¿Qué talla?</b>  ", seen)
    assert sent[0] == "" and sent[-1] == "Sent."
    assert "&lt;b&gt;¿Qué talla?&lt;/b&gt;" in sent[3]
    assert page.handoffs.open_state(session) == "active"
    polled = page.handoffs.updates(session, 0)["messages"]
    assert (polled[-1]["role"], polled[-1]["content"]) == (
        "operator",
        "Hola, soy Ana. <b>¿Qué talla?</b>",  # stored as typed: the widget renders it as text
    )
    with pytest.raises(gr.Error):
        p.reply(state, current, "   ", seen)
    with pytest.raises(gr.Error):
        p.reply(state, current, "x" * 4001, seen)
    with pytest.raises(gr.Error):
        p.reply(state, current, "bidi \u202e override", seen)

    pending, row_update, status = p.ask_hand_back(state, current)
    assert pending == session and row_update.visible is True
    assert p.cancel_hand_back(state)[0] is None
    assert page.handoffs.open_state(session) == "active"  # cancelled: still ours
    done = p.confirm_hand_back(state, session, current, seen)
    assert done[0] is None and done[2] is None and done[-1].startswith("Handed back")
    assert page.handoffs.open_state(session) is None
    with pytest.raises(gr.Error):
        p.confirm_hand_back(state, session, session, seen)  # nothing open any more


def test_take_over_a_conversation_nobody_asked_about(page: Page) -> None:
    headers = assistant(page.client)
    session = str(chat(page.client, headers, "How do returns work?")["session_id"])
    out = page.page.take_over(page.state, f"  {session} ", None)
    assert out[0] == session and out[-1] == "You have the conversation."
    assert out[1][0][0] == "active" and out[1][0][-1] == session
    assert page.handoffs.open_state(session) == "active"
    answered = chat(page.client, headers, "Are you there?", session)
    assert answered["handoff"] == {"state": "active"} and answered["answer"] == ""


def test_a_new_handoff_is_announced_once(page: Page, monkeypatch: pytest.MonkeyPatch) -> None:
    told: list[str] = []
    monkeypatch.setattr(console_handoff.gr, "Info", lambda text, *a, **k: told.append(text))
    p, state = page.page, page.state
    seen = p.tick(state, None, None)[4]  # the first look announces nothing
    assert told == []
    session = page.waiting("Quiero hablar con una persona <img src=x onerror=alert(1)>")
    ticked = p.tick(state, None, seen)
    assert len(told) == 1 and "Quiero hablar con una persona" in told[0]
    assert "<img" not in told[0] and "&lt;img" in told[0]  # a toast renders HTML
    assert ticked[0][0][-1] == session and ticked[3] is not None
    p.tick(state, None, ticked[4])
    assert len(told) == 1  # not again
    assert p.tab_selected(state, True).active is True
    assert p.tab_selected(state, False).active is False


def test_clean_reply_keeps_newlines() -> None:
    assert clean_reply("a\n\tb ") == "a\n\tb"
    for bad in (None, 3, "", "\x00", "a\x07b"):
        with pytest.raises(gr.Error):
            clean_reply(bad)


def test_the_gradio_chat_stays_quiet_while_a_person_has_the_conversation(
    page: Page, stub: OpenAIStub
) -> None:
    from app.server.ui_chat import WITH_A_PERSON, ChatHandlers

    state = page.client.app.state  # type: ignore[attr-defined]
    handlers = ChatHandlers(state.services, state.throttles, state.assistants, state.handoffs)

    def ask(text: str, session: str | None) -> tuple[Any, ...]:
        *_, last = handlers.respond(text, [], session, "default", {}, None, REQUEST)
        return last

    answered = ask("How do returns work?", None)
    session = answered[4]
    assert isinstance(session, str) and "30 days" in answered[1][-1]["content"]
    page.page.take_over(page.state, session, None)
    calls = len(stub.requests)
    quiet = ask("Is anybody there?", session)
    assert quiet[0] == "" and quiet[1][-1]["content"] == WITH_A_PERSON
    assert len(stub.requests) == calls  # no LLM while a person has it
    transcript = state.conversation_admin.transcript(session)
    assert transcript.messages[-1].role == "user"
    assert transcript.messages[-1].content == "Is anybody there?"
    page.page.confirm_hand_back(page.state, session, session, None)
    again = ask("How do returns work?", session)
    assert "30 days" in again[1][-1]["content"] and len(stub.requests) > calls
