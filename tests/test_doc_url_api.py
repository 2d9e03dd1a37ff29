"""A document's web address end to end: found at ingestion (real E5, real Chroma), carried by
retrieval into /api/chat, /v1 and the stored conversation; an address forged into the store is
checked again on the way out; conversations stored before sources had a url still load."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ingestion.doc_url import MAX_URL_CHARS
from tests.openai_stub import OpenAIStub, condensing

pytestmark = pytest.mark.integration

RETURNS_URL = "https://shop.example.com/help/returns"
BASE = "https://example.org/wuppertal/schwebebahn?ref="
MONORAIL_URL = BASE + "x" * (MAX_URL_CHARS - len(BASE))  # as long as an address may be
DOCS = {
    "returns.md": f"---\ntitle: Returns\nurl: {RETURNS_URL}\n---\n# Returns\n\n"
    "Items can be returned within thirty days of delivery for a full refund.",
    "monorail.html": f'<html><head><link rel="canonical" href="{MONORAIL_URL}"><title>Schwebebahn'
    "</title></head><body><main><h1>Schwebebahn</h1><p>The Wuppertal Suspension Railway opened "
    "in 1901 and runs above the river Wupper.</p></main></body></html>",
    "volcano.md": "# Mount Vesuvius\n\nMount Vesuvius is a volcano near Naples in Italy.",
    "forged.md": "# Forged\n\nThe forged page is about cinnamon buns and nothing else.",
}
FORGED = "javascript:alert(document.cookie)"
EXPECTED = {
    "returns.md": RETURNS_URL,
    "monorail.html": MONORAIL_URL,
    "volcano.md": None,
    "forged.md": None,
}


def forge(settings: Any, source: str, url: str) -> None:
    """Write `url` straight into the store's metadata of `source`'s chunks, past ingestion."""
    from app.store import make_client

    collection = make_client(settings).get_collection(settings.collection)
    got = collection.get(where={"source": source}, include=["metadatas"])
    assert got["ids"]
    metas = [{**m, "url": url} for m in got["metadatas"] or []]
    collection.update(ids=got["ids"], metadatas=metas)  # type: ignore[arg-type]


def settings_in(base: Path, **overrides: Any) -> Any:
    from app.settings import load_settings

    return load_settings(
        data_dir=base / "data",
        database_url=f"sqlite:///{base / 'conv.sqlite3'}",
        retrieval={"min_score": 0.0, "min_margin": -1.0},  # every passage is a source
        **overrides,
    )


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, e5: Any) -> Any:
    from app.ingest import ingest_folder

    base = tmp_path_factory.mktemp("docurl")
    folder = base / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    settings = settings_in(base)
    ingest_folder(settings, folder, settings.collection, embedder=e5)
    forge(settings, "forged.md", FORGED)
    return settings


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=condensing("Within thirty days [1].")) as server:
        yield server


def urls(sources: list[dict[str, Any]]) -> dict[str, Any]:
    return {s["source"]: s.get("url") for s in sources}


def test_ingested_chunks_store_the_address_only_when_there_is_one(settings: Any) -> None:
    from app.store import make_client

    got = make_client(settings).get_collection(settings.collection).get(include=["metadatas"])
    stored = {str(m["source"]): m.get("url") for m in got["metadatas"] or []}
    assert stored == {**EXPECTED, "forged.md": FORGED}  # no key at all without an address


def test_sources_carry_the_url_through_the_api_and_the_stored_conversation(
    settings: Any, e5: Any, stub: OpenAIStub
) -> None:
    from app.server.app import create_app

    app_settings = settings_in(
        Path(settings.data_dir).parent,
        openai_base_url=stub.base_url,
        llm={"model": "stub-model", "max_retries": 0, "timeout": 5},
    )
    with TestClient(create_app(app_settings, embedder=e5, with_ui=False)) as client:
        r = client.post("/api/chat", json={"message": "How long do I have to return an item?"})
        assert r.status_code == 200
        body = r.json()
        assert body["sources"][0]["source"] == "returns.md"
        assert body["sources"][0]["text"].startswith("# Returns")  # front matter is not content
        assert urls(body["sources"]) == EXPECTED
        conversation = client.get(f"/api/sessions/{body['session_id']}").json()
        assert urls(conversation["messages"][1]["sources"]) == EXPECTED

        v1 = client.post(
            "/v1/chat/completions",
            json={"model": "default", "messages": [{"role": "user", "content": "Returns?"}]},
        )
        assert v1.status_code == 200 and urls(v1.json()["sources"]) == EXPECTED


def test_conversations_stored_before_sources_had_a_url_still_load(settings: Any, e5: Any) -> None:
    """Rows written before the url field exist without the key: they read back as they are."""
    from sqlalchemy import update

    from app.server.app import create_app
    from app.server.db import Message

    old = [{"number": 1, "source": "a.md", "title": "A", "language": "en", "score": 0.8,
            "text": "Old passage.", "page": None, "section": "", "chunk_index": 0}]  # fmt: skip
    with TestClient(create_app(settings, embedder=e5, with_ui=False)) as client:
        session = client.post("/api/chat", json={"message": "Returns?"}).json()["session_id"]
        engine = client.app.state.services.conversations.engine  # type: ignore[attr-defined]
        with engine.begin() as db:
            db.execute(
                update(Message)
                .where(Message.session_id == session, Message.role == "assistant")
                .values(sources=json.dumps(old))
            )
        r = client.get(f"/api/sessions/{session}")
        assert r.status_code == 200 and r.json()["messages"][1]["sources"] == old


def test_search_hits_carry_the_url(settings: Any, e5: Any) -> None:
    from app.search import search

    hits = search(settings, "returning an item for a refund", k=4, embedder=e5)
    assert {h.source: h.url for h in hits} == EXPECTED
    assert hits[0].to_dict()["url"] == RETURNS_URL
