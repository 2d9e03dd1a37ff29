"""A conversation belongs to the assistant it was started through: another assistant answering
from the same knowledge base cannot continue, read or rate it (404, as for an unknown session),
nor can a caller without that assistant. An `after` assistant's server refuses answer N+1 of a
conversation without a lead (403 lead_required) until POST /api/leads gives one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.test_assistants import AUTH, SHOP, emptied, module_client, new_key, shop
from tests.test_leads import CONSENT, LEAD


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with module_client(tmp_path_factory, "session-assistant") as c:
        yield c


@pytest.fixture
def client(app: TestClient) -> TestClient:
    return emptied(app)


def assistant(client: TestClient, slug: str, **fields: Any) -> dict[str, str]:
    """An assistant on the `shop` knowledge base; headers with one of its widget keys."""
    r = client.post("/api/assistants", json={**shop(**fields), "id": slug}, headers=AUTH)
    assert r.status_code == 201, r.text
    return {"X-Kbchat-Key": new_key(client, slug), "Origin": SHOP}


def chat(client: TestClient, headers: dict[str, str], session: str | None, **extra: Any) -> Any:
    body = {"message": "returns?", "session_id": session, **extra}
    return client.post("/api/chat", json=body, headers=headers)


def feedback(client: TestClient, headers: dict[str, str], session: str, message: int) -> Any:
    body = {"session_id": session, "message_id": message, "rating": "down"}
    return client.post("/api/feedback", json=body, headers=headers)


def test_another_assistant_cannot_continue_read_or_rate_a_conversation(
    client: TestClient,
) -> None:
    a = assistant(client, "shop-a")
    b = assistant(client, "shop-b")  # the same knowledge base, `shop`
    first = chat(client, a, None)
    assert first.status_code == 200, first.text
    session, message = first.json()["session_id"], first.json()["message_id"]

    for refused in (
        chat(client, b, session),
        chat(client, b, session, stream=True),  # refused before the stream starts
        client.get(f"/api/sessions/{session}", headers=b),
        feedback(client, b, session, message),
    ):
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "returns?" not in refused.text
    # nothing was added to it by B's attempts; A goes on as before
    own = client.get(f"/api/sessions/{session}", headers=a)
    assert own.status_code == 200
    assert own.json()["assistant"] == "shop-a" and len(own.json()["messages"]) == 2
    assert feedback(client, a, session, message).status_code == 200
    again = chat(client, a, session)
    assert again.status_code == 200 and again.json()["session_id"] == session


def test_a_conversation_without_an_assistant_and_one_with_are_kept_apart(
    client: TestClient,
) -> None:
    a = assistant(client, "shop-a")
    plain = chat(client, {}, None, collection="shop")  # same-site API, no key: no assistant
    assert plain.status_code == 200, plain.text
    plain_session = plain.json()["session_id"]
    assert client.get(f"/api/sessions/{plain_session}").json()["assistant"] is None
    assert chat(client, a, plain_session).status_code == 404
    assert client.get(f"/api/sessions/{plain_session}", headers=a).status_code == 404

    mine = chat(client, a, None).json()["session_id"]
    assert chat(client, {}, mine, collection="shop").status_code == 404
    # the admin and same-site callers may still read any conversation
    assert client.get(f"/api/sessions/{mine}").json()["assistant"] == "shop-a"


def test_after_mode_refuses_answer_n_plus_1_until_the_lead_is_given(client: TestClient) -> None:
    leads = {"mode": "after", "after_messages": 2, "consent": CONSENT}
    headers = assistant(client, "shop-a", leads=leads)
    first = chat(client, headers, None)
    assert first.status_code == 200, first.text
    session = first.json()["session_id"]
    assert chat(client, headers, session).status_code == 200  # answer 2

    for third in (chat(client, headers, session), chat(client, headers, session, stream=True)):
        assert third.status_code == 403, third.text
        assert third.json()["code"] == "lead_required"
    stored = client.get(f"/api/sessions/{session}", headers=headers).json()["messages"]
    assert len(stored) == 4  # the refused turns left no trace
    # another assistant's lead is not this conversation's
    other = assistant(client, "shop-b", leads=leads)
    body = {**LEAD, "session_id": session}
    assert client.post("/api/leads", json=body, headers=other).status_code == 404
    assert chat(client, headers, session).status_code == 403

    r = client.post("/api/leads", json=body, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["session_id"] == session
    third = chat(client, headers, session)
    assert third.status_code == 200, third.text
    assert chat(client, headers, session).status_code == 200
    # a new conversation gets its N answers before it is asked
    assert chat(client, headers, None).status_code == 200
