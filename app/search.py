"""Retrieval for `kbchat search`: embed the query in its profile's query form, ask Chroma."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from app.store import langchain_store, make_client

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from app.embeddings.e5 import E5Embeddings
    from app.settings import Settings


@dataclass(frozen=True)
class Hit:
    source: str
    title: str
    language: str
    score: float  # cosine similarity, 1 - Chroma's cosine distance
    text: str
    chunk_index: int
    page: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search(
    settings: Settings,
    query: str,
    *,
    collection_name: str | None = None,
    k: int = 5,
    embedder: E5Embeddings | None = None,
    client: ClientAPI | None = None,
) -> list[Hit]:
    if embedder is None:
        from app.embeddings.e5 import build_embeddings

        embedder = build_embeddings(settings)
    client = client or make_client(settings)
    store = langchain_store(client, collection_name or settings.collection, embedder)
    results = store.similarity_search_with_score(query, k=k)
    hits = []
    for doc, distance in results:
        meta = doc.metadata
        page = meta.get("page")
        hits.append(
            Hit(
                source=str(meta.get("source", "")),
                title=str(meta.get("title", "")),
                language=str(meta.get("language", "und")),
                score=round(1.0 - float(distance), 4),
                text=doc.page_content,
                chunk_index=int(meta.get("chunk_index", 0)),
                page=int(page) if page is not None else None,
            )
        )
    return hits
