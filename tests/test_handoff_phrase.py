"""Asking for a person in words, with the real E5 model: requests in Spanish (and in languages
without exemplars) start a handoff, questions about people do not; through /api/chat the LLM is
not asked, the stream carries `handoff`, the notice as `token`, and `done` with the notice's id,
so the widget's first poll does not bring the notice back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.server.handoff_phrase import HandoffPhrases
from tests.openai_stub import OpenAIStub, condensing
from tests.test_assistants import AUTH, SHOP, new_key, shop
from tests.test_handoff import build_app, sse_events

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"


@pytest.fixture(scope="module")
def phrases(e5: Any) -> HandoffPhrases:
    found = HandoffPhrases.for_model(e5, PROMPTS)
    assert found is not None, "the bundled model has a calibrated threshold"
    return found


@pytest.mark.parametrize(
    "turn",
    [
        "¿Puedo hablar con una persona real?",
        "Necesito hablar con un agente humano",
        "I want to speak to a human being",
        "Ich möchte bitte mit einem Menschen sprechen",
        "Chcę porozmawiać z człowiekiem",  # Polish: no exemplars
    ],
)
def test_requests_for_a_person_are_recognised(phrases: HandoffPhrases, turn: str) -> None:
    assert phrases.asks_for_person(turn) is not None


@pytest.mark.parametrize(
    "turn",
    [
        "¿Cuántas personas viven en Madrid?",
        "¿Quién fundó la empresa?",
        "Who is the person in charge of returns?",
        "What is a travel agent?",
        "When did the Wuppertal monorail open?",
        "¿En qué año se fundó la Universidad de Chicago?",  # an XQuAD-like question
        "Hola",
    ],
)
def test_questions_about_people_are_not(phrases: HandoffPhrases, turn: str) -> None:
    assert phrases.asks_for_person(turn) is None


def test_spanish_request_starts_a_handoff_without_the_llm(
    tmp_path: Path, phrases: HandoffPhrases
) -> None:
    with (
        OpenAIStub(reply=condensing("Within 30 days [1].")) as stub,
        TestClient(build_app(tmp_path, stub)) as client,
    ):
        # the app answers from a toy embedder; the detector is the real model's
        client.app.state.handoff_phrases = phrases.asks_for_person  # type: ignore[attr-defined]
        body = shop(handoff={"enabled": True})
        assert client.post("/api/assistants", json=body, headers=AUTH).status_code == 201
        headers = {"X-Kbchat-Key": new_key(client), "Origin": SHOP}

        question = {"message": "¿En qué año se fundó la Universidad de Chicago?"}
        answered = client.post("/api/chat", json=question, headers=headers).json()
        assert "handoff" not in answered and len(stub.requests) >= 1
        session = answered["session_id"]

        calls = len(stub.requests)
        ask = {"message": "¿Puedo hablar con una persona real?", "session_id": session}
        r = client.post("/api/chat", json={**ask, "stream": True}, headers=headers)
        events = sse_events(r.text)
        assert [e for e, _ in events] == ["handoff", "token", "done"]
        assert events[0][1] == {"state": "waiting", "session_id": session}
        assert events[1][1]["text"] == "Una persona te responderá aquí en breve."
        done = events[2][1]
        assert isinstance(done["message_id"], int) and done["session_id"] == session
        assert len(stub.requests) == calls

        polled = client.get(
            f"/api/sessions/{session}/updates?after={done['message_id']}", headers=headers
        ).json()
        assert polled == {"messages": [], "handoff": {"state": "waiting"}}
        [queued] = client.get("/api/handoffs", headers=AUTH).json()
        assert queued["reason"] == "phrase" and queued["language"] == "es"

        # the widget flow: the operator replies, the visitor's poll shows it
        reply = {"text": "Hola, soy Ana. ¿En qué puedo ayudarte?"}
        assert client.post(
            f"/api/conversations/{session}/reply", json=reply, headers=AUTH
        ).is_success
        polled = client.get(
            f"/api/sessions/{session}/updates?after={done['message_id']}", headers=headers
        ).json()
        assert [m["content"] for m in polled["messages"]] == [reply["text"]]


def test_an_assistant_without_handoff_answers_the_phrase(
    tmp_path: Path, phrases: HandoffPhrases
) -> None:
    with (
        OpenAIStub(reply=condensing("Within 30 days [1].")) as stub,
        TestClient(build_app(tmp_path, stub)) as client,
    ):
        client.app.state.handoff_phrases = phrases.asks_for_person  # type: ignore[attr-defined]
        assert client.post("/api/assistants", json=shop(), headers=AUTH).status_code == 201
        headers = {"X-Kbchat-Key": new_key(client), "Origin": SHOP}
        ask = {"message": "¿Puedo hablar con una persona real?"}
        body = client.post("/api/chat", json=ask, headers=headers).json()
        assert "handoff" not in body and body["answer"] == "Within 30 days [1]."
        assert json.dumps(body)  # an ordinary answer
