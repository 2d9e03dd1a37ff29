"""Human handoff through the HTTP API, with the real app, real Chroma (toy embedder) and the
loopback OpenAI stub: the button, the operator's reply seen by the visitor's poll, the LLM kept
quiet until hand-back, opening hours on a fixed clock, the offer after unanswered questions,
the poll's own rate budget, and hostile or foreign requests refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder
from tests.openai_stub import OpenAIStub, condensing
from tests.test_assistants import ADMIN, AUTH, DOCS, SHOP, new_key, shop

MONDAY_10 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # 10:00 in Madrid
SUNDAY_10 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
HOURS = {"timezone": "Europe/Madrid", "schedule": {"mon": ["09:00-13:00", "14:00-18:00"]}}


def build_app(
    tmp_path: Path,
    stub: OpenAIStub,
    min_score: float = 0.0,
    *,
    with_ui: bool = False,
    **overrides: Any,
) -> Any:
    """test_assistants.make_app's two knowledge bases, with a relevance cut-off to choose (and
    the Gradio UI, the console, with `with_ui`)."""
    from app.ingest import ingest_folder
    from app.server.app import create_app
    from app.settings import load_settings

    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}",
        admin_api_key=ADMIN,
        ingest={"resync_on_start": False},
        retrieval={"small_talk": False, "query_correction": "off", "min_score": min_score},
        openai_base_url=stub.base_url,
        llm={"model": "stub-model", "max_retries": 0, "timeout": 5},
        **overrides,
    )
    embedder = FakeEmbedder()
    for collection, (name, text) in DOCS.items():
        folder = settings.collections_dir / collection
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        ingest_folder(settings, folder, collection, embedder=embedder)
    return create_app(settings, embedder=embedder, with_ui=with_ui)


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=condensing("Within 30 days [1].")) as s:
        yield s


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, stub: OpenAIStub) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("handoff")
    with TestClient(build_app(tmp, stub, server={"admin_failures": "1000/minute"})) as c:
        yield c


@pytest.fixture
def client(app: TestClient) -> TestClient:
    """The module's app with its assistants deleted and the clock on a Monday morning."""
    for assistant in app.get("/api/assistants", headers=AUTH).json():
        assert app.delete(f"/api/assistants/{assistant['id']}", headers=AUTH).is_success
    app.app.state.handoffs.clock = lambda: MONDAY_10  # type: ignore[attr-defined]
    return app


