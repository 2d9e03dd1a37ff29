"""The operator's conversation routes: the admin key is required, hostile ids, cursors and
parameters are 422 (never a 500), filters and pages work over HTTP, the export is a streamed
attachment with a safe name, and erasure by id and by email answers as documented."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.server.db import ConversationStore
from tests.conversation_seed import add_lead, conversation
from tests.fakes import FakeEmbedder

ADMIN = "conversations-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def build(tmp: Path, **overrides: Any) -> Any:
    from app.server.app import create_app
    from app.settings import load_settings

    fields: dict[str, Any] = {
        "data_dir": tmp / "data",
        "database_url": f"sqlite:///{tmp / 'conv.sqlite3'}",
        "admin_api_key": ADMIN,
        "ingest": {"resync_on_start": False},
        "server": {"admin_failures": "1000/minute"},
    }
    settings = load_settings(**(fields | overrides))
    return create_app(settings, embedder=FakeEmbedder(), llm=None, with_ui=False)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with TestClient(build(tmp_path_factory.mktemp("conversations-api"))) as c:
        yield c


def store(client: TestClient) -> ConversationStore:
    conversations: ConversationStore = client.app.state.services.conversations  # type: ignore[attr-defined]
    return conversations


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/conversations"),
        ("GET", "/api/conversations/export"),
        ("GET", "/api/conversations/abc123"),
        ("DELETE", "/api/conversations/abc123"),
        ("POST", "/api/conversations/erase"),
    ],
)
def test_admin_key_is_required(client: TestClient, method: str, path: str) -> None:
    body = {"json": {"email": "a@example.com"}} if method == "POST" else {}
    assert client.request(method, path, **body).status_code == 401
    wrong = {"Authorization": "Bearer not-the-key"}
    assert client.request(method, path, headers=wrong, **body).status_code == 403


def test_admin_routes_refused_without_a_configured_key(tmp_path: Path) -> None:
    with TestClient(build(tmp_path, admin_api_key=None)) as c:
        assert c.get("/api/conversations", headers=AUTH).status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "limit=abc",
        "cursor=not-a-cursor",
        "cursor=" + "A" * 201,
        "cursor=WyIyMDI1LTAxLTAxIiwgIi4uLyJd",
        "q=" + "x" * 201,
        "q=",
        "q=%00",
        "since=yesterday",
        "until=2025-13-01",
        "since=" + "2" * 41,
        "rating=meh",
        "unanswered=maybe",
        "language=../../etc",
        "assistant=Robert');DROP TABLE sessions;--",
        "collection=..",
    ],
)
def test_hostile_parameters_are_422(client: TestClient, query: str) -> None:
    response = client.get(f"/api/conversations?{query}", headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    export = client.get(f"/api/conversations/export?{query}", headers=AUTH)
    assert export.status_code == (200 if query.startswith(("limit", "cursor")) else 422)


@pytest.mark.parametrize("session_id", ["a" * 65, "a%20b", "%C3%A9t%C3%A9", "a.b", "%00"])
def test_hostile_ids_are_422(client: TestClient, session_id: str) -> None:
    assert client.get(f"/api/conversations/{session_id}", headers=AUTH).status_code == 422
    assert client.delete(f"/api/conversations/{session_id}", headers=AUTH).status_code == 422


def test_unknown_ids_are_404(client: TestClient) -> None:
    assert client.get("/api/conversations/" + "0" * 32, headers=AUTH).status_code == 404
    assert client.delete("/api/conversations/" + "0" * 32, headers=AUTH).status_code == 404


def test_list_filters_and_pages_over_http(client: TestClient) -> None:
    made = [conversation(store(client), f"Frage {n}?", "de", assistant="shop")[0] for n in range(3)]
    conversation(store(client), "Question?", "en")
    seen: list[str] = []
    url = "/api/conversations?language=de&assistant=shop&limit=2&since=2020-01-01"
    page = client.get(url, headers=AUTH).json()
    seen += [i["session_id"] for i in page["items"]]
    assert page["next"] is not None
    page = client.get(url + f"&cursor={page['next']}", headers=AUTH).json()
    seen += [i["session_id"] for i in page["items"]]
    assert page["next"] is None and sorted(seen) == sorted(made)
    assert page["items"][0]["languages"] == ["de"]
    past = client.get("/api/conversations?until=2020-01-01", headers=AUTH).json()
    assert past == {"items": [], "next": None}


def test_transcript_and_erasure_over_http(client: TestClient) -> None:
    session, _ = conversation(store(client), "Wo ist mein Paket?", "de")
    add_lead(store(client), session, "Paket@Example.de")
    transcript = client.get(f"/api/conversations/{session}", headers=AUTH)
    assert transcript.status_code == 200
    body = transcript.json()
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    assert body["messages"][1]["sources"][0]["url"] == "https://shop.test/returns"
    assert body["lead"]["email"] == "Paket@Example.de"
    erased = client.post(
        "/api/conversations/erase", json={"email": "paket@example.DE"}, headers=AUTH
    )
    assert erased.json() == {"erased": 1}
    assert client.get(f"/api/conversations/{session}", headers=AUTH).status_code == 404
    other, _ = conversation(store(client), "delete me")
    assert client.delete(f"/api/conversations/{other}", headers=AUTH).status_code == 204
    assert client.delete(f"/api/conversations/{other}", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "not-an-email"},
        {"email": "a@example.com", "x": 1},
        {"email": "a" * 250 + "@e.io"},
    ],
)
def test_erase_by_email_refuses_bad_bodies(client: TestClient, body: dict[str, Any]) -> None:
    assert client.post("/api/conversations/erase", json=body, headers=AUTH).status_code == 422


def test_export_is_a_streamed_attachment(client: TestClient) -> None:
    conversation(store(client), "=cmd|' /C calc'!A0", "en", collection="export-kb")
    response = client.get("/api/conversations/export?format=csv&collection=export-kb", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="kbchat-conversations-')
    assert disposition.endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["content"][:2] for r in rows] == ["'=", "He"]
    jsonl = client.get("/api/conversations/export?format=json&collection=export-kb", headers=AUTH)
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    assert jsonl.headers["content-disposition"].endswith('.jsonl"')
    (record,) = [json.loads(line) for line in jsonl.text.splitlines()]
    assert record["messages"][0]["content"] == "=cmd|' /C calc'!A0"  # JSON is data, not a sheet
    assert client.get("/api/conversations/export?format=xlsx", headers=AUTH).status_code == 422


def test_openapi_documents_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/api/conversations"]["get"]["summary"] == "List conversations"
    assert "application/x-ndjson" in json.dumps(paths["/api/conversations/export"]["get"])
    assert {"get", "delete"} <= set(paths["/api/conversations/{session_id}"])
    assert "404" in paths["/api/conversations/{session_id}"]["get"]["responses"]


def test_settings_switch_on_redaction_and_retention(tmp_path: Path) -> None:
    app = build(tmp_path, redact_contacts=True, retention_days=3)
    assert app.state.services.conversations.redact is True
    assert app.state.retention.days == 3


def test_the_app_prunes_expired_conversations_at_start_and_stops_the_task(tmp_path: Path) -> None:
    import time
    from datetime import UTC, datetime, timedelta

    from tests.conversation_seed import backdate

    app = build(tmp_path, retention_days=7)
    conversations: ConversationStore = app.state.services.conversations
    old, _ = conversation(conversations, "long ago")
    backdate(conversations, old, datetime.now(UTC) - timedelta(days=8))
    recent, _ = conversation(conversations, "today")
    with TestClient(app):
        deadline = time.monotonic() + 10
        while app.state.retention.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert conversations.owner(old) is None and conversations.owner(recent) is not None
    assert app.state.retention._thread is None  # stopped at shutdown
