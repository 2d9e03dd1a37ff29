"""What a chat turn costs the conversations database: under load every write transaction is one
SQLite writer at a time, so a turn stores its question, answer (and a new session) in one
transaction, in a write-ahead log with full fsync (nothing committed is lost), and nothing is
written before the answer starts. Fast: the toy embedder, the embedded store, no LLM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from tests.fakes import FakeEmbedder

ADMIN = {"Authorization": "Bearer chat-writes-admin-key"}
LIGHTHOUSE = "# Lighthouse\n\nThe Lindholm lighthouse was built in 1887 from red granite.\n"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    from app.server.app import create_app
    from app.settings import load_settings

    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}",
        admin_api_key=ADMIN["Authorization"].removeprefix("Bearer "),
        ingest={"resync_on_start": False},
        retrieval={"small_talk": False, "query_correction": "off", "min_score": 0.0},
    )
    app = create_app(settings, embedder=FakeEmbedder(), llm=None, with_ui=False)
    with TestClient(app) as c:
        files = [("files", ("lighthouse.md", LIGHTHOUSE.encode(), "text/markdown"))]
        response = c.post("/api/collections/default/documents", files=files, headers=ADMIN)
        assert response.status_code == 200, response.text
        yield c


def commits(client: TestClient) -> list[str]:
    """Records every committed transaction of the app's conversations engine from now on."""
    engine = client.app.state.services.conversations.engine  # type: ignore[attr-defined]
    seen: list[str] = []
    event.listen(engine, "commit", lambda conn: seen.append("commit"))
    return seen


def stream_turn(client: TestClient, **body: Any) -> dict[str, Any]:
    """The `done` event of a streamed turn."""
    events: dict[str, Any] = {}
    payload = {"message": "When was the lighthouse built?", "stream": True, **body}
    with client.stream("POST", "/api/chat", json=payload) as response:
        assert response.status_code == 200
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events[name] = json.loads(line[6:])
    return events["done"]


def test_sqlite_conversations_are_kept_in_a_write_ahead_log_with_full_sync(
    client: TestClient,
) -> None:
    engine = client.app.state.services.conversations.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_a_new_conversation_is_stored_in_one_transaction(client: TestClient) -> None:
    seen = commits(client)
    done = stream_turn(client)
    assert seen == ["commit"]
    stored = client.get(f"/api/sessions/{done['session_id']}").json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][1]["id"] == done["message_id"]


def test_a_continued_conversation_is_one_transaction_per_turn(client: TestClient) -> None:
    first = stream_turn(client)
    seen = commits(client)
    second = stream_turn(client, session_id=first["session_id"])
    assert seen == ["commit"]
    assert second["session_id"] == first["session_id"]
    stored = client.get(f"/api/sessions/{first['session_id']}").json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"] * 2


def test_a_session_id_the_client_makes_up_is_never_adopted(client: TestClient) -> None:
    made_up = "a" * 32
    done = stream_turn(client, session_id=made_up)
    assert done["session_id"] != made_up
    assert client.get(f"/api/sessions/{made_up}").status_code == 404
    response = client.post("/api/chat", json={"message": "lighthouse?", "session_id": made_up})
    assert response.json()["session_id"] not in {made_up, done["session_id"]}


def test_a_stored_turn_keeps_every_field_of_the_answer(client: TestClient) -> None:
    """The turn is written with Core inserts (cheaper than ORM objects): nothing may be lost."""
    answer = client.post("/api/chat", json={"message": "When was the lighthouse built?"}).json()
    stored = client.get(f"/api/sessions/{answer['session_id']}").json()
    question, reply = stored["messages"]
    assert question["content"] == "When was the lighthouse built?"
    assert question["language"] == answer["language"] and question["grounded"] is None
    assert reply["id"] == answer["message_id"]
    for field in ("sources", "cited", "language", "mode", "grounded", "error"):
        assert reply[field] == answer[field], field
    assert reply["content"] == answer["answer"] and reply["sources"]
    assert question["created"] and reply["created"] >= question["created"]
