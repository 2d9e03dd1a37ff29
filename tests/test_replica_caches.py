"""What one replica keeps in memory must not go stale when another replica changes the store.

Two apps share one Chroma client and one data folder, as two replicas share a Chroma server and
a volume; A changes a collection, B (which already answered from it) must follow. Fast: the toy
embedder, the embedded store. tests/test_replicas.py shows the same with real servers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder

ADMIN = {"Authorization": "Bearer replica-cache-admin-key"}
LIGHTHOUSE = "# Lighthouse\n\nThe Lindholm lighthouse was built in 1887 from red granite.\n"
ORCHARD = "# Obstgarten\n\nIm Obstgarten von Kellinghusen wachsen 340 Apfelbäume.\n"


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    from app.server.app import create_app
    from app.settings import load_settings
    from app.store import make_client

    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'conv.sqlite3'}",
        admin_api_key=ADMIN["Authorization"].removeprefix("Bearer "),
        ingest={"resync_on_start": False},
        retrieval={"small_talk": False, "query_correction": "off", "min_score": 0.0},
    )
    store = make_client(settings)
    embedder = FakeEmbedder()
    apps = [
        create_app(settings, embedder=embedder, client=store, llm=None, with_ui=False)
        for _ in range(2)
    ]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        yield a, b


def upload(client: TestClient, name: str, text: str) -> None:
    files = [("files", (name, text.encode(), "text/markdown"))]
    response = client.post("/api/collections/handbook/documents", files=files, headers=ADMIN)
    assert response.status_code == 200, response.text


def ask(client: TestClient, message: str) -> Any:
    return client.post("/api/chat", json={"message": message, "collection": "handbook"})


def test_a_collection_made_again_elsewhere_is_answered_from_the_new_one(
    replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = replicas
    upload(a, "lighthouse.md", LIGHTHOUSE)
    first = ask(b, "When was the lighthouse built?")  # B builds and keeps its chain for "handbook"
    assert [s["source"] for s in first.json()["sources"]] == ["lighthouse.md"]
    assert a.delete("/api/collections/handbook", headers=ADMIN).status_code == 204
    upload(a, "orchard.md", ORCHARD)  # a new collection of the same name
    again = ask(b, "Wie viele Apfelbäume wachsen dort?")
    assert again.status_code == 200, again.text
    assert [s["source"] for s in again.json()["sources"]] == ["orchard.md"]


def test_a_collection_deleted_elsewhere_is_not_found_not_an_error(
    replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = replicas
    upload(a, "lighthouse.md", LIGHTHOUSE)
    assert ask(b, "When was the lighthouse built?").status_code == 200
    assert a.delete("/api/collections/handbook", headers=ADMIN).status_code == 204
    gone = ask(b, "When was the lighthouse built?")
    assert gone.status_code == 404, gone.text
    assert "handbook" in gone.json()["detail"]


@pytest.mark.parametrize("name", ["nope", "..", "a/../b", "127.0.0.1", "x" * 512, "é-ü"])
def test_names_no_collection_has_are_not_found(
    replicas: tuple[TestClient, TestClient], name: str
) -> None:
    """The store is asked for the collection by a name a client chose: whatever chromadb
    makes of it, the answer is 404 (the name is not echoed in a 500)."""
    a, _ = replicas
    upload(a, "lighthouse.md", LIGHTHOUSE)
    response = a.post("/api/chat", json={"message": "hello there", "collection": name})
    assert response.status_code == 404, response.text


def test_a_streamed_turn_looks_its_collection_up_once_in_services(
    replicas: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route looks the collection up (to answer 404 before streaming) and the turn uses
    that chain: no second lookup for the same turn moments later (a store request each)."""
    from app.server.services import Services

    a, _ = replicas
    upload(a, "lighthouse.md", LIGHTHOUSE)
    lookups: list[str] = []
    real = Services._collection_id

    def counted(self: Services, collection: str) -> Any:
        lookups.append(collection)
        return real(self, collection)

    monkeypatch.setattr(Services, "_collection_id", counted)
    body = {"message": "When was the lighthouse built?", "collection": "handbook", "stream": True}
    with a.stream("POST", "/api/chat", json=body) as response:
        text = "".join(response.iter_text())
    assert "event: done" in text and "lighthouse.md" in text
    assert lookups == ["handbook"]
