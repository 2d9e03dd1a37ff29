"""The operator's document list: what each file of a knowledge base became at the last sync
(indexed with its language and chunks, or failed/skipped with the reason), created and read
through the admin API with a real Chroma and the real tokenizer."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder

ADMIN = "admin-secret-knowledge"
AUTH = {"X-Admin-Key": ADMIN}
GERMAN = (
    "# Schwebebahn\n\nDie Wuppertaler Schwebebahn ist eine Einschienenbahn in Wuppertal. "
    "Sie wurde im Jahr 1901 eröffnet und fährt über der Wupper durch die ganze Stadt."
)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    from app.server.app import create_app
    from app.settings import load_settings

    settings = load_settings(
        data_dir=tmp_path / "data", admin_api_key=ADMIN, ingest={"resync_on_start": False}
    )
    with TestClient(create_app(settings, embedder=FakeEmbedder(), llm=None, with_ui=False)) as c:
        yield c


def _documents(client: TestClient, name: str) -> dict[str, Any]:
    r = client.get(f"/api/collections/{name}/documents", headers=AUTH)
    assert r.status_code == 200, r.text
    return {"last_sync": r.json()["last_sync"], **{d["source"]: d for d in r.json()["documents"]}}


def test_create_upload_list_and_delete(client: TestClient) -> None:
    r = client.post("/api/collections", json={"name": "handbook"}, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["documents"] == [] and r.json()["last_sync"] is not None
    assert (
        client.post("/api/collections", json={"name": "handbook"}, headers=AUTH).status_code == 409
    )
    assert "handbook" in [c["name"] for c in client.get("/api/collections").json()]

    files = [
        ("files", ("bahn.md", GERMAN.encode(), "text/markdown")),
        ("files", ("broken.pdf", b"%PDF-1.4 this is not a pdf at all", "application/pdf")),
        ("files", ("empty.md", b"   \n", "text/markdown")),
    ]
    r = client.post("/api/collections/handbook/documents", files=files, headers=AUTH)
    assert r.status_code == 200, r.text
    docs = _documents(client, "handbook")
    bahn = docs["bahn.md"]
    assert bahn["status"] == "indexed" and bahn["language"] == "de" and bahn["chunks"] >= 1
    assert bahn["size"] == len(GERMAN.encode()) and bahn["updated"] is not None
    assert docs["broken.pdf"]["status"] == "failed" and docs["broken.pdf"]["reason"]
    assert docs["empty.md"]["status"] == "failed" and "text" in docs["empty.md"]["reason"]

    r = client.delete("/api/collections/handbook/documents/broken.pdf", headers=AUTH)
    assert r.status_code == 200, r.text
    docs = _documents(client, "handbook")
    assert "broken.pdf" not in docs and docs["bahn.md"]["status"] == "indexed"


def test_languages_of_an_older_manifest_are_filled_from_the_store(client: TestClient) -> None:
    files = [("files", ("bahn.md", GERMAN.encode(), "text/markdown"))]
    assert (
        client.post("/api/collections/old/documents", files=files, headers=AUTH).status_code == 200
    )
    settings = client.app.state.services.settings  # type: ignore[attr-defined]
    with sqlite3.connect(settings.manifests_dir / "old.sqlite") as db:
        db.execute("UPDATE files SET language = NULL")  # as written before languages were kept
    assert _documents(client, "old")["bahn.md"]["language"] == "de"


def test_the_document_list_is_for_the_admin_and_checks_its_input(client: TestClient) -> None:
    assert client.get("/api/collections/default/documents").status_code in (401, 403)
    assert client.post("/api/collections", json={"name": "x y"}).status_code in (401, 403)
    assert client.get("/api/collections/nope/documents", headers=AUTH).status_code == 404
    for bad in ("../etc", "a" * 300, ""):
        r = client.post("/api/collections", json={"name": bad}, headers=AUTH)
        assert r.status_code == 422, (bad, r.text)
    r = client.post("/api/collections", json={"name": "ok", "folder": "/etc"}, headers=AUTH)
    assert r.status_code == 422  # no other fields: a folder is never chosen by the caller
