"""The Gradio chat's handlers as the page calls them, over the real app (Chroma, the toy
embedder, the loopback LLM): the assistant picker with hostile values, greeting and chips in the
browser's language, a chip asking only the question the server gave it, the assistant's persona,
model, knowledge base and caps, and an assistant deleted mid-conversation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from app.server.ui_assistant import pick_language, preferred_languages
from tests.openai_stub import OpenAIStub, condensing
from tests.test_assistants import AUTH, PERSONA, make_app

SHOP = {
    "id": "shop",
    "name": "Pip <b>",
    "avatar": "/static/pip.png",
    "greeting": {"en": "Hi, I am Pip.", "es": "Hola, soy Pip."},
    "suggestions": {"en": ["Can I return shoes?"], "es": ["¿Puedo devolver zapatos?", "¿Envíos?"]},
    "instructions": PERSONA,
    "collection": "shop",
    "model": "stub-large",
    "caps": {"session_messages": 2},
}
SECRET = {"id": "secret", "name": "Hidden", "greeting": {"en": "SECRET-GREETING"}}


class Page:
    """The chat tab's handlers by name, and the stub LLM behind them."""

    def __init__(self, app: Any, stub: OpenAIStub) -> None:
        from app.server.ui import build_ui

        self.stub, self.services = stub, app.state.services
        self.assistants = app.state.assistants
        blocks = build_ui(self.services, app.state.throttles, app.state.assistants)
        self.fn: dict[str, Any] = {getattr(f.fn, "__name__", ""): f.fn for f in blocks.fns.values()}

    def choose(self, value: Any, language: str = "es-ES,es;q=0.9") -> tuple[Any, ...]:
        request = gr.Request(headers={"accept-language": language}, client={"host": "192.0.2.9"})
        return tuple(self.fn["choose_assistant"](value, "default", request))

    def ask(self, handler: str, first: Any, state: dict[str, Any]) -> list[tuple[Any, ...]]:
        request = gr.Request(headers={}, client={"host": "192.0.2.9"})
        args = (state["history"], state["session"], "default", state["ids"], state["assistant"])
        out = list(self.fn[handler](first, *args, request))
        for update in out:  # what the page would keep: history, session id, message ids
            if isinstance(update[2], list):
                state["history"] = update[2]
            if isinstance(update[4], str):
                state["session"], state["ids"] = update[4], update[5]
        return out


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with OpenAIStub(reply=condensing("Shoes go back within 30 days [1].")) as stub:
        app = make_app(tmp_path, stub)
        with TestClient(app) as api:
            for body in (SHOP, SECRET):
                assert api.post("/api/assistants", json=body, headers=AUTH).status_code == 201
            yield Page(app, stub)


def state_after(chosen: tuple[Any, ...]) -> dict[str, Any]:
    return {"assistant": chosen[0], "history": chosen[5], "session": None, "ids": {}}


@pytest.mark.parametrize(
    "forged",
    ["nope", "../secret", "SECRET", "secret ", "a" * 65, 7, ["secret"], {"id": "secret"}, True],
)
def test_a_forged_assistant_id_gets_a_message_and_nothing_else(page: Page, forged: Any) -> None:
    chosen = page.choose(forged)
    assert chosen[0] is None and chosen[1] == []  # no assistant, no chips
    assert "does not exist" in chosen[9]
    assert "SECRET-GREETING" not in repr(chosen) and "Pip" not in repr(chosen)
    assert not page.stub.requests


def test_choosing_an_assistant_greets_in_the_browser_language(page: Page) -> None:
    chosen = page.choose("shop")
    assert chosen[0] == "shop" and chosen[1] == ["¿Puedo devolver zapatos?", "¿Envíos?"]
    assert chosen[5] == [{"role": "assistant", "content": "Hola, soy Pip."}]
    assert chosen[2]["value"] == "shop" and chosen[2]["interactive"] is False  # its KB, fixed
    assert chosen[3] == (  # name and avatar, escaped
        '<div class="kbchat-assistant" dir="auto"><img src="/static/pip.png" alt="" width="32" '
        'height="32" referrerpolicy="no-referrer" style="border-radius:50%;vertical-align:middle">'
        " <strong>Pip &lt;b&gt;</strong></div>"
    )
    assert chosen[4]["label"] == "Pip <b>"  # the Chatbot's label: plain text
    chips = chosen[10:]
    assert [c["visible"] for c in chips] == [True, True, False, False, False, False]
    assert chips[0]["value"] == "¿Puedo devolver zapatos?"
    english = page.choose("shop", "de-DE,de;q=0.9,en;q=0.5")
    assert english[5][0]["content"] == "Hi, I am Pip." and english[1] == ["Can I return shoes?"]
    none = page.choose("")  # back to the knowledge base only: a new, empty conversation
    assert none[0] is None and none[5] == [] and none[2]["interactive"] is True


def test_a_chip_asks_its_question_with_the_assistants_persona_model_and_caps(page: Page) -> None:
    state = state_after(page.choose("shop"))
    out = page.ask("ask_chip_1", ["¿Puedo devolver zapatos?", "¿Envíos?"], state)
    assert "30 days" in state["history"][-1]["content"]
    assert state["history"][1] == {"role": "user", "content": "¿Envíos?"}
    answer = page.stub.requests[-1]
    assert answer["model"] == "stub-large" and "You are Pip" in answer["messages"][0]["content"]
    assert "returns.md" in out[-1][3] and "kbchat-card" in out[-1][3]  # the shop's KB, as cards
    stored = page.services.conversations.conversation(state["session"])
    assert stored["collection"] == "shop" and stored["assistant"] == "shop"
    page.ask("respond", "And sandals?", state)  # message two of two
    seen = len(page.stub.requests)
    page.ask("respond", "And boots?", state)
    assert "conversation limit" in state["history"][-1]["content"]
    assert len(page.stub.requests) == seen  # refused before the LLM


def test_a_forged_chip_asks_nothing(page: Page) -> None:
    state = state_after(page.choose("shop"))
    for handler, chips in [("ask_chip_5", ["¿Envíos?"]), ("ask_chip_0", None), ("ask_chip_0", "x")]:
        out = page.ask(handler, chips, state)
        assert all(v is gr.skip() or v == gr.skip() for v in out[0])
    assert not page.stub.requests


def test_an_assistant_deleted_mid_conversation_is_refused_clearly(page: Page) -> None:
    state = state_after(page.choose("shop"))
    page.assistants.delete("shop")
    page.ask("respond", "Can I return shoes?", state)
    assert "does not exist" in state["history"][-1]["content"]
    assert not page.stub.requests
    cleared = page.fn["new_conversation"]("shop", gr.Request(headers={}))
    assert cleared[1] == []  # no greeting of a deleted assistant


def test_languages_of_accept_language() -> None:
    assert preferred_languages("fr-CH, fr;q=0.9, en;q=0.8, *;q=0.5, x=y;q=1") == [
        "fr-ch",
        "fr",
        "en",
    ]
    assert preferred_languages("de;q=0, en;q=abc, es") == ["es"]
    assert pick_language(["en", "pt-BR"], "pt-PT,pt;q=0.9", "en") == "pt-BR"
    assert pick_language(["en", "ar"], "ar-EG", "en") == "ar"
    assert pick_language(["fr"], "ja", "en") is None
    assert pick_language(["en"], "a" * 10_000, "en") == "en"