def assistant(client: TestClient, slug: str = "shoe-shop", **handoff: Any) -> dict[str, str]:
    body = shop(id=slug, handoff={"enabled": True, **handoff})
    r = client.post("/api/assistants", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    return {"X-Kbchat-Key": new_key(client, slug), "Origin": SHOP}


def chat(client: TestClient, headers: dict[str, str], text: str, session: str | None = None) -> Any:
    r = client.post("/api/chat", json={"message": text, "session_id": session}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def sse_events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_button_operator_reply_and_hand_back(client: TestClient, stub: OpenAIStub) -> None:
    headers = assistant(client)
    first = chat(client, headers, "How do returns work?")
    session = first["session_id"]
    assert "offer_handoff" not in first  # a grounded answer offers nobody
    r = client.post("/api/handoff", json={"session_id": session}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"state": "waiting", "message": "A person will answer here shortly."}
    again = client.post("/api/handoff", json={"session_id": session}, headers=headers)
    assert again.json()["state"] == "waiting"  # the open one, not a second
    [queued] = client.get("/api/handoffs?state=waiting", headers=AUTH).json()
    assert queued["session_id"] == session and queued["assistant"] == "shoe-shop"
    assert queued["first_question"] == "How do returns work?" and queued["reason"] == "button"

    hostile = "<img src=x onerror=alert(1)> Hi, I am Ana. **Which shoes?**"
    r = client.post(f"/api/conversations/{session}/reply", json={"text": hostile}, headers=AUTH)
    assert r.status_code == 200, r.text
    reply_id = r.json()["message_id"]
    assert client.get("/api/handoffs?state=active", headers=AUTH).json()[0]["accepted"]

    r = client.get(f"/api/sessions/{session}/updates?after={first['message_id']}", headers=headers)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["handoff"] == {"state": "active"}
    assert [(m["id"], m["role"], m["content"]) for m in body["messages"]] == [
        (reply_id, "operator", hostile)  # stored as sent: the widget renders it sanitised
    ]
    assert isinstance(body["messages"][0]["id"], int)
    history = client.get(f"/api/sessions/{session}", headers=headers).json()["messages"]
    assert history[-1]["role"] == "operator"

    calls = len(stub.requests)
    quiet = chat(client, headers, "The blue ones, size 38", session)
    assert quiet["handoff"] == {"state": "active"} and quiet["answer"] == ""
    assert quiet["message_id"] is None
    r = client.post(
        "/api/chat",
        json={"message": "Are they in stock?", "session_id": session, "stream": True},
        headers=headers,
    )
    events = sse_events(r.text)
    assert [e for e, _ in events] == ["handoff", "done"]
    assert events[0][1] == {"state": "active", "session_id": session}
    assert events[1][1]["session_id"] == session and events[1][1]["message_id"] is None
    assert len(stub.requests) == calls  # no LLM while a person has the conversation
    polled = client.get(f"/api/sessions/{session}/updates?after={reply_id}", headers=headers)
    assert polled.json()["messages"] == []  # never the visitor's own messages
    transcript = client.get(f"/api/sessions/{session}", headers=headers).json()["messages"]
    assert [m["content"] for m in transcript[-2:]] == [
        "The blue ones, size 38",
        "Are they in stock?",
    ]

    r = client.post(f"/api/conversations/{session}/handback", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"state": "closed"}
    assert client.post(f"/api/conversations/{session}/handback", headers=AUTH).status_code == 404
    back = chat(client, headers, "And returns?", session)
    assert back["answer"] == "Within 30 days [1]." and len(stub.requests) > calls
    r = client.get(f"/api/sessions/{session}/updates?after={reply_id}", headers=headers)
    assert r.json()["handoff"] == {"state": "closed"}


def test_operator_takes_over_unasked(client: TestClient, stub: OpenAIStub) -> None:
    headers = assistant(client)
    session = chat(client, headers, "How do returns work?")["session_id"]
    r = client.post(f"/api/conversations/{session}/handoff", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"state": "active"}
    calls = len(stub.requests)
    assert chat(client, headers, "hello?", session)["handoff"] == {"state": "active"}
    assert len(stub.requests) == calls
    [active] = client.get("/api/handoffs?state=active", headers=AUTH).json()
    assert active["reason"] == "operator"


def test_outside_hours_offline_then_email(client: TestClient) -> None:
    headers = assistant(client, hours=HOURS)
    session = chat(client, headers, "How do returns work?")["session_id"]
    client.app.state.handoffs.clock = lambda: SUNDAY_10  # type: ignore[attr-defined]
    r = client.post("/api/handoff", json={"session_id": session}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "offline"
    assert "2026-11-30 09:00 (Europe/Madrid)" in r.json()["message"]  # the next opening
    [queued] = client.get("/api/handoffs?state=waiting", headers=AUTH).json()  # still queued
    assert queued["session_id"] == session and queued["contact_email"] is None
    bad = {"session_id": session, "email": "not-an-email"}
    assert client.post("/api/handoff/email", json=bad, headers=headers).status_code == 422
    good = {"session_id": session, "email": "ana@example.com"}
    r = client.post("/api/handoff/email", json=good, headers=headers)
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert client.get("/api/handoffs", headers=AUTH).json()[0]["contact_email"] == good["email"]
    client.app.state.handoffs.clock = lambda: MONDAY_10  # type: ignore[attr-defined]
    r = client.post("/api/handoff", json={"session_id": session}, headers=headers)
    assert r.json()["state"] == "waiting"  # open again: the same handoff, now in hours


def test_own_offline_message_in_the_visitors_language(client: TestClient) -> None:
    own = {"en": "Back on Monday.", "de": "Montag wieder da."}
    headers = assistant(client, hours=HOURS, offline_message=own)
    session = chat(client, headers, "How do returns work?")["session_id"]
    client.app.state.handoffs.clock = lambda: SUNDAY_10  # type: ignore[attr-defined]
    r = client.post("/api/handoff", json={"session_id": session}, headers=headers)
    assert r.json() == {"state": "offline", "message": "Back on Monday."}


def test_email_without_an_open_handoff_is_404(client: TestClient) -> None:
    headers = assistant(client)
    session = chat(client, headers, "How do returns work?")["session_id"]
    body = {"session_id": session, "email": "ana@example.com"}
    assert client.post("/api/handoff/email", json=body, headers=headers).status_code == 404


def test_assistant_without_handoff_is_refused(client: TestClient) -> None:
    r = client.post("/api/assistants", json=shop(), headers=AUTH)
    assert r.status_code == 201
    headers = {"X-Kbchat-Key": new_key(client), "Origin": SHOP}
    assert client.get("/api/widget/config", headers=headers).json()["handoff"] == {"enabled": False}
    session = chat(client, headers, "How do returns work?")["session_id"]
    r = client.post("/api/handoff", json={"session_id": session}, headers=headers)
    assert r.status_code == 403 and r.json()["code"] == "handoff_disabled"


def test_another_assistants_session_is_404_everywhere(client: TestClient) -> None:
    mine = assistant(client)
    theirs = assistant(client, "other-shop")
    session = chat(client, theirs, "How do returns work?")["session_id"]
    assert (
        client.post("/api/handoff", json={"session_id": session}, headers=mine).status_code == 404
    )
    assert client.post("/api/handoff", json={"session_id": session}, headers=theirs).is_success
    email = {"session_id": session, "email": "ana@example.com"}
    assert client.post("/api/handoff/email", json=email, headers=mine).status_code == 404
    assert client.get(f"/api/sessions/{session}/updates", headers=mine).status_code == 404
    assert client.get(f"/api/sessions/{session}/updates", headers=theirs).status_code == 200
    r = client.post("/api/chat", json={"message": "hi", "session_id": session}, headers=mine)
    assert r.status_code == 404
    for unknown in ("0" * 32, "forged-session"):
        body = {"session_id": unknown}
        assert client.post("/api/handoff", json=body, headers=mine).status_code == 404
        assert client.get(f"/api/sessions/{unknown}/updates", headers=mine).status_code == 404
        r = client.post(f"/api/conversations/{unknown}/reply", json={"text": "x"}, headers=AUTH)
        assert r.status_code == 404
        assert client.post(f"/api/conversations/{unknown}/handoff", headers=AUTH).status_code == 404
        assert (
            client.post(f"/api/conversations/{unknown}/handback", headers=AUTH).status_code == 404
        )


def test_hostile_inputs(client: TestClient) -> None:
    headers = assistant(client)
    session = chat(client, headers, "How do returns work?")["session_id"]
    for after in ("-1", "abc", "1.5", str(2**63), "9" * 400, ""):
        r = client.get(f"/api/sessions/{session}/updates?after={after}", headers=headers)
        assert r.status_code == 422, (after, r.text)
    r = client.get(f"/api/sessions/{session}/updates?after={2**63 - 1}", headers=headers)
    assert r.status_code == 200 and r.json()["messages"] == []
    for forged in ("../etc/passwd", "a" * 65, "x'; DROP TABLE handoffs;--", "\u202e"):
        r = client.post("/api/handoff", json={"session_id": forged}, headers=headers)
        assert r.status_code == 422, forged
    extra = {"session_id": session, "state": "active"}
    assert client.post("/api/handoff", json=extra, headers=headers).status_code == 422
    long_email = {"session_id": session, "email": "a" * 250 + "@example.com"}
    client.post("/api/handoff", json={"session_id": session}, headers=headers)
    assert client.post("/api/handoff/email", json=long_email, headers=headers).status_code == 422
    text = {"text": "x" * 4001}
    r = client.post(f"/api/conversations/{session}/reply", json=text, headers=AUTH)
    assert r.status_code == 422
    assert (
        client.post(
            f"/api/conversations/{session}/reply", json={"text": ""}, headers=AUTH
        ).status_code
        == 422
    )
    r = client.post(f"/api/conversations/{session}/reply", json={"text": "hi"}, headers=headers)
    assert r.status_code in (401, 403)  # a widget key is no admin key
    assert client.get("/api/handoffs", headers=headers).status_code in (401, 403)
    assert client.get("/api/handoffs?state=everything", headers=AUTH).status_code == 422
    cross_site = {"Origin": "https://evil.example"}  # no key, another site: refused
    assert client.get(f"/api/sessions/{session}/updates", headers=cross_site).status_code == 403


def test_offer_after_two_unanswered(tmp_path: Path, stub: OpenAIStub) -> None:
    with TestClient(build_app(tmp_path, stub, min_score=1.0)) as client:  # nothing passes
        headers = assistant(client)
        first = chat(client, headers, "What is the warranty on laces?")
        assert first["grounded"] is False and "offer_handoff" not in first
        session = first["session_id"]
        r = client.post(
            "/api/chat",
            json={"message": "And on soles?", "session_id": session, "stream": True},
            headers=headers,
        )
        done = next(d for e, d in sse_events(r.text) if e == "done")
        assert done["grounded"] is False and done["offer_handoff"] is True
        assert chat(client, headers, "Heels?", session)["offer_handoff"] is True
        r = client.post("/api/handoff", json={"session_id": session}, headers=headers)
        assert r.json()["state"] == "waiting"
        assert client.post(f"/api/conversations/{session}/handback", headers=AUTH).is_success
        # the streak goes on after hand-back, but not with offer_after_unanswered 0
        patch = {"handoff": {"enabled": True, "offer_after_unanswered": 0}}
        assert client.patch("/api/assistants/shoe-shop", json=patch, headers=AUTH).is_success
        assert "offer_handoff" not in chat(client, headers, "Toes?", session)


def test_updates_have_their_own_rate_budget(tmp_path: Path, stub: OpenAIStub) -> None:
    with TestClient(build_app(tmp_path, stub, server={"updates_rate_limit": "3/minute"})) as client:
        headers = assistant(client)
        session = chat(client, headers, "How do returns work?")["session_id"]
        url = f"/api/sessions/{session}/updates?after=0"
        assert [client.get(url, headers=headers).status_code for _ in range(4)] == [200] * 3 + [429]
        assert client.get(url, headers=headers).headers["retry-after"]
        assert chat(client, headers, "And shoes?", session)["answer"]  # chat budget untouched


def test_handoff_messages_are_redacted_like_the_others(tmp_path: Path, stub: OpenAIStub) -> None:
    """KBCHAT_REDACT_CONTACTS covers the operator's replies and what the visitor writes while a
    person has the conversation, not only the chat's own turns."""
    with TestClient(build_app(tmp_path, stub, redact_contacts=True)) as client:
        headers = assistant(client)
        session = chat(client, headers, "How do returns work?")["session_id"]
        assert client.post(f"/api/conversations/{session}/handoff", headers=AUTH).is_success
        chat(client, headers, "Call me on +49 30 901820, please", session)
        reply = {"text": "Sure, or write to ana.lopez@example.com"}
        assert client.post(
            f"/api/conversations/{session}/reply", json=reply, headers=AUTH
        ).is_success
        stored = client.get(f"/api/conversations/{session}", headers=AUTH).json()["messages"]
        texts = [m["content"] for m in stored]
        assert "Call me on [phone], please" in texts and "Sure, or write to [email]" in texts
        assert not any("901820" in t or "example.com" in t for t in texts)


def test_two_requests_at_once_open_one_handoff_and_notify_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second of two simultaneous requests (a double click, two replicas) finds no open
    handoff either; the unique index on open handoffs refuses its insert and it reads the
    first's instead: one row, one notification."""
    headers = assistant(client)
    session = chat(client, headers, "How do returns work?")["session_id"]
    handoffs = client.app.state.handoffs  # type: ignore[attr-defined]
    sent: list[Any] = []
    monkeypatch.setattr(
        handoffs, "notifier", type("N", (), {"requested": lambda *a, **k: sent.append(k)})()
    )
    real_open, calls = handoffs._open, []

    def blind_once(db: Any, session_id: str) -> Any:
        calls.append(session_id)
        if len(calls) == 1:  # the second request looks before the first's row is visible
            return None
        return real_open(db, session_id)

    assert client.post("/api/handoff", json={"session_id": session}, headers=headers).is_success
    monkeypatch.setattr(handoffs, "_open", blind_once)
    r = client.post("/api/handoff", json={"session_id": session}, headers=headers)
    assert r.status_code == 200 and r.json()["state"] == "waiting", r.text
    queue = client.get("/api/handoffs?state=waiting", headers=AUTH).json()
    assert [h["session_id"] for h in queue].count(session) == 1
    assert len(sent) == 1 and len(calls) == 2  # the refused insert was retried, once
